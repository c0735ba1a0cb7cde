#!/usr/bin/env python3
"""Commits per second of a store alone: what group commit buys (docs/operations.md, "Measured").

    python scripts/bench_store.py --store sqlite|postgres [--writers 64] [--seconds 5] [--dsn URL] [--json]

`--writers` tasks each own one channel and commit one paid request after another (a charge with
a payment id and a raised voucher, as a sale writes), each waiting for its commit before the next:
as many writes are in flight as there are writers, which is what lets the store batch them.
SQLite writes a file in a temporary folder (synchronous=FULL unless --synchronous normal).
PostgreSQL uses --dsn, or else starts a throwaway server like the tests do (tests/postgres.py), with
fsync on unless --no-fsync. `--processes N` (PostgreSQL) opens N stores on one database, each with its
own connections as N node processes would have (but all in this one event loop); the writers are
shared out among them.
`--lookups` adds the lookup_payment a paid request makes before its commit; `--pool N` sets
PostgreSQL's read connections per store. `--no-bulk` (PostgreSQL) sends every write through the per-write path, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

PIN_CHAIN = 31337


async def run(args: argparse.Namespace) -> dict[str, object]:
    from channel_node.core import ChannelState
    from channel_node.signing import ChannelConfig
    from channel_node.store import ChannelWrite, Charge, Pin, PostgresStore, SQLiteStore

    pin = Pin(PIN_CHAIN, b"\x0c" * 20, b"\x02" * 20)
    server = None
    folder = tempfile.TemporaryDirectory()
    if args.store == "sqlite":
        stores: list = [SQLiteStore(Path(folder.name) / "node.db", args.synchronous)]
    else:
        dsn = args.dsn
        if dsn is None:
            from postgres import start_postgres

            server = start_postgres(fsync=not args.no_fsync)
            dsn = await server.new_database()
        stores = [PostgresStore(dsn, pool_size=args.pool) for _ in range(args.processes)]
        for store in stores:
            store.bulk = not args.no_bulk
    try:
        for store in stores:
            await store.open(pin)
        states = []
        for n in range(1, args.writers + 1):
            config = ChannelConfig.create(b"\x01" * 20, b"\x05" * 20, pin.receiver, None, 3600, n)
            state = ChannelState(channel_id=(10**9 + n).to_bytes(32, "big"), config=config, deposited=10**30)
            states.append(state)
        await asyncio.gather(*(stores[i % len(stores)].commit(ChannelWrite(s, 0)) for i, s in enumerate(states)))
        deadline = time.perf_counter() + args.seconds
        done = [0] * len(states)
        latencies: list[float] = []

        async def writer(i: int) -> None:
            store, state, version = stores[i % len(stores)], states[i], 1
            while time.perf_counter() < deadline:
                charged = version * 1000
                paid = replace(state, ceiling=charged, charged=charged, signature=b"s" * 65)
                started = time.perf_counter()
                if args.lookups:  # what a paid request reads first
                    await store.lookup_payment(state.channel_id, f"/articles/{version}", f"p{i}-{version}")
                version = await store.commit(
                    ChannelWrite(paid, version, Charge(f"/articles/{version}", 1000, f"p{i}-{version}", True, version))
                )
                latencies.append(time.perf_counter() - started)
                done[i] += 1

        before = [(s.batches, s.writes) for s in stores]
        started = time.perf_counter()
        await asyncio.gather(*(writer(i) for i in range(len(states))))
        elapsed = time.perf_counter() - started
        batches = sum(s.batches - b for s, (b, _) in zip(stores, before, strict=True))
        commits = sum(done)
        latencies.sort()
        return {
            "store": args.store + ("" if args.store == "sqlite" or not args.no_bulk else " (no bulk path)"),
            "writers": args.writers,
            "lookups": args.lookups,
            "processes": len(stores),
            "seconds": round(elapsed, 2),
            "commits": commits,
            "commits_per_s": round(commits / elapsed),
            "transactions": batches,
            "writes_per_transaction": round(commits / max(batches, 1), 1),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None,
        }
    finally:
        for store in stores:
            await store.close()
        if server is not None:
            server.stop()
        folder.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=1, help="PostgreSQL: stores on one database")
    parser.add_argument("--dsn", help="PostgreSQL: an existing database (default: a throwaway server)")
    parser.add_argument("--no-fsync", action="store_true", help="throwaway PostgreSQL: fsync off")
    parser.add_argument("--no-bulk", action="store_true", help="PostgreSQL: every write through the per-write path")
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full", help="SQLite")
    parser.add_argument("--lookups", action="store_true", help="a lookup_payment before each commit, as a paid request")
    parser.add_argument("--pool", type=int, default=4, help="PostgreSQL: read connections per store")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        print(" ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
