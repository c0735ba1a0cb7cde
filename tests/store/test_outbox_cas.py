"""`Store.mark_outbox`: a signed transaction is recorded on its outbox rows all or none, and only on
rows still as the sender read them, so two senders (an old leader waking up beside the new one)
never both record, and so never both broadcast, a transaction for one row (docs/scaling.md)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.core import ChannelState
from channel_node.signing import ChannelConfig
from channel_node.store import ChannelWrite, MemoryStore, OutboxItem, OutboxStatus, Pin, PostgresStore, SQLiteStore

PIN = Pin(chain_id=31337, contract=b"\x0c" * 20, receiver=b"\x02" * 20)
ROWS = 6


def channel(n: int) -> ChannelState:
    config = ChannelConfig.create(b"\x01" * 20, b"\x05" * 20, PIN.receiver, None, 3600, n)
    return replace(ChannelState(channel_id=n.to_bytes(32, "big"), config=config, deposited=1000),
                   ceiling=30, charged=30, signature=b"a" * 65)  # fmt: skip


async def open_store(kind: str, folder, request) -> MemoryStore | SQLiteStore | PostgresStore:
    if kind == "postgres":  # another process's row locks: `mark_outbox` checks under SELECT ... FOR UPDATE
        store = PostgresStore(await request.getfixturevalue("postgres").new_schema())
    else:
        store = MemoryStore() if kind == "memory" else SQLiteStore(folder / f"node-{id(folder)}.db")
    await store.open(PIN)
    for n in range(1, ROWS + 1):
        await store.commit(ChannelWrite(channel(n), 0, outbox=(OutboxItem("claim", 30, b"a" * 65),)))
    return store


def sent(tx: int) -> dict:
    return {"status": OutboxStatus.SENT, "tx_hash": bytes([tx]) * 32, "raw_tx": b"raw", "nonce": tx, "max_fee": 2, "priority_fee": 1}


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
async def test_a_second_sender_that_read_the_same_rows_records_nothing(kind, tmp_path, request):
    store = await open_store(kind, tmp_path, request)
    try:
        rows = await store.outbox()
        assert await store.mark_outbox(rows[:2], **sent(1))
        assert not await store.mark_outbox(rows[1:3], **sent(2)), "one of its rows moved: none is recorded"
        after = {row.id: row for row in await store.outbox()}
        assert [after[r.id].tx_hash for r in rows[:3]] == [bytes([1]) * 32] * 2 + [None]
        assert [after[r.id].attempts for r in rows[:3]] == [1, 1, 0]
        # A fee bump reads the sent rows again and replaces their transaction; a stale copy cannot.
        assert await store.mark_outbox([after[rows[0].id]], **sent(3))
        assert not await store.mark_outbox([after[rows[0].id]], **sent(4))
        assert (await store.outbox())[0].tx_hash == bytes([3]) * 32
    finally:
        await store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["memory", "sqlite", "postgres"]),
       groups=st.lists(st.sets(st.integers(0, ROWS - 1), min_size=1), min_size=2, max_size=6))  # fmt: skip
async def test_racing_senders_record_each_row_once_and_each_group_whole_or_not_at_all(kind, groups, tmp_path_factory, request):
    store = await open_store(kind, tmp_path_factory.mktemp("cas"), request)
    try:
        rows = await store.outbox()  # every sender read the same rows
        outcomes = await asyncio.gather(*(store.mark_outbox([rows[i] for i in sorted(g)], **sent(n + 1))
                                          for n, g in enumerate(groups)))  # fmt: skip
        after = {row.id: row for row in await store.outbox()}
        taken: set[int] = set()
        for n, (group, won) in enumerate(zip(groups, outcomes, strict=True)):
            hashes = {after[rows[i].id].tx_hash for i in group}
            if won:
                assert hashes == {bytes([n + 1]) * 32}, "a recorded group has its transaction on every row"
                assert not taken & group, "no row was recorded twice"
                taken |= group
            else:
                assert bytes([n + 1]) * 32 not in hashes, "a group that lost records on none of its rows"
        assert all(after[rows[i].id].attempts == (1 if i in taken else 0) for i in range(ROWS))
        assert any(outcomes), "the first to reach the store wins"
    finally:
        await store.close()


async def test_two_processes_racing_on_one_postgresql_database_record_a_row_once(postgres):
    """Two PostgresStores (two node processes) read the same open rows and record at once: the row
    lock makes the second check wait for the first's commit, so exactly one transaction is recorded."""
    dsn = await postgres.new_schema()
    first = PostgresStore(dsn)
    await first.open(PIN)
    for n in range(1, ROWS + 1):
        await first.commit(ChannelWrite(channel(n), 0, outbox=(OutboxItem("claim", 30, b"a" * 65),)))
    second = PostgresStore(dsn)
    await second.open(PIN)
    try:
        for round_number in range(5):
            rows_a, rows_b = await first.outbox(), await second.outbox()
            won = await asyncio.gather(first.mark_outbox(rows_a, **sent(2 * round_number + 1)),
                                       second.mark_outbox(rows_b, **sent(2 * round_number + 2)))  # fmt: skip
            assert sorted(won) == [False, True]
            after = await first.outbox()
            assert len({row.tx_hash for row in after}) == 1 and {row.attempts for row in after} == {round_number + 1}
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
async def test_mark_outbox_and_update_outbox_store_uint256_fees_alike(kind, tmp_path, request):
    """Both setters take every column the sender may set, uint256 ones at their largest (they once
    converted them in two copies, and `mark_outbox`'s lacked `gas_price`)."""
    store = await open_store(kind, tmp_path, request)
    top = 2**256 - 1
    try:
        first, second = (await store.outbox())[:2]
        assert await store.mark_outbox([first], **{**sent(1), "max_fee": top, "priority_fee": top, "gas_price": top})
        await store.update_outbox(second.id, **{**sent(2), "max_fee": top, "priority_fee": top, "gas_price": top})
        after = {row.id: row for row in await store.outbox()}
        for row_id in (first.id, second.id):
            assert (after[row_id].max_fee, after[row_id].priority_fee, after[row_id].gas_price) == (top, top, top)
        with pytest.raises(ValueError, match="cannot be updated"):
            await store.mark_outbox([after[first.id]], channel_id=b"x")  # type: ignore[call-arg]
    finally:
        await store.close()
