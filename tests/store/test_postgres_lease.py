"""The chain side's lease on PostgreSQL (store/postgres_lease.py; docs/scaling.md, "One chain
side"): one leader per database schema; a dead leader's lock is free at once, a stuck one is cut off
by the server after the lease timeout, and it stops calling itself the leader before then."""

from __future__ import annotations

import asyncio
import time

from channel_node.store.postgres_lease import MARGIN, PostgresLease


async def test_one_process_leads_and_the_database_names_it(postgres):
    dsn = await postgres.new_schema()
    a, b = PostgresLease(dsn, "host-a:1"), PostgresLease(dsn, "host-b:2")
    try:
        assert await a.try_lead() and not await b.try_lead()
        assert a.still_leading() and not b.still_leading()
        assert await a.try_lead(), "the heartbeat keeps it"
        leader = await b.leader()
        assert leader is not None and leader.identity == "host-a:1" and leader.since > 0 and leader.heartbeat > 0
        await a.release()
        assert await b.try_lead(), "a released lease is taken at the next try"
        assert (await a.leader()).identity == "host-b:2"
        assert not await a.try_lead()
    finally:
        await a.release()
        await b.release()


async def test_each_schema_has_its_own_leader(postgres):
    a, b = PostgresLease(await postgres.new_schema(), "a:1"), PostgresLease(await postgres.new_schema(), "b:2")
    try:
        assert await a.try_lead() and await b.try_lead()
    finally:
        await a.release()
        await b.release()


async def test_a_dead_leaders_lock_is_free_at_once(postgres):
    dsn = await postgres.new_schema()
    a, b = PostgresLease(dsn, "a:1"), PostgresLease(dsn, "b:2")
    try:
        assert await a.try_lead()
        a._connection.terminate()  # what the kernel does to a killed process's socket
        started = time.monotonic()
        while not await b.try_lead():
            assert time.monotonic() - started < 2.0, "the server frees a closed session's lock"
            await asyncio.sleep(0.05)
        assert not await a.try_lead(), "the old leader comes back as a follower"
        assert not a.still_leading()
    finally:
        await a.release()
        await b.release()


async def test_a_stuck_leader_is_cut_off_and_gives_up_before_another_can_lead(postgres):
    dsn = await postgres.new_schema()
    timeout = 2.0
    a, b = PostgresLease(dsn, "a:1", timeout=timeout), PostgresLease(dsn, "b:2", timeout=timeout)
    try:
        assert await a.try_lead()
        started = time.monotonic()  # a stops renewing (its process stopped, its loop blocked)
        while True:
            a_thinks = a.still_leading()
            if await b.try_lead():
                break
            assert time.monotonic() - started < timeout + 3.0, "the server cut the stuck session off"
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        assert not a_thinks, "the stuck leader stopped acting as one before the other could take over"
        assert took >= timeout - MARGIN
        assert not await a.try_lead(), "when it wakes up, its session is gone and the lease is another's"
    finally:
        await a.release()
        await b.release()


async def test_a_leader_whose_session_the_server_ends_stops_leading_at_once(postgres):
    dsn = await postgres.new_schema()
    a, admin = PostgresLease(dsn, "a:1"), PostgresLease(dsn, "admin:0")
    try:
        assert await a.try_lead()
        pid = a._connection.get_server_pid()
        connection = await admin._connect()
        await connection.execute("SELECT pg_terminate_backend($1)", pid)  # a failover, a network reset
        for _ in range(100):
            if not a.still_leading():
                break
            await asyncio.sleep(0.01)
        assert not a.still_leading(), "no waiting for the next renewal or the lease's expiry"
    finally:
        await a.release()
        await admin.release()


async def test_a_session_left_mid_statement_is_no_leader_and_the_next_attempt_connects_again(postgres, monkeypatch):
    """asyncpg's InternalClientError ("another operation is in progress") on the lease's connection,
    seen when the server cut a stuck leader off mid-statement: not the leader, never an exception
    out of try_lead, and a new session on the next attempt."""
    import asyncpg

    dsn = await postgres.new_schema()
    a = PostgresLease(dsn, "a:1")
    try:
        assert await a.try_lead()
        broken = a._connection
        fetchval = asyncpg.connection.Connection.fetchval

        async def mid_statement(self, *args, **kwargs):
            if self is broken:
                raise asyncpg.InternalClientError("cannot switch to state 11; another operation (2) is in progress")
            return await fetchval(self, *args, **kwargs)

        monkeypatch.setattr(asyncpg.connection.Connection, "fetchval", mid_statement)
        assert not await a.try_lead()
        assert not a.still_leading()
        assert await a.try_lead(), "a new session takes the lease the dropped one held"
        assert a._connection is not broken
    finally:
        await a.release()
