#!/usr/bin/env python3
"""Paid unlocks per second through the real node, against its own free path, in one run.

    python scripts/bench_unlock.py [--channels 1000] [--connections 64] [--duration 10] [--json]

A child process runs the node (SQLite store, synchronous=FULL, group commit) on the in-process
chain with `--channels` open channels; this process signs fresh vouchers (one new running total per
request, spread over all channels) and drives the node with wrk (Debian package `wrk`) on loopback:
first the free path, then paid requests. Afterwards it stops the node and counts the charges in
the database: every 200 that wrk saw must be a durable charge ("every voucher durable").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

PRICE = 1_000
DEPOSIT = 10**18
VOUCHER_KEY = bytes.fromhex("aa" * 32)
ROOT = Path(__file__).resolve().parent.parent

WRK_SCRIPT = r"""
local requests_list = {}
local counter = 0
local thread_count = 0
function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
end
function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  if path == nil then return end
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      local p, h = line:match("([^\t]+)\t(.+)")
      table.insert(requests_list, wrk.format("GET", p, {["PAYMENT-SIGNATURE"] = h}))
    end
    i = i + 1
  end
end
function request()
  if #requests_list == 0 then return wrk.format("GET", wrk.path) end
  counter = counter + 1
  if counter > #requests_list then counter = 1 end
  return requests_list[counter]
end
function done(summary, latency, requests)
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"non2xx\":%d,\"socket_errors\":%d,\"p50_us\":%d,\"p99_us\":%d}\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


# ---------------------------------------------------------------------- the node (child process)


async def serve(args: argparse.Namespace) -> None:
    import logging

    from aiohttp import web
    from web3 import AsyncWeb3
    from web3.providers.eth_tester import AsyncEthereumTesterProvider

    from channel_node.cli.main import freeze_startup_objects
    from channel_node.config import load_settings
    from channel_node.core import ChannelState
    from channel_node.dev.devchain import DevChain
    from channel_node.dev.stack import site_root
    from channel_node.logs import configure
    from channel_node.node.assembly import build_node
    from channel_node.signing import ChannelConfig, Domain, address_of_key, channel_id
    from channel_node.store import ChannelWrite

    configure("json", level=getattr(logging, args.log_level.upper()))  # stdout goes to a file: as in production
    chain = DevChain()
    contract = chain.deploy_channel_deposit()
    payer, receiver = chain.accounts[2], chain.accounts[1]
    domain = Domain(chain.chain_id, contract.address)
    configs = [
        ChannelConfig.create(payer.address, address_of_key(VOUCHER_KEY), receiver.address, None, 3600, salt)
        for salt in range(1, args.channels + 1)
    ]
    for config in configs:
        chain.transact(contract.functions.depositEth(config.as_abi_tuple()), payer.address, value=DEPOSIT, gas=200_000)
    provider = AsyncEthereumTesterProvider()
    provider.ethereum_tester = chain.tester
    settings = load_settings(
        contract=contract.address,
        receiver=receiver.address,
        database=Path(args.data_dir) / "node.db",
        confirmations=1,
        sqlite_synchronous=args.synchronous,
        paywall={"content_dir": site_root(), "free": ["/", "/index.html"],
                 "prices": [{"path": "/articles/*", "price": PRICE, "once": False}]},
    )  # fmt: skip
    node = await build_node(settings, AsyncWeb3(provider))
    # The channels' deposits are already confirmed: record them as the node would on first sight.
    for config in configs:
        state = ChannelState(channel_id=channel_id(domain, config), config=config, deposited=DEPOSIT)
        await node.store.commit(ChannelWrite(state, 0))
    runner = web.AppRunner(node.app, access_log=None)
    await runner.setup()
    freeze_startup_objects()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    host, port = runner.addresses[0][:2]
    ids = [channel_id(domain, c).hex() for c in configs]
    info = {"url": f"http://{host}:{port}", "chain_id": chain.chain_id, "contract": contract.address, "channels": ids}
    ready = Path(args.data_dir) / "node.json"
    ready.with_suffix(".tmp").write_text(json.dumps(info))
    ready.with_suffix(".tmp").rename(ready)  # appears whole
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    names = asyncio.create_task(_name_threads(Path(args.data_dir) / "threads.json", stop))
    await stop.wait()
    await names
    await runner.cleanup()
    await node.close()


async def _name_threads(path: Path, stop: asyncio.Event) -> None:
    """Writes {native thread id: name} for the driver's per-thread CPU figures (Python 3.11 names no
    OS thread); every second, since the recovery thread starts with the first paid request."""
    import threading

    while not stop.is_set():
        names = {str(t.native_id): "loop" if t is threading.main_thread() else t.name for t in threading.enumerate()}
        path.with_suffix(".tmp").write_text(json.dumps(names))
        path.with_suffix(".tmp").rename(path)
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


# ---------------------------------------------------------------------- vouchers


def _sign_round(job: tuple[int, str, int, list[str], int]) -> list[str]:
    from channel_node.signing import Domain, sign_digest, voucher_digest
    from channel_node.wire.channel import payment_signature

    chain_id, contract, round_number, ids, offset = job
    domain = Domain(chain_id, contract)
    network = f"eip155:{chain_id}"
    lines = []
    for hex_id in ids:
        channel = bytes.fromhex(hex_id)
        amount = round_number * PRICE
        signature = sign_digest(VOUCHER_KEY, voucher_digest(domain, channel, amount))
        header = payment_signature(network, contract, channel, amount, signature)
        lines.append(f"/articles/micropayments.html\t{header}")
    return lines


