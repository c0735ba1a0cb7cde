"""Caps and passes in the store (migration 0007_spending): a charge keeps its cap group and pass,
and `lookup_payment` with a `SpendingQuery` answers what `store/base.py:spending_lookup` defines,
in every store (memory, SQLite, PostgreSQL: `stores` in tests/conftest.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.core import ChannelState
from channel_node.signing import ChannelConfig
from channel_node.store import ChannelWrite, Charge, Pin, SpendingQuery, SQLiteStore, spending_lookup
from channel_node.store.sqlite import migrations

PIN = Pin(chain_id=1337, contract=b"\x0c" * 20, receiver=b"\x02" * 20)


def channel(n: int = 1) -> ChannelState:
    config = ChannelConfig.create(b"\x01" * 20, b"\x05" * 20, PIN.receiver, None, 3600, n)
    return ChannelState(channel_id=n.to_bytes(32, "big"), config=config, deposited=10**30)


@pytest.fixture
async def store(stores):
    store = await stores.opened(PIN)
    yield store
    await store.close()


async def write_charges(store, state: ChannelState, charges: list[Charge]) -> None:
    version = await store.commit(ChannelWrite(state, 0))
    total = 0
    for charge in charges:
        total += charge.amount
        version = await store.commit(ChannelWrite(replace(state, charged=total, ceiling=total), version, charge))


async def test_a_charge_keeps_its_cap_group_and_pass(store):
    state = channel()
    charges = [
        Charge("/news/a", 10, "p1", True, 100, cap_group="news"),
        Charge("/news/b", 30, None, True, 200, pass_name="news-day", pass_until=200 + 86_400),
        Charge("/news/c", 0, None, True, 300, cap_group="news", pass_name="news-day"),
    ]
    await write_charges(store, state, charges)
    assert await store.charges(state.channel_id) == charges


async def test_the_lookup_counts_the_group_since_the_window_and_the_passes_valid_now(store):
    state, other = channel(1), channel(2)
    await write_charges(store, state, [
        Charge("/news/a", 7, None, True, 99, cap_group="news"),  # before the window
        Charge("/news/b", 5, None, True, 100, cap_group="news"),
        Charge("/news/c", 0, None, True, 150, cap_group="news"),  # free under the cap: no reset time
        Charge("/sport/a", 9, None, True, 160, cap_group="sport"),
        Charge("/news/d", 3, None, False, 170, cap_group="news"),
        Charge("/x", 20, None, True, 50, pass_name="day", pass_until=180),  # expired at 200
        Charge("/x", 20, None, True, 190, pass_name="day", pass_until=400),
        Charge("/y", 40, None, True, 195, pass_name="week", pass_until=1000),
        Charge("/y", 0, None, True, 196, pass_name="week"),  # a read the pass covered: no pass held by it
        # Bought after `now` (another process's clock ahead): held, never sold twice (tests/node/test_pass_clocks.py).
        Charge("/z", 40, None, True, 250, pass_name="later", pass_until=900),
    ])  # fmt: skip
    await write_charges(store, other, [Charge("/news/a", 50, None, True, 120, cap_group="news")])
    query = SpendingQuery("news", since=100, passes=("day", "week", "later", "none"), now=200)
    lookup = await store.lookup_payment(state.channel_id, "/news/b", None, True, query)
    assert lookup.unlocked
    assert (lookup.cap_paid, lookup.cap_oldest) == (8, 100)
    ended = await store.lookup_payment(state.channel_id, "/news/b", None, True, replace(query, until=170))
    assert (ended.cap_paid, ended.cap_oldest) == (5, 100), "a period's end is exclusive"
    assert dict(lookup.held_passes) == {"day": 400, "week": 1000, "later": 900} and lookup.pass_until == 1000
    bare = await store.lookup_payment(state.channel_id, "/news/b", None, True)
    assert (bare.cap_paid, bare.cap_oldest, bare.pass_until, dict(bare.held_passes)) == (0, None, None, {})
    nothing = await store.lookup_payment(other.channel_id, "/n", None, True, SpendingQuery(None, 0, (), 200))
    assert (nothing.cap_paid, nothing.pass_until) == (0, None)


charge_strategy = st.builds(
    Charge,
    resource=st.sampled_from(["/news/a", "/news/b", "/other"]),
    amount=st.integers(0, 10**24),
    payment_id=st.none(),
    once=st.booleans(),
    at=st.integers(0, 1_000),
    cap_group=st.sampled_from([None, "news", "sport"]),
    pass_name=st.sampled_from([None, "day", "week"]),
    pass_until=st.none() | st.integers(0, 2_000),
)


_examples = iter(range(1000, 10**9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    charges=st.lists(charge_strategy, max_size=12),
    group=st.sampled_from([None, "news", "sport"]),
    since=st.integers(0, 1_000),
    now=st.integers(0, 1_500),
    passes=st.lists(st.sampled_from(["day", "week", "month"]), unique=True, max_size=3),
    until=st.none() | st.integers(0, 1_200),
)
async def test_every_store_answers_what_spending_lookup_defines(store, charges, group, since, now, passes, until):
    query = SpendingQuery(group, since, tuple(passes), now, until)
    paid, oldest, held = spending_lookup(charges, query)
    state = channel(next(_examples))  # a new channel in the one store for every example
    await write_charges(store, state, charges)
    lookup = await store.lookup_payment(state.channel_id, "/news/a", None, True, query)
    assert (lookup.cap_paid, lookup.cap_oldest, dict(lookup.held_passes)) == (paid, oldest, held)
    assert lookup.pass_until == max(held.values(), default=None)


async def test_concurrent_writes_keep_their_spending_fields_through_group_commit(durable_stores):
    store = await durable_stores.opened(PIN)
    states = [channel(n) for n in range(1, 41)]
    await asyncio.gather(*(store.commit(ChannelWrite(s, 0)) for s in states))
    await asyncio.gather(*(  # one batch, the bulk path
        store.commit(ChannelWrite(replace(s, charged=5, ceiling=5), 1, Charge("/n", 5, None, True, 7, "news", "d", 99)))
        for s in states
    ))  # fmt: skip
    for s in states:
        assert await store.charges(s.channel_id) == [Charge("/n", 5, None, True, 7, "news", "d", 99)]
    assert store.batches <= 4, "one batch, or a few"
    await store.close()


async def test_sqlite_upgrade_from_the_sixth_schema_keeps_old_charges_without_cap_or_pass(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript("".join(sql + ";\n" for number, sql in migrations() if number <= 6) + "PRAGMA user_version = 6;")
    old.execute(
        "INSERT INTO channels (channel_id, payer, signer, receiver, token, close_delay, salt, deposited, claimed, "
        "ceiling, signature, charged, close_deadline, settled, version, updated_at) "
        "VALUES (?, ?, ?, ?, ?, 3600, '1', '100', '0', '10', ?, '10', NULL, 0, 2, 0)",
        (b"\x01" * 32, b"\x01" * 20, b"\x05" * 20, PIN.receiver, b"\0" * 20, b"s" * 65),
    )
    old.execute("INSERT INTO charges (channel_id, seq, resource, amount, payment_id, at) VALUES (?, 2, '/a', '10', NULL, 5)",
                (b"\x01" * 32,))  # fmt: skip
    old.commit()
    old.close()
    store = SQLiteStore(path)
    await store.open(PIN)
    assert await store.charges(b"\x01" * 32) == [Charge("/a", 10, None, False, 5)]
    lookup = await store.lookup_payment(b"\x01" * 32, "/a", None, True, SpendingQuery("news", 0, ("day",), 10))
    assert (lookup.cap_paid, lookup.pass_until) == (0, None)
    await store.close()


async def test_sums_beyond_a_64_bit_integer_stay_exact(store):
    """SQLite sums in 64 bits while it can (an overflow raises) and the store in Python beyond:
    18-digit amounts whose sum overflows, and uint256-sized ones, are summed exactly."""
    big, huge = 10**18 - 1, 2**255
    state = channel(3)
    charges = [Charge(f"/n/{n}", big, None, True, 10 + n, cap_group="news") for n in range(12)]
    await write_charges(store, state, charges)
    lookup = await store.lookup_payment(state.channel_id, "/x", None, True, SpendingQuery("news", 0, (), 100))
    assert (lookup.cap_paid, lookup.cap_oldest) == (12 * big, 10)
    other = channel(4)
    await write_charges(store, other, [Charge("/a", huge, None, True, 5, "news"), Charge("/b", 7, None, True, 6, "news")])
    lookup = await store.lookup_payment(other.channel_id, "/x", None, True, SpendingQuery("news", 0, (), 100))
    assert lookup.cap_paid == huge + 7
