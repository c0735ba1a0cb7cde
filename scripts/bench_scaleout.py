#!/usr/bin/env python3
"""Paid unlocks per second for one SQLite process, one PostgreSQL process and several PostgreSQL
processes on one database, against the free path, in one run (docs/scaling.md, "Measured here").

    python scripts/bench_scaleout.py [--channels 1000] [--connections 64] [--duration 5] [--processes 2] [--json]

As scripts/bench_unlock.py: each node process runs on its own in-process chain (the same
deterministic deployment, so the same contract and channel ids), the channels' confirmed deposits
are written to the store first, this process signs fresh vouchers (one new running total per
request, spread over all channels) and drives the node with wrk on loopback. Several processes
share the port with SO_REUSEPORT (as `serve --workers`), so the kernel spreads wrk's connections
among them and a channel's successive vouchers reach different processes. PostgreSQL is a
throwaway server this script starts (initdb into a temporary folder, fsync and synchronous_commit
on, as SQLite's synchronous=FULL), unless `--dsn` names one. After each phase the database is
audited: every 200 wrk saw must be a durable charge (`lost` counts those that are not) and every
channel's charged total must be the sum of its charges, within its best voucher (`double_charged`
counts channels where it is not: a voucher's credit spent twice).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))  # tests/postgres.py: where PostgreSQL's programs are, and its user

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
)

# ---------------------------------------------------------------------- a node process (child)


async def serve(args: argparse.Namespace) -> None:
    import logging

    from channel_node.logs import configure

    configure("json", level=logging.WARNING)
    await serve_node(args.channels, args.database, Path(args.ready), port=args.port, reuse_port=True, seed=args.seed,
                     start=True)  # fmt: skip


# ---------------------------------------------------------------------- PostgreSQL (throwaway)


class Postgres:
    """A durable throwaway server: fsync, full_page_writes and synchronous_commit stay on."""

    def __init__(self) -> None:
        from anvil import free_port
        from postgres import _as_postgres, find_bin

        self.bin = find_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="bench-scaleout-pg-"))
        run_as = _as_postgres()
        if run_as:
            os.chown(self.folder, run_as["user"], run_as["group"])
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.folder / "data"), "-U", "postgres", "-A", "trust",
                        "--no-instructions"], check=True, capture_output=True, **run_as)  # fmt: skip
        self.port = free_port()
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.folder / "data"), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.folder), "-c", "max_connections=100", "-c", "shared_buffers=64MB"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **run_as,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise SystemExit("postgres did not start")
            time.sleep(0.1)
        self.databases = 0

    def new_database(self) -> str:
        import asyncpg

        self.databases += 1
        name = f"bench{self.databases}"

        async def create() -> None:
            connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
            await connection.execute(f'CREATE DATABASE "{name}"')
            await connection.close()

        asyncio.run(create())
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


# ---------------------------------------------------------------------- audit


def audit(database: str) -> dict[str, int]:
    """Charges and the channels' totals as the database holds them."""
    if database.startswith("postgresql://"):
        import asyncpg

        async def read() -> tuple[list, list]:
            connection = await asyncpg.connect(database)
            try:
                charges = await connection.fetch(
                    "SELECT channel_id, COUNT(*) AS n, SUM(amount) AS total FROM charges GROUP BY channel_id")
                channels = await connection.fetch("SELECT channel_id, charged, ceiling FROM channels")
            finally:
                await connection.close()
            return ([(r["channel_id"], r["n"], int(r["total"])) for r in charges],
                    [(r["channel_id"], int(r["charged"]), int(r["ceiling"])) for r in channels])  # fmt: skip

        charges, channels = asyncio.run(read())
    else:
        db = sqlite3.connect(database)
        charges = [(c, n, int(t)) for c, n, t in db.execute(
            "SELECT channel_id, COUNT(*), SUM(CAST(amount AS INTEGER)) FROM charges GROUP BY channel_id")]  # fmt: skip
        channels = [(c, int(charged), int(ceiling)) for c, charged, ceiling in db.execute(
            "SELECT channel_id, charged, ceiling FROM channels")]  # fmt: skip
        db.close()
    by_channel = {bytes(c): (n, total) for c, n, total in charges}
    double = 0
    for channel, charged, ceiling in channels:
        n, total = by_channel.get(bytes(channel), (0, 0))
        if charged != total or total != n * PRICE or charged > ceiling:
            double += 1
    return {"charges": sum(n for _, n, _ in charges), "double_charged": double}


