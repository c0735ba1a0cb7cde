"""The outbox keeps what each mined transaction cost (migration 0008: gas_used, gas_price), in every
store (memory, SQLite, PostgreSQL: `stores` in tests/conftest.py), exactly (a gas price is wei as text, like the other fee columns), and an older database's
rows read back with none (docs/economics.md, "Cost of collection")."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.core import ChannelState
from channel_node.signing import ChannelConfig
from channel_node.store import ChannelWrite, OutboxItem, OutboxStatus, Pin, SQLiteStore
from channel_node.store.sqlite import migrations

PIN = Pin(chain_id=31337, contract=b"\x0c" * 20, receiver=b"\x02" * 20)


def channel(n: int = 1) -> ChannelState:
    config = ChannelConfig.create(b"\x01" * 20, b"\x05" * 20, PIN.receiver, None, 3600, n)
    return replace(ChannelState(channel_id=n.to_bytes(32, "big"), config=config, deposited=1000),
                   ceiling=30, charged=30, signature=b"a" * 65)  # fmt: skip


@pytest.fixture
async def store(stores):
    store = await stores.opened(PIN)
    yield store
    await store.close()


@pytest.fixture
async def durable(durable_stores):
    store = await durable_stores.opened(PIN)
    yield store
    await store.close()


async def test_a_row_reads_back_the_gas_its_transaction_used_and_keeps_it_once_done(store):
    state = channel()
    await store.commit(ChannelWrite(state, 0, outbox=(OutboxItem("claim", 30, b"a" * 65),)))
    [row] = await store.outbox()
    assert (row.gas_used, row.gas_price) == (None, None), "not mined: no cost yet"
    await store.update_outbox(row.id, status="sent", tx_hash=b"h" * 32, nonce=1, attempts=1)
    await store.update_outbox(row.id, gas_used=43_477, gas_price=2**80 + 1)
    assert await store.complete_outbox(state.channel_id, claimed=30, settled=False) == 1
    [done] = await store.outbox((OutboxStatus.DONE,))
    assert (done.gas_used, done.gas_price, done.tx_hash) == (43_477, 2**80 + 1, b"h" * 32)
    await store.update_outbox(row.id, gas_used=None, gas_price=None)  # a re-sent row starts afresh
    [again] = await store.outbox((OutboxStatus.DONE,))
    assert (again.gas_used, again.gas_price) == (None, None)


_examples = iter(range(1000, 10**9))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gas=st.integers(0, 2**63 - 1), price=st.integers(0, 2**256 - 1))
async def test_any_gas_and_uint256_price_round_trip_through_a_durable_store(durable, gas, price):
    state = channel(next(_examples))  # a new channel in the one store for every example
    await durable.commit(ChannelWrite(state, 0, outbox=(OutboxItem("close", 30, b"a" * 65),)))
    [row] = [r for r in await durable.outbox() if r.channel_id == state.channel_id]
    await durable.update_outbox(row.id, gas_used=gas, gas_price=price)
    [row] = [r for r in await durable.outbox() if r.channel_id == state.channel_id]
    assert (row.gas_used, row.gas_price) == (gas, price)


# SQLite-only: it writes an SQLite file of the seventh schema by hand.
async def test_a_database_from_before_the_gas_columns_upgrades_with_rows_that_have_no_cost(tmp_path):
    path = tmp_path / "v7.db"
    before = [(n, sql) for n, sql in migrations() if n < 8]
    old = sqlite3.connect(path)
    old.executescript("".join(sql + ";\n" for _, sql in before) + f"PRAGMA user_version = {before[-1][0]};")
    old.execute(
        "INSERT INTO outbox (channel_id, kind, amount, signature, deadline, status, created_at, updated_at) "
        "VALUES (?, 'claim', '30', ?, NULL, 'done', 0, 0)", (b"\x01" * 32, b"s" * 65),
    )  # fmt: skip
    old.commit()
    old.close()
    store = SQLiteStore(path)
    await store.open(PIN)
    try:
        [row] = await store.outbox((OutboxStatus.DONE,))
        assert (row.amount, row.gas_used, row.gas_price) == (30, None, None)
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == migrations()[-1][0]
    finally:
        await store.close()