def write_vouchers(path: Path, chain_id: int, contract: str, ids: list[str], total: int) -> int:
    """Round r holds each channel's r-th running total; rounds in order, so every voucher is fresh."""
    rounds = max(1, -(-total // len(ids)))
    jobs = [(chain_id, contract, r, ids, 0) for r in range(1, rounds + 1)]
    with Pool(os.cpu_count() or 2) as pool, path.open("w") as out:
        for lines in pool.imap(_sign_round, jobs):
            out.write("\n".join(lines) + "\n")
    return rounds * len(ids)


# ---------------------------------------------------------------------- driver


def run_wrk(url: str, connections: int, duration: int, threads: int, script: Path, vouchers: Path | None) -> dict:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "-s", str(script), url]
    if vouchers is not None:
        command += ["--", str(vouchers), str(threads)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("WRKJSON "))
    result = json.loads(line.removeprefix("WRKJSON "))
    result["ok_per_s"] = (result["requests"] - result["non2xx"]) / (result["duration_us"] / 1e6)
    return result


def thread_cpu(pid: int, names_file: Path) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of `pid` (/proc/PID/task), summed by the Python
    thread name the node wrote to `names_file` (digits dropped: recover_0 is "recover")."""
    ticks = os.sysconf("SC_CLK_TCK")
    names = json.loads(names_file.read_text()) if names_file.exists() else {}
    totals: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = "loop" if task.name == str(pid) else names.get(task.name, "other").rstrip("0123456789_")
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured phase")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the node gets the other core)")
    parser.add_argument("--vouchers", type=int, default=150_000, help="fresh vouchers to pre-sign")
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    parser.add_argument("--log-level", choices=["info", "warning"], default="info",
                        help="node log level (info: one JSON line per paid request, the default of a real node)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        from channel_node.cli.main import run_async

        run_async(serve(args))
        return 0
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench-unlock-"))
    say(f"starting the node with {args.channels} open channels ...")
    node_log = (work / "node.log").open("w")
    node = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--channels", str(args.channels), "--data-dir", str(work),
         "--synchronous", args.synchronous, "--log-level", args.log_level],
        stdout=node_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ready = work / "node.json"
        while not ready.exists():
            if node.poll() is not None:
                print((work / "node.log").read_text()[-2000:], file=sys.stderr)
                raise SystemExit("the node exited during start-up")
            time.sleep(0.1)
        info = json.loads(ready.read_text())
        say(f"signing {args.vouchers:,} fresh vouchers ...")
        started = time.perf_counter()
        vouchers = work / "vouchers.tsv"
        signed = write_vouchers(vouchers, info["chain_id"], info["contract"], info["channels"], args.vouchers)
        say(f"  {signed:,} in {time.perf_counter() - started:.1f} s")
        script = work / "bench.lua"
        script.write_text(WRK_SCRIPT)
        url = info["url"]
        say(f"free path: wrk -c{args.connections} -d{args.duration}s {url}/index.html")
        free = run_wrk(url + "/index.html", args.connections, args.duration, args.threads, script, None)
        say(f"paid path: fresh vouchers over {args.channels} channels")
        before = thread_cpu(node.pid, work / "threads.json")
        paid = run_wrk(url + "/articles/micropayments.html", args.connections, args.duration, args.threads, script, vouchers)
        after = thread_cpu(node.pid, work / "threads.json")
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
    node_log.close()
    log_lines = sum(1 for _ in (work / "node.log").open())
    database = sqlite3.connect(work / "node.db")
    charges, charged = database.execute("SELECT COUNT(*), COALESCE(SUM(CAST(amount AS INTEGER)), 0) FROM charges").fetchone()
    served = paid["requests"] - paid["non2xx"]
    result = {
        "paid_unlocks_per_s": round(paid["ok_per_s"]),
        "free_requests_per_s": round(free["ok_per_s"]),
        "ratio": round(paid["ok_per_s"] / free["ok_per_s"], 3),
        "p50_ms": round(paid["p50_us"] / 1000, 2),
        "p99_ms": round(paid["p99_us"] / 1000, 2),
        "paid_served": served,
        "paid_refused": paid["non2xx"],
        "durable_charges": charges,
        "every_voucher_durable": charges >= served and charged == charges * PRICE,
        # The node's CPU per paid request during the paid phase, by thread (noise-resistant, unlike rates).
        "cpu_us_per_paid": {
            name: round((after[name] - before.get(name, 0.0)) / max(paid["requests"], 1) * 1e6, 1)
            for name in sorted(after) if after[name] - before.get(name, 0.0) > 0
        },
        "log_lines": log_lines,
        "channels": args.channels,
        "connections": args.connections,
        "synchronous": args.synchronous,
    }
    if signed < paid["requests"]:
        say(f"warning: {paid['requests'] - signed} requests re-sent old vouchers (raise --vouchers)")
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}  {value}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if result["every_voucher_durable"] else 1


if __name__ == "__main__":
    sys.exit(main())
