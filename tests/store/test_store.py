"""Every store honours one contract: compare-and-set, charges and unlocks, uint256 amounts; the
durable ones (SQLite, PostgreSQL: `durable_stores` in tests/conftest.py) add durability, group
commit and the pinned chain/contract/receiver; SQLite a single-process lock beside its file."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest

from channel_node.core import ChannelState
from channel_node.signing import ChannelConfig
from channel_node.store import (
    ChannelWrite,
    Charge,
    OutboxItem,
    Pin,
    SQLiteStore,
    StaleWrite,
    StoreLocked,
    StoreMismatch,
)
from channel_node.store.postgres import migrations as postgres_migrations
from channel_node.store.sqlite import migrations

PIN = Pin(chain_id=131277322940537, contract=b"\x0c" * 20, receiver=b"\x02" * 20)
UINT256_MAX = (1 << 256) - 1


def channel(n: int = 1, **changes) -> ChannelState:
    config = ChannelConfig.create(b"\x01" * 20, b"\x05" * 20, PIN.receiver, None, 3600, n)
    return replace(ChannelState(channel_id=n.to_bytes(32, "big"), config=config, deposited=1000), **changes)


@pytest.fixture
async def store(stores):
    store = await stores.opened(PIN)
    yield store
    await store.close()


async def schema_version(store) -> int:
    """The highest migration a durable store's database records."""
    if isinstance(store, SQLiteStore):
        return sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone()[0]
    import asyncpg

    connection = await asyncpg.connect(store.dsn)
    try:
        return await connection.fetchval("SELECT max(version) FROM schema_migrations")
    finally:
        await connection.close()


async def test_round_trip_keeps_uint256_amounts_exact(store):
    state = channel(
        deposited=UINT256_MAX, ceiling=UINT256_MAX - 1, charged=UINT256_MAX - 2, signature=b"s" * 65,
        close_deadline=2**40 - 2, receiver_closing=True,
    )  # fmt: skip
    assert await store.commit(ChannelWrite(state, expected_version=0)) == 1
    loaded = await store.load_channel(state.channel_id)
    assert loaded.state == state and loaded.version == 1
    assert await store.load_channel(b"\x00" * 32) is None


async def test_compare_and_set_refuses_a_write_from_a_stale_read(store):
    state = channel()
    await store.commit(ChannelWrite(state, 0))
    await store.commit(ChannelWrite(replace(state, charged=10, ceiling=10), 1))
    with pytest.raises(StaleWrite):
        await store.commit(ChannelWrite(replace(state, charged=5, ceiling=5), 1))
    with pytest.raises(StaleWrite):  # a second insert of the same channel
        await store.commit(ChannelWrite(state, 0))
    assert (await store.load_channel(state.channel_id)).state.charged == 10


async def test_charges_record_unlocks_and_payment_ids(store):
    state = channel()
    await store.commit(ChannelWrite(state, 0))
    paid = replace(state, ceiling=30, charged=10)
    await store.commit(ChannelWrite(paid, 1, Charge("/a", 10, "pay-1", once=True, at=5)))
    await store.commit(ChannelWrite(replace(paid, charged=20), 2, Charge("/api", 10, None, once=False, at=6)))
    lookup = await store.lookup_payment(state.channel_id, "/a", "pay-1")
    assert lookup.unlocked and lookup.prior_resource == "/a"
    lookup = await store.lookup_payment(state.channel_id, "/api", "pay-2")
    assert not lookup.unlocked and lookup.prior_resource is None
    assert [c.resource for c in await store.charges(state.channel_id)] == ["/a", "/api"]
    with pytest.raises(StaleWrite):  # the same payment id cannot be charged twice
        await store.commit(ChannelWrite(replace(paid, charged=30), 3, Charge("/b", 10, "pay-1", once=True, at=7)))
    assert (await store.load_channel(state.channel_id)).version == 3


async def test_durable_across_reopen_and_checks_its_pin(durable_stores):
    store = await durable_stores.opened(PIN)
    await store.commit(ChannelWrite(channel(ceiling=7, charged=7, signature=b"v" * 65), 0))
    await store.close()
    reopened = durable_stores.again(store)
    await reopened.open(PIN)
    assert (await reopened.load_channel(channel().channel_id)).state.charged == 7
    await reopened.close()
    for wrong in (replace(PIN, chain_id=1), replace(PIN, contract=b"\x0d" * 20), replace(PIN, receiver=b"\x03" * 20)):
        with pytest.raises(StoreMismatch):
            await durable_stores.again(store).open(wrong)
    known = migrations() if isinstance(store, SQLiteStore) else postgres_migrations()
    assert await schema_version(store) == len(known) == known[-1][0]


