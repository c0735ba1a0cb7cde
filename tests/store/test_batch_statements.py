"""The writer's multi-row statements (one UPDATE ... FROM VALUES for a batch's channels, one
multi-row INSERT per table: docs/design.md, "The paid path's costs") decide and store exactly what
one statement per write did: for generated rounds of concurrent writes (current or stale versions,
charges with and without a payment id, some reusing one, bought once or not), every write gets the
same outcome and the database ends the same, with batches split across statements or not."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.core import ChannelState
from channel_node.signing import ChannelConfig
from channel_node.store import ChannelWrite, Charge, Pin, SQLiteStore
from channel_node.store import sqlite as sqlite_module

PIN = Pin(chain_id=1, contract=b"\x0c" * 20, receiver=b"\x02" * 20)
CHANNELS = 6

# One write per chosen channel and round: (channel, stale?, charge: None or (payment id, once)).
writes = st.tuples(
    st.integers(0, CHANNELS - 1),
    st.booleans(),
    st.none() | st.tuples(st.none() | st.sampled_from(["p1", "p2", "p3"]), st.booleans()),
)
rounds = st.lists(st.lists(writes, max_size=CHANNELS).map(lambda ws: list({w[0]: w for w in ws}.values())), min_size=1, max_size=4)


def state(n: int) -> ChannelState:
    config = ChannelConfig.create(b"\x01" * 20, b"\x05" * 20, PIN.receiver, None, 3600, n + 1)
    return ChannelState(channel_id=(n + 1).to_bytes(32, "big"), config=config, deposited=10**30)


async def play(path: Path, plan: list[list[tuple[int, bool, Any]]]) -> tuple[list[Any], list[Any]]:
    store = SQLiteStore(path, synchronous="normal")  # durability is not what is compared here
    await store.open(PIN)
    versions = {}
    for n in range(CHANNELS):
        versions[n] = await store.commit(ChannelWrite(state(n), 0))
    outcomes: list[Any] = []
    for number, round_writes in enumerate(plan, 1):
        jobs = []
        for n, stale, charge in round_writes:
            amount = number * 10**20 + n  # beyond 64 bits: stored as exact text
            new = replace(state(n), ceiling=amount, charged=amount, signature=bytes([n]) * 65)
            record = None if charge is None else Charge(f"/r{n % 2}", amount, charge[0], charge[1], number)
            jobs.append(store.commit(ChannelWrite(new, versions[n] - 1 if stale else versions[n], record)))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for (n, _, _), result in zip(round_writes, results, strict=True):
            if isinstance(result, int):
                versions[n] = result
            outcomes.append(result if isinstance(result, int) else type(result).__name__)
    await store.close()
    database = sqlite3.connect(path)
    tables = [
        database.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        for table in ("channels", "charges", "unlocks")
    ]
    database.close()
    # updated_at is the commit's clock: not part of what a write decides.
    tables[0] = [row[:15] + row[16:] for row in tables[0]]
    return outcomes, tables


@settings(max_examples=15, deadline=None)
@given(rounds)
def test_multi_row_statements_decide_and_store_as_one_statement_per_write(plan: list[list[tuple[int, bool, Any]]]) -> None:
    results = []
    for rows_per_statement, update_from in ((256, True), (2, True), (1, False)):
        with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patched:
            patched.setattr(sqlite_module, "ROWS_PER_STATEMENT", rows_per_statement)
            patched.setattr(sqlite_module, "_UPDATE_FROM", update_from)
            results.append(asyncio.run(play(Path(folder) / "node.db", plan)))
    assert results[0] == results[1] == results[2]


def test_the_batch_statements_are_the_one_row_statements_repeated() -> None:
    update = sqlite_module._update_channels_sql(sqlite_module._UPDATE_CHANNEL, 2)
    assert update.count("?") == 2 * sqlite_module._UPDATE_CHANNEL.count("?")
    assert "channels.channel_id = v.column11 AND channels.version = v.column12" in update
    insert = sqlite_module._insert_rows_sql(sqlite_module._INSERT_CHARGE, 3)
    assert insert.count("?") == 3 * sqlite_module._INSERT_CHARGE.count("?")
