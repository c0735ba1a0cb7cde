"""The chain side's lease on PostgreSQL: a session-level advisory lock (docs/scaling.md, "One chain side").

Each process keeps one connection of its own for the lease (never the store's pool): the process
holding `pg_try_advisory_lock(LEASE_CLASS, hashtext(current_schema()))` leads, one leader per
database schema. What frees the lock without the leader's help:

- the leader dies: its connection closes and the server releases the lock with it;
- the leader is alive but stuck (stopped, its event loop blocked): the session sets
  `idle_session_timeout` to the lease timeout, so the server ends a session that has not run its
  once-a-second heartbeat for that long; TCP keepalives and `tcp_user_timeout` (server side) and a
  timeout on every heartbeat (client side) bound a connection whose peer vanished.

The leader stops acting as one on its own first: `still_leading` turns False once the last
heartbeat that succeeded was *sent* longer ago than the timeout less MARGIN, so it gives up before
the server can hand the lock to another process (the server's idle clock starts after it answered,
which is after the heartbeat was sent). Who leads is read from the server itself (`pg_locks` joined
with `pg_stat_activity`): the holder's `application_name` names it and when it took the lease, its
`state_change` is its last heartbeat, so it is never a row left behind by a dead process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from channel_node.store.lease import LeaderInfo, process_identity

LEASE_CLASS = 0x434E4C44  # "CNLD": the advisory lock's first key; the second is the schema's hash
DEFAULT_TIMEOUT = 5.0  # seconds a leader may go without a heartbeat before the server cuts it off
MARGIN = 1.5  # seconds the leader gives up before that
APPLICATION = "channel-node "  # application_name's prefix: "channel-node <host:pid> @<since>"

_TAKE = "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))"
_LOCK = """l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid = $1::bigint::oid AND l.objid = (hashtext(current_schema())::bigint & 4294967295)::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"""
_MINE = "SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_backend_pid() AND " + _LOCK + ")"
_HOLDER = """
SELECT a.application_name, extract(epoch FROM a.state_change)::float8 AS heartbeat
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE """ + _LOCK


def _application_name(identity: str, since: float | None) -> str:
    name = APPLICATION + identity + ("" if since is None else f" @{int(since)}")
    return name[:63]  # PostgreSQL keeps 63 bytes of it


def parse_holder(application_name: str, heartbeat: float | None) -> LeaderInfo:
    """The leader as its lease connection names itself (`_application_name`)."""
    text = application_name.removeprefix(APPLICATION)
    identity, _, since = text.rpartition(" @")
    if not identity or not since.isdigit():
        identity, since = text, "0"
    return LeaderInfo(identity, float(since), heartbeat or 0.0)


# What a lost or broken lease session raises. asyncpg's InternalClientError ("another operation is
# in progress") comes from a connection left mid-statement when the server cut it off: as lost as
# a reset one, so it is not the leader and the next attempt connects again.
_SESSION_LOST = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


class PostgresLease:
    def __init__(
        self, dsn: str, identity: str | None = None, timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        if timeout <= MARGIN:
            raise ValueError(f"the lease timeout must exceed {MARGIN} s")
        self.dsn = dsn
        self.identity = identity or process_identity()
        self.timeout = timeout
        self.clock = clock
        self._connection: Any = None  # asyncpg.Connection, this lease's own
        self._holding = False
        self._valid_until = 0.0  # on `clock`: when this process stops acting as the leader
        self._since: float | None = None
        self._busy = asyncio.Lock()  # one statement at a time on the connection (health checks run beside renewals)

    def __repr__(self) -> str:  # the DSN may carry a password
        return f"PostgresLease({self.identity}, leading={self.still_leading()})"

    async def _connect(self) -> Any:
        if self._connection is None or self._connection.is_closed():
            self._holding, self._since, self._valid_until = False, None, 0.0  # a new session holds nothing
            ms = str(int(self.timeout * 1000))
            self._connection = await asyncpg.connect(
                self.dsn, timeout=self.timeout, statement_cache_size=0,
                server_settings={
                    "application_name": _application_name(self.identity, None),
                    "idle_session_timeout": ms,  # a stuck leader's session ends (PostgreSQL 14+)
                    "tcp_user_timeout": ms, "tcp_keepalives_idle": "2", "tcp_keepalives_interval": "1",
                    "tcp_keepalives_count": "3",
                },
            )  # fmt: skip
            self._connection.add_termination_listener(self._terminated)
        return self._connection

    def _terminated(self, connection: Any) -> None:
        """The lease's session ended (the server cut it off, the network reset it): the lock went with
        it, so this process stops calling itself the leader now, not at the next renewal, and the next
        attempt opens a new session rather than using the dead one."""
        if connection is self._connection:
            self._holding, self._since, self._valid_until = False, None, 0.0
            self._connection = None

    async def _drop(self) -> None:
        self._holding, self._since, self._valid_until = False, None, 0.0
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()  # no goodbye round trip to a server that may be gone

    async def try_lead(self) -> bool:
        async with self._busy:
            return await self._try_lead()

    async def _try_lead(self) -> bool:
        sent = self.clock()
        try:
            connection = await self._connect()
            if self._holding:  # the heartbeat, which also checks that this very session holds the lock
                self._holding = bool(await connection.fetchval(_MINE, LEASE_CLASS, timeout=self.timeout - MARGIN))
            else:
                taken = bool(await connection.fetchval(_TAKE, LEASE_CLASS, timeout=self.timeout - MARGIN))
                if taken:
                    self._since = time.time()
                    await connection.execute(
                        "SELECT set_config('application_name', $1, false)", _application_name(self.identity, self._since),
                        timeout=self.timeout - MARGIN,
                    )  # fmt: skip
                self._holding = taken
        except asyncio.CancelledError:
            await self._drop()
            raise
        except _SESSION_LOST:
            await self._drop()  # the session (and so the lock) is gone, or soon will be
            return False
        if self._holding:
            self._valid_until = sent + self.timeout - MARGIN
        return self._holding

    def still_leading(self) -> bool:
        return self._holding and self.clock() < self._valid_until

    async def leader(self) -> LeaderInfo | None:
        async with self._busy:
            try:
                connection = await self._connect()
                row = await connection.fetchrow(_HOLDER, LEASE_CLASS, timeout=self.timeout - MARGIN)
            except _SESSION_LOST:
                await self._drop()
                return None
        if row is None:
            return None
        return parse_holder(str(row["application_name"] or ""), row["heartbeat"])

    async def release(self) -> None:
        async with self._busy:
            await self._release()

    async def _release(self) -> None:
        if self._holding and self._connection is not None and not self._connection.is_closed():
            try:
                await self._connection.fetchval(
                    "SELECT pg_advisory_unlock($1, hashtext(current_schema()))", LEASE_CLASS, timeout=self.timeout - MARGIN
                )  # fmt: skip
            except _SESSION_LOST:
                pass  # closing the connection below releases it anyway
        connection, self._connection = self._connection, None
        self._holding, self._since, self._valid_until = False, None, 0.0
        if connection is not None and not connection.is_closed():
            try:
                await asyncio.wait_for(connection.close(), self.timeout)
            except _SESSION_LOST:
                connection.terminate()


__all__ = ["DEFAULT_TIMEOUT", "LEASE_CLASS", "MARGIN", "PostgresLease", "parse_holder"]