# SQLite-only: these write SQLite files of older schemas by hand (the PostgreSQL upgrade is in
# tests/store/test_postgres_store.py), or test the lock file beside the database.


async def test_sqlite_upgrades_a_database_from_the_first_schema(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(migrations()[0][1] + "; PRAGMA user_version = 1;")
    old.execute(
        "INSERT INTO channels VALUES (?, ?, ?, ?, ?, 3600, '1', '100', '0', '10', ?, '10', NULL, 0, 1, 0)",
        (b"\x01" * 32, b"\x01" * 20, b"\x05" * 20, PIN.receiver, b"\0" * 20, b"s" * 65),
    )
    old.commit()
    old.close()
    store = SQLiteStore(path)
    await store.open(PIN)
    loaded = await store.load_channel(b"\x01" * 32)
    assert (loaded.state.charged, loaded.state.receiver_closing, loaded.version) == (10, False, 1)
    await store.close()


async def test_sqlite_refuses_a_second_process_on_the_same_file(tmp_path):
    first = SQLiteStore(tmp_path / "node.db")
    await first.open(PIN)
    with pytest.raises(StoreLocked):
        await SQLiteStore(tmp_path / "node.db").open(PIN)
    await first.close()
    second = SQLiteStore(tmp_path / "node.db")
    await second.open(PIN)  # the lock went with the first store
    await second.close()


async def test_group_commit_batches_concurrent_writes_and_keeps_each_outcome(durable_stores):
    store = await durable_stores.opened(PIN)
    states = [channel(n) for n in range(1, 301)]
    results = await asyncio.gather(
        *(store.commit(ChannelWrite(s, 0)) for s in states),
        store.commit(ChannelWrite(states[0], 5)),  # stale: fails alone, the rest of its batch commits
        return_exceptions=True,
    )
    assert results[:-1] == [1] * 300 and isinstance(results[-1], StaleWrite)
    assert store.batches < 100, f"{store.batches} transactions for 301 concurrent writes"
    await store.close()
    reopened = durable_stores.again(store)
    await reopened.open(PIN)
    assert len(await reopened.list_channels()) == 300
    await reopened.close()


async def test_batched_writes_fail_alone_when_one_is_stale_or_refused(durable_stores):
    """SQLite's bulk path falls back per write; PostgreSQL's batch redoes with savepoints."""
    store = await durable_stores.opened(PIN)
    states = [channel(n) for n in range(1, 101)]
    await asyncio.gather(*(store.commit(ChannelWrite(s, 0)) for s in states))
    await store.commit(ChannelWrite(replace(states[0], charged=1, ceiling=1), 1, Charge("/x", 1, "dup", True, 1)))

    def paid(s, version, payment_id):
        return ChannelWrite(replace(s, ceiling=5, charged=5), version, Charge("/a", 5, payment_id, True, 2))

    results = await asyncio.gather(
        *(store.commit(paid(s, 1, f"p{n}")) for n, s in enumerate(states[1:])),
        store.commit(paid(states[0], 1, "late")),  # stale: version is 2 now
        return_exceptions=True,
    )
    assert results[:-1] == [2] * 99 and isinstance(results[-1], StaleWrite)
    results = await asyncio.gather(
        *(store.commit(paid(replace(s, charged=5), 2, f"q{n}")) for n, s in enumerate(states[1:50])),
        store.commit(paid(states[0], 2, "dup")),  # refused by the unique payment id: only this write fails
        return_exceptions=True,
    )
    assert results[:-1] == [3] * 49 and isinstance(results[-1], StaleWrite)
    assert (await store.load_channel(states[0].channel_id)).state.charged == 1
    assert len(await store.charges(states[1].channel_id)) == 2
    await store.close()


async def test_outbox_rows_commit_with_the_channel_and_keep_one_open_row_per_kind(store):
    from channel_node.store import Cursor, OutboxItem

    state = channel(ceiling=30, charged=30, signature=b"a" * 65, close_deadline=5000)
    await store.commit(ChannelWrite(state, 0, outbox=(OutboxItem("claim", 30, b"a" * 65, 5000),)))
    await store.commit(ChannelWrite(replace(state, ceiling=40), 1, outbox=(OutboxItem("claim", 40, b"b" * 65, 5000),)))
    [row] = await store.outbox()
    assert (row.kind, row.amount, row.signature, row.deadline, row.status) == ("claim", 40, b"b" * 65, 5000, "pending")
    await store.update_outbox(row.id, status="sent", tx_hash=b"h" * 32, nonce=7, max_fee=2**70, attempts=1)
    await store.commit(ChannelWrite(replace(state, ceiling=50), 2, outbox=(OutboxItem("claim", 50, b"c" * 65, 5000),)))
    [row] = await store.outbox()
    assert (row.amount, row.status, row.nonce, row.max_fee) == (40, "sent", 7, 2**70), "a sent row is not rewritten"
    assert [c.state.channel_id for c in await store.closing_channels()] == [state.channel_id]
    assert await store.complete_outbox(state.channel_id, claimed=39, settled=False) == 0
    assert await store.complete_outbox(state.channel_id, claimed=40, settled=False) == 1
    assert await store.outbox() == [] and len(await store.outbox(("done",))) == 1
    assert await store.cursor() is None
    await store.set_cursor(Cursor(12, b"\x07" * 32))
    assert await store.cursor() == Cursor(12, b"\x07" * 32)
    assert await store.channel_ids() == {state.channel_id}


async def test_sqlite_upgrade_keeps_outbox_rows_of_the_third_schema_readable(tmp_path):
    """Rows written before claim amounts existed claimed their voucher: they read back that way, and
    channels stored then name no receiver authorizer."""
    path = tmp_path / "v3.db"
    old = sqlite3.connect(path)
    old.executescript("".join(sql + ";\n" for _, sql in migrations()[:3]) + "PRAGMA user_version = 3;")
    old.execute(
        "INSERT INTO channels VALUES (?, ?, ?, ?, ?, 3600, '1', '100', '0', '30', ?, '10', NULL, 0, 1, 0, 0)",
        (b"\x01" * 32, b"\x01" * 20, b"\x05" * 20, PIN.receiver, b"\0" * 20, b"s" * 65),
    )
    old.execute(
        "INSERT INTO outbox (channel_id, kind, amount, signature, deadline, status, created_at, updated_at) "
        "VALUES (?, 'claim', '30', ?, 500, 'pending', 0, 0)", (b"\x01" * 32, b"s" * 65),
    )  # fmt: skip
    old.commit()
    old.close()
    store = SQLiteStore(path)
    await store.open(PIN)
    loaded = await store.load_channel(b"\x01" * 32)
    assert loaded.state.config.receiver_authorizer == b"\0" * 20 and not loaded.state.config.has_authorizer
    [row] = await store.outbox()
    assert (row.amount, row.voucher_amount, row.voucher) == (30, None, 30)
    # a new decision on the same channel claims what was charged under the voucher
    await store.commit(ChannelWrite(replace(loaded.state, charged=20), 1, outbox=(OutboxItem("claim", 20, b"t" * 65, 500, 30),)))
    [row] = await store.outbox()
    assert (row.amount, row.voucher, row.signature) == (30, 30, b"s" * 65), "a pending row is only raised, never lowered"
    await store.close()


async def test_outbox_keeps_claim_and_voucher_amounts_and_the_authorizer(store):
    authorizer = b"\x0a" * 20
    config = ChannelConfig.create(b"\x01" * 20, b"\x05" * 20, PIN.receiver, None, 3600, 7, authorizer)
    state = ChannelState(channel_id=b"\x07" * 32, config=config, deposited=1000)
    await store.commit(ChannelWrite(state, 0, outbox=(OutboxItem("claim", 10, b"a" * 65, None, 30),)))
    await store.commit(ChannelWrite(replace(state, charged=20), 1, outbox=(OutboxItem("claim", 20, b"b" * 65, None, 50),)))
    [row] = await store.outbox()
    assert (row.amount, row.voucher, row.signature) == (20, 50, b"b" * 65)
    assert (await store.load_channel(b"\x07" * 32)).state.config.receiver_authorizer == authorizer
