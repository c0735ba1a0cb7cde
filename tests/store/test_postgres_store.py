"""What the PostgreSQL store adds to the store contract (tests/store/test_store.py runs that on it):
several node processes on one database. Two PostgresStore instances have their own connections, so
to the server they are two processes: the per-channel compare-and-set, payment identifiers, unlocks
and exact nonces hold across them; concurrent first opens migrate once; uint256 amounts are
NUMERIC(78,0) kept exact and bounded; the pin is checked; a DSN's password never shows."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.store import (
    ChannelWrite,
    Charge,
    ExactWrite,
    OutboxItem,
    PostgresStore,
    RecordOutcome,
    StaleWrite,
    StoreError,
    StoreMismatch,
    public_dsn,
)
from channel_node.store.postgres import migrations
from test_store import PIN, UINT256_MAX, channel

uint256 = st.integers(0, UINT256_MAX)


@pytest.fixture
async def two(postgres_dsn):
    """Two stores on one database, as two node processes would have."""
    first, second = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    await first.open(PIN)
    await second.open(PIN)
    yield first, second
    await first.close()
    await second.close()


@pytest.fixture
async def store(postgres_dsn):
    store = PostgresStore(postgres_dsn)
    await store.open(PIN)
    yield store
    await store.close()


_ids = iter(range(1000, 10**9))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(deposited=uint256, charged=uint256, salt=uint256, fee=uint256)
async def test_uint256_amounts_round_trip_exactly_in_every_column(store, deposited, charged, salt, fee):
    n = next(_ids)
    state = replace(channel(n), deposited=deposited, ceiling=charged, charged=charged, signature=b"s" * 65)
    state = replace(state, config=replace(state.config, salt=salt))
    await store.commit(ChannelWrite(state, 0, Charge(f"/{n}", charged, f"p{n}", True, 1),
                                    (OutboxItem("claim", charged, b"s" * 65, None, deposited),)))  # fmt: skip
    loaded = await store.load_channel(state.channel_id)
    assert loaded.state == state
    [charge] = await store.charges(state.channel_id)
    assert charge.amount == charged and type(charge.amount) is int
    [row] = [r for r in await store.outbox() if r.channel_id == state.channel_id]
    assert (row.amount, row.voucher) == (charged, deposited)
    await store.update_outbox(row.id, max_fee=fee, priority_fee=UINT256_MAX - fee)
    [row] = [r for r in await store.outbox() if r.channel_id == state.channel_id]
    assert (row.max_fee, row.priority_fee) == (fee, UINT256_MAX - fee)


async def test_an_amount_of_2_256_is_refused_and_fails_only_its_write(store):
    good, bad = channel(1), channel(2, deposited=UINT256_MAX + 1)
    results = await asyncio.gather(
        store.commit(ChannelWrite(good, 0)), store.commit(ChannelWrite(bad, 0)), return_exceptions=True
    )
    assert results[0] == 1 and isinstance(results[1], StaleWrite)
    assert await store.load_channel(bad.channel_id) is None
    assert (await store.load_channel(good.channel_id)).version == 1
    connection = await asyncpg.connect(store.dsn)
    try:
        [(kind,)] = await connection.fetch(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = 'channels' AND column_name = 'deposited'"
        )
        assert kind == "numeric", "amounts are NUMERIC, never floats"
    finally:
        await connection.close()


async def test_two_processes_on_one_channel_exactly_one_wins_each_version(two):
    first, second = two
    state = channel(7, deposited=10**6)
    await first.commit(ChannelWrite(state, 0))
    for version in range(1, 21):
        a = replace(state, ceiling=version * 10, charged=version * 10)
        b = replace(state, ceiling=version * 10 + 1, charged=version * 10 + 1)
        results = await asyncio.gather(
            first.commit(ChannelWrite(a, version, Charge("/a", 10, f"a{version}", False, version))),
            second.commit(ChannelWrite(b, version, Charge("/b", 11, f"b{version}", False, version))),
            return_exceptions=True,
        )
        won = [r for r in results if r == version + 1]
        lost = [r for r in results if isinstance(r, StaleWrite)]
        assert len(won) == 1 and len(lost) == 1, results
        stored = await second.load_channel(state.channel_id)
        assert stored.version == version + 1 and stored.state.charged in (a.charged, b.charged)
    assert len(await first.charges(state.channel_id)) == 20, "one charge per version, the winner's"


async def test_two_processes_creating_the_same_channels_in_opposite_orders_neither_deadlocks(two):
    first, second = two
    states = [channel(n) for n in range(100, 160)]
    results = await asyncio.gather(
        *(first.commit(ChannelWrite(s, 0)) for s in states),
        *(second.commit(ChannelWrite(replace(s, deposited=7), 0)) for s in reversed(states)),
        return_exceptions=True,
    )
    mine, theirs = results[: len(states)], list(reversed(results[len(states):]))
    for a, b in zip(mine, theirs, strict=True):
        assert sorted([a == 1, b == 1]) == [False, True], (a, b)
        assert isinstance(a if b == 1 else b, StaleWrite)
    assert len(await first.channel_ids()) == len(states)


async def test_a_payment_id_and_an_unlock_are_recorded_once_across_processes(two):
    first, second = two
    state = channel(3, deposited=1000)
    await first.commit(ChannelWrite(state, 0))
    paid = replace(state, ceiling=10, charged=10)
    results = await asyncio.gather(
        first.commit(ChannelWrite(paid, 1, Charge("/article", 10, "pay-1", True, 1))),
        second.commit(ChannelWrite(paid, 1, Charge("/article", 10, "pay-1", True, 1))),
        return_exceptions=True,
    )
    assert sorted(map(type, results), key=str) == sorted([int, StaleWrite], key=str)
    lookup = await second.lookup_payment(state.channel_id, "/article", "pay-1")
    assert lookup.unlocked and lookup.prior_resource == "/article", "the other process sees it at once"
    with pytest.raises(StaleWrite):  # the loser, reloaded, cannot record the same payment id again
        await second.commit(ChannelWrite(replace(paid, charged=20), 2, Charge("/other", 10, "pay-1", True, 2)))
    await second.commit(ChannelWrite(replace(paid, charged=10), 2, Charge("/article", 0, "pay-2", True, 2)))
    assert [c.payment_id for c in await first.charges(state.channel_id)] == ["pay-1", "pay-2"]
    connection = await asyncpg.connect(first.dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM unlocks") == 1
    finally:
        await connection.close()


async def test_the_same_exact_authorization_from_two_processes_is_recorded_once(two):
    first, second = two
    w = ExactWrite(b"\x0a" * 20, b"\x01" * 20, b"\x03" * 32, PIN.receiver, 5, 0, 2_000_000_000, b"s" * 65, "/a", 5, 1)
    results = await asyncio.gather(first.record_exact(w), second.record_exact(w))
    assert sorted(outcome for _, outcome in results) == sorted([RecordOutcome.RECORDED, RecordOutcome.JOINED])
    assert len(await first.outbox()) == 1, "one transfer row"
    done = await asyncio.gather(first.serve_exact(w.key), second.serve_exact(w.key))
    assert done == [False, False], "nothing is served before confirmation"


async def test_concurrent_first_opens_migrate_once(postgres_dsn):
    stores = [PostgresStore(postgres_dsn) for _ in range(4)]
    await asyncio.gather(*(s.open(PIN) for s in stores))
    try:
        connection = await asyncpg.connect(postgres_dsn)
        try:
            rows = await connection.fetch("SELECT version FROM schema_migrations ORDER BY version")
            assert [r[0] for r in rows] == [number for number, _, _ in migrations()]
            assert dict(await connection.fetch("SELECT key, value FROM meta"))["chain_id"] == str(PIN.chain_id)
        finally:
            await connection.close()
        await stores[0].commit(ChannelWrite(channel(), 0))
        assert (await stores[3].load_channel(channel().channel_id)).version == 1
    finally:
        for s in stores:
            await s.close()


async def test_a_second_process_with_another_pin_is_refused(two, postgres_dsn):
    for wrong in (replace(PIN, chain_id=1), replace(PIN, contract=b"\x0d" * 20), replace(PIN, receiver=b"\x03" * 20)):
        with pytest.raises(StoreMismatch):
            await PostgresStore(postgres_dsn).open(wrong)


async def test_upgrades_a_database_from_the_first_schema(postgres_dsn):
    connection = await asyncpg.connect(postgres_dsn)
    try:
        [(number, name, sql), *_] = migrations()
        await connection.execute(sql)
        await connection.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        await connection.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", number, name)
        await connection.execute(
            "INSERT INTO channels VALUES ($1, $2, $3, $4, $5, 3600, 1, 100, 0, 10, $6, 10, NULL, FALSE, 1, 0)",
            b"\x01" * 32, b"\x01" * 20, b"\x05" * 20, PIN.receiver, b"\0" * 20, b"s" * 65,
        )  # fmt: skip
    finally:
        await connection.close()
    store = PostgresStore(postgres_dsn)
    await store.open(PIN)
    try:
        loaded = await store.load_channel(b"\x01" * 32)
        assert (loaded.state.charged, loaded.state.receiver_closing, loaded.version) == (10, False, 1)
        assert loaded.state.config.receiver_authorizer == b"\0" * 20
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(postgres_dsn):
    store = PostgresStore(postgres_dsn)
    await store.open(PIN)
    await store.close()
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')")
    finally:
        await connection.close()
    with pytest.raises(StoreError, match="newer"):
        await PostgresStore(postgres_dsn).open(PIN)


async def test_an_unreachable_server_is_a_store_error_without_the_password(postgres):
    from anvil import free_port

    dsn = f"postgresql://node:s3cret-pw@127.0.0.1:{free_port()}/channels"
    with pytest.raises(StoreError) as caught:
        await PostgresStore(dsn, connect_timeout=2).open(PIN)
    assert "s3cret-pw" not in str(caught.value) and "node:" not in str(caught.value)
    assert f"127.0.0.1:{dsn.split(':')[3].split('/')[0]}/channels" in str(caught.value)
    wrong_db = postgres.dsn("no_such_database").replace("postgres@", "postgres:s3cret-pw@")
    for wrong in (wrong_db, "postgresql://node:s3cret-pw@127.0.0.1:99999/x", wrong_db + "?sslmode=s3cret-pw"):
        with pytest.raises(StoreError) as caught:
            await PostgresStore(wrong, connect_timeout=2).open(PIN)
        assert "s3cret-pw" not in str(caught.value)


@given(user=st.text(max_size=8), password=st.text(min_size=1, max_size=12), name=st.sampled_from(["node", "a/b", ""]))
def test_public_dsn_never_shows_the_user_or_password(user, password, name):
    shown = public_dsn(f"postgresql://{user}:{password}@db.example:5433/{name}?sslmode=require&password=x")
    plain = f"postgresql://db.example:5433/{name}"
    assert shown == "the given PostgreSQL URL" or shown.startswith("postgresql://")
    assert password not in shown or password in plain or password in "the given PostgreSQL URL"
    assert "sslmode" not in shown
    assert public_dsn("postgresql://node:pw@db.example:5433/node") == "postgresql://db.example:5433/node"


def test_the_database_setting_picks_the_store_and_hides_a_urls_password(tmp_path):
    from channel_node.config import load_settings
    from channel_node.store import SQLiteStore, describe_database, store_for

    url = "postgresql://node:s3cret@db.example:5433/channels?sslmode=require"
    for setting, kind in ((url, PostgresStore), (url.replace("postgresql", "postgres"), PostgresStore),
                        (str(tmp_path / "node.db"), SQLiteStore)):  # fmt: skip
        settings = load_settings(None, database=setting, paywall={"content_dir": str(tmp_path)})
        store = store_for(settings.database)
        assert type(store) is kind
        assert "s3cret" not in describe_database(settings.database)
        assert "s3cret" not in repr(settings), "a Settings repr (a log line, a traceback) hides it too"
    assert describe_database(url) == "postgresql://db.example:5433/channels"
    assert store_for(tmp_path / "node.db", "normal").synchronous == "normal"
    from channel_node.config import SettingsError

    with pytest.raises(SettingsError) as refused:
        load_settings(None, database="mysql://node:s3cret@db.example/x", paywall={"content_dir": str(tmp_path)})
    assert "s3cret" not in str(refused.value) and "postgresql://" in str(refused.value)


async def test_doctor_reads_a_postgres_pin_without_migrating(postgres_dsn):
    from channel_node.cli.doctor import read_database_pin

    assert (await read_database_pin(postgres_dsn)).chain_id is None, "a new database: nothing pinned, nothing created"
    connection = await asyncpg.connect(postgres_dsn)
    try:
        assert await connection.fetchval("SELECT to_regclass('schema_migrations')") is None
    finally:
        await connection.close()
    store = PostgresStore(postgres_dsn)
    await store.open(PIN)
    pinned = await read_database_pin(postgres_dsn)
    assert (pinned.chain_id, pinned.contract, pinned.receiver) == (str(PIN.chain_id), PIN.contract.hex(), PIN.receiver.hex())
    await store.close()


batches = st.lists(
    st.tuples(st.integers(1, 6), st.integers(0, 3), st.sampled_from([None, "p1", "p2", "p3"]), st.booleans()),
    min_size=1, max_size=24,
)  # fmt: skip


@pytest.fixture
async def bulk_and_not(postgres):
    """Two stores, each on its own new schema: one with the bulk path, one without."""
    stores = [PostgresStore(await postgres.new_schema()), PostgresStore(await postgres.new_schema())]
    stores[1].bulk = False
    for store in stores:
        await store.open(PIN)
    yield stores
    for store in stores:
        await store.close()


_batch_numbers = iter(range(1, 10**6))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=batches)
async def test_the_bulk_path_decides_every_batch_as_the_per_write_path_does(bulk_and_not, batch):
    """(channel, expected version, payment id, once) writes, all at once: stale versions, repeated
    channels and repeated payment ids, over channels at version 1 and 2. The four-statement bulk
    path and the per-write path give each write the same outcome and leave the same rows."""
    base = next(_batch_numbers) * 10  # new channels for every example
    answers = []
    for store in bulk_and_not:
        for n in range(1, 7):
            await store.commit(ChannelWrite(channel(base + n), 0))
        await store.commit(ChannelWrite(replace(channel(base + 1), charged=1, ceiling=1), 1, Charge("/x", 1, "p1", True, 0)))
        results = await asyncio.gather(*(
            store.commit(ChannelWrite(replace(channel(base + n), ceiling=50, charged=5 + v), v,
                                      Charge(f"/r{n}", 5, pid, once, v)))  # fmt: skip
            for n, v, pid, once in batch
        ), return_exceptions=True)
        outcomes = [r if isinstance(r, int) else type(r).__name__ for r in results]
        rows = []
        for n in range(1, 7):
            cid = channel(base + n).channel_id
            rows += [(n, c.resource, c.amount, c.payment_id, c.once) for c in await store.charges(cid)]
            stored = await store.load_channel(cid)
            rows.append((n, stored.version, stored.state.charged))
        answers.append((outcomes, rows))
    assert answers[0] == answers[1]
    # Two writes to one channel in one batch chain (the second expects the first's version), so a
    # channel at version 2 can reach 4.
    assert all(o in (2, 3, 4, "StaleWrite") for o in answers[0][0])


async def test_concurrent_paid_requests_commit_in_few_transactions_of_four_statements(store):
    states = [channel(n) for n in range(1, 101)]
    await asyncio.gather(*(store.commit(ChannelWrite(s, 0)) for s in states))
    before = (store.batches, store.bulk_batches)
    results = await asyncio.gather(*(
        store.commit(ChannelWrite(replace(s, ceiling=9, charged=9), 1, Charge("/a", 9, "p", True, 1))) for s in states
    ))  # fmt: skip
    assert results == [2] * 100
    assert store.batches - before[0] <= 5 and store.bulk_batches > before[1], "batched, through the bulk path"


async def test_a_commit_returns_only_once_another_process_can_read_it(two):
    """Group commit never answers early: when a caller's commit returns, its write is in a
    committed transaction (another connection sees it), whatever batch it went in."""
    first, second = two
    states = [channel(n) for n in range(300, 340)]

    async def write_then_look(s) -> bool:
        await first.commit(ChannelWrite(s, 0))
        await first.commit(ChannelWrite(replace(s, charged=3, ceiling=3), 1, Charge("/a", 3, "p", True, 1)))
        seen = await second.load_channel(s.channel_id)
        lookup = await second.lookup_payment(s.channel_id, "/a", "p")
        return seen is not None and seen.version == 2 and lookup.unlocked and lookup.prior_resource == "/a"

    assert all(await asyncio.gather(*(write_then_look(s) for s in states)))
    assert first.batches < 2 * len(states), "the writes shared transactions"


async def test_a_lost_writer_connection_fails_its_batch_and_the_next_write_reconnects(store):
    await store.commit(ChannelWrite(channel(1), 0))
    killer = await asyncpg.connect(store.dsn)
    try:
        pid = store._writer.get_server_pid()
        await killer.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()
    await asyncio.sleep(0.1)
    try:  # the batch in flight when the connection went fails whole (or the writer saw it go first)
        await store.commit(ChannelWrite(channel(2), 0))
    except StoreError as exc:
        assert "could not commit" in str(exc) and store.dsn not in str(exc)
        assert await store.load_channel(channel(2).channel_id) is None
    assert await store.commit(ChannelWrite(channel(3), 0)) == 1, "the next batch reconnects"
    assert (await store.load_channel(channel(3).channel_id)).version == 1


async def test_a_failing_piece_of_work_fails_its_batch_never_the_writer(store):
    async def broken(connection):
        raise TypeError("a bug")

    with pytest.raises(StoreError):
        await store._submit(broken)
    assert await store.commit(ChannelWrite(channel(1), 0)) == 1


def test_missing_postgresql_skips_locally_and_fails_under_ci():
    from postgres import PostgresMissing, unavailable

    missing = PostgresMissing("PostgreSQL is not installed")
    with pytest.raises(pytest.skip.Exception):
        unavailable(missing, {})
    with pytest.raises(pytest.skip.Exception):
        unavailable(missing, {"CI": "false"})
    with pytest.raises(pytest.fail.Exception, match="CI must run"):
        unavailable(missing, {"CI": "true"})


async def test_a_write_stuck_behind_another_process_lock_fails_in_bounded_time(postgres_dsn):
    """A process that holds a channel's row too long (stuck mid-transaction) makes the other's write
    a StoreError after `command_timeout`, not a request that hangs; the writer then goes on."""
    store = PostgresStore(postgres_dsn, command_timeout=1.0)
    await store.open(PIN)
    try:
        await store.commit(ChannelWrite(channel(1), 0))
        stuck = await asyncpg.connect(postgres_dsn)
        try:
            transaction = stuck.transaction()
            await transaction.start()
            await stuck.execute("SELECT 1 FROM channels FOR UPDATE")
            started = asyncio.get_running_loop().time()
            with pytest.raises(StoreError):
                await store.commit(ChannelWrite(replace(channel(1), charged=1, ceiling=1), 1))
            assert asyncio.get_running_loop().time() - started < 10
            await transaction.rollback()
        finally:
            await stuck.close()
        assert await store.commit(ChannelWrite(replace(channel(1), charged=1, ceiling=1), 1)) == 2
    finally:
        await store.close()


async def test_doctor_says_what_to_fix_for_an_unreachable_postgres_database():
    from anvil import free_port
    from channel_node.cli.doctor import read_database_pin
    from channel_node.node.doctor import Observations, Verdict, diagnose
    from channel_node.store import describe_database

    url = f"postgresql://node:s3cret@127.0.0.1:{free_port()}/channels"
    observed = Observations(rpc_url="http://127.0.0.1:8545", database=describe_database(url), pinned=await read_database_pin(url))
    [check] = [c for c in diagnose(observed) if c.name == "database"]
    assert check.verdict is Verdict.FIX and "the server runs" in check.text and "s3cret" not in check.text


async def test_two_os_processes_charging_the_same_channels_lose_and_double_nothing(postgres_dsn):
    """Two real processes (tests/store/postgres_hammer.py), 8 concurrent writers each, charging 3
    channels one unit at a time with a reload on every stale write: every commit that returned is
    in the database exactly once, each channel's charged total is its number of charges, and its
    version counts them (nothing lost, nothing applied twice, no two writers on one version)."""
    import json
    import sys
    from pathlib import Path

    store = PostgresStore(postgres_dsn)
    await store.open(PIN)
    try:
        for n in (1, 2, 3):
            await store.commit(ChannelWrite(channel(n, deposited=10**6), 0))
        hammer = str(Path(__file__).with_name("postgres_hammer.py"))
        processes = [
            await asyncio.create_subprocess_exec(sys.executable, hammer, postgres_dsn, name, "3", "15",
                                                 stdout=asyncio.subprocess.PIPE)  # fmt: skip
            for name in ("a", "b")
        ]
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in processes)), 60)
        assert [p.returncode for p in processes] == [0, 0]
        reports = [json.loads(out) for out, _ in outputs]
        won = [tuple(w) for report in reports for w in report["won"]]
        assert len(won) == 2 * 8 * 15
        assert sum(report["stale"] for report in reports) > 0, "the processes did contend"
        for n in (1, 2, 3):
            stored = await store.load_channel(channel(n).channel_id)
            charges = await store.charges(channel(n).channel_id)
            mine = sorted(payment for m, payment in won if m == n)
            assert sorted(c.payment_id for c in charges) == mine, "every returned commit, once"
            assert stored.state.charged == len(charges) and stored.version == len(charges) + 1
    finally:
        await store.close()
