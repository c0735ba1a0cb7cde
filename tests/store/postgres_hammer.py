"""One "node process" for test_postgres_store.py's cross-process test: opens a PostgresStore on the
DSN given and, for a bounded number of rounds, reads a channel, charges it one unit under a payment
id of its own and commits, reloading on StaleWrite as the runtime does. Prints its successes as JSON."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from dataclasses import replace
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from channel_node.store import ChannelWrite, Charge, PostgresStore, StaleWrite  # noqa: E402
from test_store import PIN, channel  # noqa: E402


async def main(dsn: str, name: str, channels: int, rounds: int) -> None:
    store = PostgresStore(dsn)
    await store.open(PIN)
    won: list[tuple[int, str]] = []
    stale = 0
    try:
        async def worker(k: int) -> None:
            nonlocal stale
            rng = random.Random(f"{name}-{k}")
            for r in range(rounds):
                n = rng.randrange(1, channels + 1)
                payment = f"{name}-{k}-{r}"
                while True:
                    stored = await store.load_channel(channel(n).channel_id)
                    assert stored is not None
                    charged = stored.state.charged + 1
                    write = ChannelWrite(replace(stored.state, charged=charged, ceiling=charged), stored.version,
                                         Charge(f"/r/{payment}", 1, payment, True, r))  # fmt: skip
                    try:
                        await store.commit(write)
                    except StaleWrite:
                        stale += 1
                        continue
                    won.append((n, payment))
                    break

        await asyncio.gather(*(worker(k) for k in range(8)))
    finally:
        await store.close()
    print(json.dumps({"won": won, "stale": stale}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
