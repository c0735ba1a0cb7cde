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
from pathlib import Path

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

# The node, wrk and the vouchers, as bench_scaleout.py has them (bench_insights.py uses them from here).
from bench_support import (  # noqa: E402
    FREE_PATH,
    PAID_PATH,
    PRICE,
    WRK_SCRIPT,
    bench_arguments,
    child_or_missing_wrk,
    run_wrk,
    sayer,
    serve_node,
    wait_ready,
    write_vouchers,
    write_whole,
)

# ---------------------------------------------------------------------- the node (child process)


async def serve(args: argparse.Namespace) -> None:
    import logging

    from channel_node.logs import configure

    configure("json", level=getattr(logging, args.log_level.upper()))  # stdout goes to a file: as in production
    data = Path(args.data_dir)
    await serve_node(
        args.channels, data / "node.db", data / "node.json", deposit_on_chain=True,
        settings={"sqlite_synchronous": args.synchronous},
        while_serving=lambda stop: _name_threads(data / "threads.json", stop),
    )  # fmt: skip


async def _name_threads(path: Path, stop: asyncio.Event) -> None:
    """Writes {native thread id: name} for the driver's per-thread CPU figures (Python 3.11 names no
    OS thread); every second, since the recovery thread starts with the first paid request."""
    import threading

    while not stop.is_set():
        names = {str(t.native_id): "loop" if t is threading.main_thread() else t.name for t in threading.enumerate()}
        write_whole(path, names)
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


# ---------------------------------------------------------------------- driver


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
    bench_arguments(parser, duration=10, vouchers=150_000, vouchers_help="fresh vouchers to pre-sign")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the node gets the other core)")
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    parser.add_argument("--log-level", choices=["info", "warning"], default="info",
                        help="node log level (info: one JSON line per paid request, the default of a real node)")
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if (code := child_or_missing_wrk(args, serve)) is not None:
        return code
    say = sayer(args)
    work = Path(tempfile.mkdtemp(prefix="bench-unlock-"))
    say(f"starting the node with {args.channels} open channels ...")
    node_log = (work / "node.log").open("w")
    node = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--channels", str(args.channels), "--data-dir", str(work),
         "--synchronous", args.synchronous, "--log-level", args.log_level],
        stdout=node_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        info = wait_ready(node, work / "node.json", work / "node.log")
        say(f"signing {args.vouchers:,} fresh vouchers ...")
        started = time.perf_counter()
        vouchers = work / "vouchers.tsv"
        signed = write_vouchers(vouchers, info["chain_id"], info["contract"], info["channels"], args.vouchers)
        say(f"  {signed:,} in {time.perf_counter() - started:.1f} s")
        script = work / "bench.lua"
        script.write_text(WRK_SCRIPT)
        url = info["url"]
        say(f"free path: wrk -c{args.connections} -d{args.duration}s {url}{FREE_PATH}")
        free = run_wrk(url + FREE_PATH, args.connections, args.duration, args.threads, script, None)
        say(f"paid path: fresh vouchers over {args.channels} channels")
        before = thread_cpu(node.pid, work / "threads.json")
        paid = run_wrk(url + PAID_PATH, args.connections, args.duration, args.threads, script, vouchers)
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
