"""What scripts/bench_unlock.py and scripts/bench_scaleout.py share (docs/performance.md,
docs/scaling.md): the node child process on the in-process chain with `channels` open channels, the
wrk script and its driver, and the fresh vouchers they send.

The node's set-up is deterministic (the same deployment, so the same contract and channel ids in
every process); each benchmark adds its own settings, port and audit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from multiprocessing import Pool
from pathlib import Path
from typing import Any

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

PRICE = 1_000
DEPOSIT = 10**18
VOUCHER_KEY = bytes.fromhex("aa" * 32)
PAID_PATH = "/articles/micropayments.html"
FREE_PATH = "/index.html"

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


async def serve_node(
    channels: int,
    database: str | Path,
    ready: Path,
    *,
    port: int = 0,
    reuse_port: bool = False,
    deposit_on_chain: bool = False,
    seed: bool = True,
    start: bool = False,
    settings: dict[str, Any] | None = None,
    while_serving: Any = None,
) -> None:
    """Runs a node on a fresh in-process chain with `channels` open channels until SIGTERM.

    `deposit_on_chain`: the deposits are also made on the chain (otherwise only the store knows them);
    `seed`: the confirmed deposits are written to the store as the node would on first sight (once per
    database); `start`: the node's background work (chain watcher) runs too. When the node listens,
    `ready` appears whole holding {"url", "chain_id", "contract", "channels"}. `while_serving(stop)`,
    when given, is a coroutine run beside the node until SIGTERM."""
    from aiohttp import web
    from web3 import AsyncWeb3
    from web3.providers.eth_tester import AsyncEthereumTesterProvider

    from channel_node.cli.main import freeze_startup_objects
    from channel_node.config import load_settings
    from channel_node.core import ChannelState
    from channel_node.dev.devchain import DevChain
    from channel_node.dev.stack import site_root
    from channel_node.node.assembly import build_node
    from channel_node.signing import ChannelConfig, Domain, address_of_key, channel_id
    from channel_node.store import ChannelWrite

    chain = DevChain()
    contract = chain.deploy_channel_deposit()
    payer, receiver = chain.accounts[2], chain.accounts[1]
    domain = Domain(chain.chain_id, contract.address)
    configs = [
        ChannelConfig.create(payer.address, address_of_key(VOUCHER_KEY), receiver.address, None, 3600, salt)
        for salt in range(1, channels + 1)
    ]
    if deposit_on_chain:
        for config in configs:
            chain.transact(contract.functions.depositEth(config.as_abi_tuple()), payer.address, value=DEPOSIT, gas=200_000)
    provider = AsyncEthereumTesterProvider()
    provider.ethereum_tester = chain.tester
    node_settings = load_settings(
        contract=contract.address, receiver=receiver.address, database=database, confirmations=1,
        paywall={"content_dir": site_root(), "free": ["/", FREE_PATH],
                 "prices": [{"path": "/articles/*", "price": PRICE, "once": False}]},
        **(settings or {}),
    )  # fmt: skip
    node = await build_node(node_settings, AsyncWeb3(provider))
    if seed:
        await asyncio.gather(*(node.store.commit(ChannelWrite(ChannelState(
            channel_id=channel_id(domain, c), config=c, deposited=DEPOSIT), 0)) for c in configs))  # fmt: skip
    if start:
        await node.start()
    runner = web.AppRunner(node.app, access_log=None)
    await runner.setup()
    freeze_startup_objects()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024, reuse_port=reuse_port)
    await site.start()
    host, bound = runner.addresses[0][:2]
    ids = [channel_id(domain, c).hex() for c in configs]
    write_whole(ready, {"url": f"http://{host}:{bound}", "chain_id": chain.chain_id, "contract": contract.address,
                        "channels": ids})  # fmt: skip
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    beside = asyncio.create_task(while_serving(stop)) if while_serving is not None else None
    await stop.wait()
    if beside is not None:
        await beside
    await runner.cleanup()
    await node.close()


def write_whole(path: Path, value: object) -> None:
    """Writes JSON so that a reader polling for `path` sees it whole."""
    path.with_suffix(".tmp").write_text(json.dumps(value))
    path.with_suffix(".tmp").rename(path)


def wait_ready(process: subprocess.Popen, ready: Path, log: Path) -> dict:
    """The node's `ready` file, once it appears; SystemExit with its log's tail if it exits first."""
    while not ready.exists():
        if process.poll() is not None:
            raise SystemExit(f"the node exited during start-up:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    info: dict = json.loads(ready.read_text())
    return info


# ---------------------------------------------------------------------- vouchers


def _sign_round(job: tuple[int, str, int, list[str]]) -> list[str]:
    from channel_node.signing import Domain, sign_digest, voucher_digest
    from channel_node.wire.channel import payment_signature

    chain_id, contract, round_number, ids = job
    domain = Domain(chain_id, contract)
    network = f"eip155:{chain_id}"
    lines = []
    for hex_id in ids:
        channel = bytes.fromhex(hex_id)
        amount = round_number * PRICE
        signature = sign_digest(VOUCHER_KEY, voucher_digest(domain, channel, amount))
        header = payment_signature(network, contract, channel, amount, signature)
        lines.append(f"{PAID_PATH}\t{header}")
    return lines


def write_vouchers(path: Path, chain_id: int, contract: str, ids: list[str], total: int) -> int:
    """Round r holds each channel's r-th running total; rounds in order, so every voucher is fresh."""
    rounds = max(1, -(-total // len(ids)))
    jobs = [(chain_id, contract, r, ids) for r in range(1, rounds + 1)]
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
    result: dict = json.loads(line.removeprefix("WRKJSON "))
    result["ok_per_s"] = (result["requests"] - result["non2xx"]) / (result["duration_us"] / 1e6)
    return result


# ---------------------------------------------------------------------- the command line


def bench_arguments(parser: argparse.ArgumentParser, *, duration: int, vouchers: int, vouchers_help: str) -> None:
    """The options both benchmarks take (and the hidden --serve of their node child)."""
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=duration, help="seconds per measured phase")
    parser.add_argument("--vouchers", type=int, default=vouchers, help=vouchers_help)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)


def child_or_missing_wrk(args: argparse.Namespace, serve: Callable[[argparse.Namespace], Coroutine[Any, Any, None]]) -> int | None:
    """With --serve this process is the node child: it serves until SIGTERM (0); 2 when wrk is not
    installed; None: go on driving."""
    if args.serve:
        from channel_node.cli.main import run_async

        run_async(serve(args))
        return 0
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    return None


def sayer(args: argparse.Namespace) -> Callable[[str], None]:
    """Progress on stderr, unless --json (then only the one line on stdout)."""

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    return say