# ---------------------------------------------------------------------- driver


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, with_children: bool = False) -> float:
    """A process's CPU time (user + system) from /proc; with its children's: those it waited for
    (cutime, cstime) and those still running (PostgreSQL's backends are the postmaster's)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    total = (int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if with_children else 0)) / TICKS
    if with_children:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except (FileNotFoundError, ProcessLookupError):
                    continue
                if int(stat[1]) == pid:
                    total += (int(stat[11]) + int(stat[12])) / TICKS
    return total


def reserve_port() -> tuple[socket.socket, int]:
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    return holder, holder.getsockname()[1]


def start_nodes(work: Path, name: str, database: str, processes: int, channels: int) -> tuple[list, int, dict]:
    holder, port = reserve_port()
    children, info = [], {}
    try:
        for index in range(processes):  # one after the other: the first seeds and migrates
            ready = work / f"{name}-{index}.json"
            log = (work / f"{name}-{index}.log").open("w")
            command = [sys.executable, __file__, "--serve", "--channels", str(channels), "--database", database,
                       "--port", str(port), "--ready", str(ready)] + (["--seed"] if index == 0 else [])  # fmt: skip
            children.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
            try:
                info = wait_ready(children[-1], ready, work / f"{name}-{index}.log")
            except SystemExit:
                stop_nodes(children)
                raise
    finally:
        holder.close()
    return children, port, info


def stop_nodes(children: list) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_arguments(parser, duration=5, vouchers=80_000, vouchers_help="fresh vouchers to pre-sign (used again by each phase)")
    parser.add_argument("--processes", type=int, default=2, help="the largest PostgreSQL phase (2, or N where the machine allows)")
    parser.add_argument("--dsn", help="a PostgreSQL server to create the databases on (default: a throwaway one)")
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if (code := child_or_missing_wrk(args, serve)) is not None:
        return code
    say = sayer(args)
    work = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    script = work / "bench.lua"
    script.write_text(WRK_SCRIPT)
    postgres = None
    results: dict[str, dict] = {}
    lost = double = 0
    vouchers = work / "vouchers.tsv"
    free = None
    try:
        phases = [("sqlite_1", 1)] + [(f"postgres_{n}", n) for n in sorted({1, 2, max(2, args.processes)})]
        for name, processes in phases:
            if name.startswith("postgres") and postgres is None and args.dsn is None:
                say("starting a throwaway PostgreSQL server ...")
                postgres = Postgres()
            if name == "sqlite_1":
                database = str(work / "node.db")
            elif args.dsn is not None:
                database = args.dsn.rsplit("/", 1)[0] + f"/bench_{name}_{os.getpid()}"
                _create_database(args.dsn, database)
            else:
                assert postgres is not None
                database = postgres.new_database()
            say(f"{name}: {processes} process(es) ...")
            children, port, info = start_nodes(work, name, database, processes, args.channels)
            url = f"http://127.0.0.1:{port}"
            try:
                if not vouchers.exists():
                    say(f"signing {args.vouchers:,} fresh vouchers ...")
                    write_vouchers(vouchers, info["chain_id"], info["contract"], info["channels"], args.vouchers)
                if free is None:
                    free = run_wrk(url + FREE_PATH, args.connections, args.duration, 1, script, None)
                server = postgres.process.pid if postgres is not None and name.startswith("postgres") else None
                before = [cpu_seconds(c.pid) for c in children], cpu_seconds(server, True) if server else 0.0
                paid = run_wrk(url + PAID_PATH, args.connections, args.duration, 1, script, vouchers)
                after = [cpu_seconds(c.pid) for c in children], cpu_seconds(server, True) if server else 0.0
                node_cpu = sum(after[0]) - sum(before[0])
                db_cpu = after[1] - before[1]
            finally:
                stop_nodes(children)
            found = audit(database)
            served = paid["requests"] - paid["non2xx"]
            lost += max(0, served - found["charges"])
            double += found["double_charged"]
            results[name] = {"per_s": round(paid["ok_per_s"]), "p50_ms": round(paid["p50_us"] / 1000, 2),
                             "p99_ms": round(paid["p99_us"] / 1000, 2), "served": served, "refused": paid["non2xx"],
                             "charges": found["charges"],
                             # CPU per paid answer: noise from other work on the machine barely moves it
                             "node_cpu_us": round(1e6 * node_cpu / max(served, 1)),
                             "db_cpu_us": round(1e6 * db_cpu / max(served, 1))}  # fmt: skip
            say(f"  {results[name]}")
    finally:
        if postgres is not None:
            postgres.stop()
    assert free is not None
    summary: dict[str, object] = {name: r["per_s"] for name, r in results.items()}
    summary["free"] = round(free["ok_per_s"])
    summary["p99_ms"] = {name: r["p99_ms"] for name, r in results.items()} | {"free": round(free["p99_us"] / 1000, 2)}
    summary["p50_ms"] = {name: r["p50_ms"] for name, r in results.items()} | {"free": round(free["p50_us"] / 1000, 2)}
    summary["refused"] = {name: r["refused"] for name, r in results.items()}
    summary["cpu_us_per_paid"] = {name: {"node": r["node_cpu_us"], "db": r["db_cpu_us"]} for name, r in results.items()}
    summary["lost"] = lost
    summary["double_charged"] = double
    summary["channels"], summary["connections"], summary["duration_s"] = args.channels, args.connections, args.duration
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>16}  {value}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if lost == 0 and double == 0 else 1


def _create_database(admin_dsn: str, dsn: str) -> None:
    import asyncpg

    async def create() -> None:
        connection = await asyncpg.connect(admin_dsn)
        await connection.execute(f'CREATE DATABASE "{dsn.rsplit("/", 1)[1]}"')
        await connection.close()

    asyncio.run(create())


if __name__ == "__main__":
    sys.exit(main())
