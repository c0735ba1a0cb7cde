"""The PostgreSQL store: several node processes on one database (docs/operations.md, "Running on PostgreSQL").

Selected by `database = "postgresql://user@host/dbname"` (store/__init__.py:store_for). Same
contract as store/sqlite.py, with what several processes on one database need:

- No file lock: the per-channel single-writer rule holds across processes through the channel
  row's compare-and-set on `version` (an UPDATE ... WHERE version = $expected that finds no row is
  a StaleWrite). PostgreSQL's row lock makes a second writer of the same channel wait for the
  first's COMMIT and then see the version moved.
- `once` unlocks, payment identifiers, exact nonces and the one open outbox row per channel and
  kind are unique constraints in the database, never in-process memory.
- Numbered migrations (store/migrations/postgres/NNNN_*.sql, the same numbers as SQLite's) are
  applied in order under an advisory lock and recorded in `schema_migrations`, so two processes
  starting at once never both migrate.
- The pin (chain id, contract, receiver) is checked at every open (StoreMismatch).
- uint256 amounts are NUMERIC(78,0) through a `uint256` domain (0 <= x < 2^256), read as Decimal
  and converted to int exactly; they never pass through a float.

Group commit, as SQLite's writer: every write goes to one writer task with its own connection;
the writes waiting in its queue are applied in one transaction (ordered by channel, so two
processes' batches lock rows in the same order), committed once, and only then is each caller's
future resolved. A batch of paid requests on known channels (the common case) takes four
statements whatever its size (`PostgresStore._apply_bulk`: lock the rows in order, one UPDATE from
arrays, one INSERT of charges, one of unlocks); any other batch goes write by write. A stale write
fails alone: its compare-and-set is its first statement, so it wrote nothing; a write the database
refuses (a payment identifier recorded before, an amount of 2^256) makes the batch run again with a
savepoint per write, so only that write fails. A deadlock or serialization failure against another
process retries the whole batch (nothing of it was committed). A lost connection or a statement
over `command_timeout` fails the batch in flight (a StoreError for each of its callers).

Why asyncpg (0.32) rather than psycopg 3 + psycopg-pool: it is one self-contained wheel (no system
libpq, no further packages: a node that never uses PostgreSQL installs nothing more than it needs
to import it); it is asyncio-native with a built-in pool, which is what the node's one event loop
wants; and it speaks the binary protocol with pipelined `executemany`, so a batch of writes costs
few round trips. Its price: it ships no type information (the module edge here is typed by hand,
mypy ignores its imports), and its prepared statements do not survive a transaction-pooling
PgBouncer (use session pooling: docs/operations.md). A store is bound to the event loop that opened
it (asyncpg connections are).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from importlib import resources
from typing import Any, Unpack
from urllib.parse import urlsplit

import asyncpg

from channel_node.core import ChannelState
from channel_node.signing import ChannelConfig
from channel_node.store.base import (
    OUTBOX_OPEN,
    BlockRef,
    ChannelWrite,
    Charge,
    Cursor,
    ExactRecord,
    ExactStatus,
    ExactWrite,
    OutboxItem,
    OutboxKind,
    OutboxRow,
    OutboxStatus,
    OutboxUpdate,
    PaymentLookup,
    Pin,
    RecordOutcome,
    SpendingQuery,
    StaleWrite,
    StoredChannel,
    StoreError,
    StoreMismatch,
    check_outbox_update,
    exact_outbox_item,
    fulfilled,
    record_outcome,
)

MAX_BATCH = 512  # writes per transaction, as SQLite's writer
URL_SCHEMES = ("postgresql://", "postgres://")
# pg_advisory_lock key of the migrations: "cn-migr" in ASCII. Advisory locks are per database.
MIGRATION_LOCK = 0x636E2D6D696772
RETRIES = 5  # a batch that lost a deadlock or serialization race against another process is retried
_OPEN = [status.value for status in OUTBOX_OPEN]  # the open statuses from the one definition (store/base.py)

Connection = Any  # asyncpg.Connection: asyncpg ships no type information
Work = ChannelWrite | Callable[[Connection], Awaitable[object]]


def is_postgres_url(database: object) -> bool:
    """Whether a `database` setting names a PostgreSQL server rather than an SQLite file."""
    return isinstance(database, str) and database.startswith(URL_SCHEMES)


def public_dsn(dsn: str) -> str:
    """The DSN as `postgresql://host:port/dbname`, without its user, password or query: safe to
    show in a log line, an error or `status` (config.public_endpoint's rule for RPC URLs). A host
    or database name that does not look plain (a password with an unescaped '/' or '@' would leak
    into it) is not shown."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "the given PostgreSQL URL"
    if parts.scheme not in ("postgresql", "postgres") or (host and not _PLAIN_HOST.fullmatch(host)):
        return "the given PostgreSQL URL"
    if ":" in host:
        host = f"[{host}]"  # IPv6
    name = parts.path.lstrip("/")
    shown = f"/{name}" if _PLAIN_NAME.fullmatch(name) else "/..." if name else ""
    return f"{parts.scheme}://{host}{port}{shown}"


_PLAIN_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}|[0-9A-Fa-f:.]+")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")


def migrations() -> list[tuple[int, str, str]]:
    """Numbered SQL files under store/migrations/postgres, in order: (number, name, sql)."""
    folder = resources.files("channel_node.store").joinpath("migrations", "postgres")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(found)


async def stored_pin(dsn: str, timeout: float = 5.0) -> dict[str, str] | None:
    """The pin a database holds (`meta`: chain_id, contract, receiver), read only (no migration:
    a running node may be using it); None when nothing is pinned yet. Raises StoreError when the
    server cannot be reached or read."""
    try:
        connection = await asyncpg.connect(dsn, timeout=timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise StoreError(f"cannot reach the PostgreSQL database {public_dsn(dsn)}: {_reason(exc)}") from None
    try:
        if await connection.fetchval("SELECT to_regclass('meta')") is None:
            return None
        stored = dict(await connection.fetch("SELECT key, value FROM meta WHERE key IN ('chain_id', 'contract', 'receiver')"))
        return {str(k): str(v) for k, v in stored.items()} or None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"cannot read the PostgreSQL database {public_dsn(dsn)}: {_reason(exc)}") from None
    finally:
        await connection.close()


def _num(value: int) -> Decimal:
    """An int for a NUMERIC(78,0) column: Decimal(int) is exact whatever the context's precision."""
    return Decimal(value)


def _int(value: Decimal) -> int:
    """A NUMERIC(78,0) value back to int, exactly (the column has no fraction)."""
    number = int(value)
    if number != value:  # pragma: no cover (the column's scale is 0)
        raise StoreError(f"a stored amount has a fraction: {value}")
    return number


def _opt_int(value: Decimal | None) -> int | None:
    return None if value is None else _int(value)


_CHANNEL_COLUMNS = (
    "channel_id, payer, signer, receiver, token, close_delay, salt, deposited, claimed, ceiling, "
    "signature, charged, close_deadline, settled, receiver_closing, version, updated_at, chain_block, chain_hash, "
    "receiver_authorizer"
)


def _row_to_channel(row: Any) -> StoredChannel:
    (channel_id, payer, signer, receiver, token, close_delay, salt, deposited, claimed, ceiling,
     signature, charged, close_deadline, settled, receiver_closing, version, updated_at, chain_block,
     chain_hash, receiver_authorizer) = row  # fmt: skip
    config = ChannelConfig(payer, signer, receiver, token, close_delay, _int(salt), receiver_authorizer)
    state = ChannelState(
        channel_id=channel_id,
        config=config,
        deposited=_int(deposited),
        claimed=_int(claimed),
        ceiling=_int(ceiling),
        signature=signature,
        charged=_int(charged),
        close_deadline=close_deadline,
        settled=settled,
        receiver_closing=receiver_closing,
    )
    anchor = BlockRef(chain_block, bytes(chain_hash)) if chain_block is not None else None
    return StoredChannel(state, version, updated_at, anchor)


_OUTBOX_COLUMNS = (
    "id, channel_id, kind, amount, signature, deadline, status, tx_hash, raw_tx, nonce, max_fee, priority_fee, "
    "sent_at, attempts, note, voucher_amount, gas_used, gas_price"
)
_OUTBOX_NUMERIC = frozenset({"max_fee", "priority_fee", "gas_price"})  # uint256 columns among them


def _row_to_outbox(row: Any) -> OutboxRow:
    (row_id, channel_id, kind, amount, signature, deadline, status, tx_hash, raw_tx, nonce, max_fee,
     priority_fee, sent_at, attempts, note, voucher_amount, gas_used, gas_price) = row  # fmt: skip
    return OutboxRow(
        row_id, channel_id, OutboxKind(kind), _int(amount), signature, deadline, OutboxStatus(status), tx_hash, raw_tx,
        nonce, _opt_int(max_fee), _opt_int(priority_fee), sent_at, attempts, note, _opt_int(voucher_amount), gas_used,
        _opt_int(gas_price),
    )  # fmt: skip


_EXACT_COLUMNS = (
    "auth_key, token, payer, nonce, receiver, value, valid_after, valid_before, signature, resource, price, status, "
    "tx_hash, block_number, gas_used, error, served, created_at"
)


def _row_to_exact(row: Any) -> ExactRecord:
    (key, token, payer, nonce, receiver, value, valid_after, valid_before, signature, resource, price, status,
     tx_hash, block_number, gas_used, error, served, created_at) = row  # fmt: skip
    return ExactRecord(
        key, token, payer, nonce, receiver, _int(value), _int(valid_after), _int(valid_before), signature, resource,
        _int(price), ExactStatus(status), tx_hash, block_number, gas_used, error, served, created_at,
    )  # fmt: skip


_LOOKUP = (
    "SELECT $3::boolean AND EXISTS (SELECT 1 FROM unlocks WHERE channel_id = $1 AND resource = $2), "
    "(SELECT resource FROM charges WHERE channel_id = $1 AND payment_id = $4)"
)
# The cap: the group's charges above 0 in [since, until) (until NULL: no end; zeros add nothing and
# the partial index charges_cap_group holds only the others), their exact NUMERIC sum and the
# earliest; the passes: the latest pass_until beyond now of each named pass bought at or before now.
_LOOKUP_SPENDING = (
    _LOOKUP + ", cap.paid, cap.oldest, held.names, held.untils FROM "
    "(SELECT COALESCE(SUM(amount), 0) AS paid, MIN(at) AS oldest FROM charges "
    " WHERE $5::text IS NOT NULL AND channel_id = $1 AND cap_group = $5 AND at >= $6 "
    " AND ($7::bigint IS NULL OR at < $7) AND amount <> 0) AS cap, "
    "(SELECT array_agg(pass_name) AS names, array_agg(until) AS untils FROM "
    " (SELECT pass_name, MAX(pass_until) AS until FROM charges WHERE channel_id = $1 AND pass_name = ANY($8::text[]) "
    "  AND pass_until > $9 GROUP BY pass_name) AS p) AS held"
)
_UPDATE_CHANNEL = (
    "UPDATE channels SET deposited = $1, claimed = $2, ceiling = $3, signature = $4, charged = $5, close_deadline = $6, "
    "settled = $7, receiver_closing = $8, version = $9, updated_at = $10 WHERE channel_id = $11 AND version = $12"
)
_INSERT_CHANNEL = (
    "INSERT INTO channels (channel_id, payer, signer, receiver, token, close_delay, salt, deposited, claimed, ceiling, "
    "signature, charged, close_deadline, settled, receiver_closing, version, updated_at, receiver_authorizer, "
    "chain_block, chain_hash) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) "
    "ON CONFLICT (channel_id) DO NOTHING"
)
_INSERT_CHARGE = (
    "INSERT INTO charges (channel_id, seq, resource, amount, payment_id, at, cap_group, pass_name, pass_until) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
_INSERT_UNLOCK = "INSERT INTO unlocks (channel_id, resource) VALUES ($1, $2) ON CONFLICT DO NOTHING"


# The bulk path's statements (PostgresStore._apply_bulk): one array per column, unnest()ed.
_BULK_UPDATE = (
    "UPDATE channels c SET deposited = v.deposited, claimed = v.claimed, ceiling = v.ceiling, signature = v.signature, "
    "charged = v.charged, close_deadline = v.close_deadline, settled = v.settled, receiver_closing = v.receiver_closing, "
    "version = v.expected + 1, updated_at = $11 "
    "FROM unnest($1::bytea[], $2::numeric[], $3::numeric[], $4::numeric[], $5::bytea[], $6::numeric[], $7::bigint[], "
    "$8::boolean[], $9::boolean[], $10::bigint[]) AS v(channel_id, deposited, claimed, ceiling, signature, charged, "
    "close_deadline, settled, receiver_closing, expected) "
    "WHERE c.channel_id = v.channel_id AND c.version = v.expected RETURNING c.channel_id"
)
_BULK_CHARGES = (
    "INSERT INTO charges (channel_id, seq, resource, amount, payment_id, at, cap_group, pass_name, pass_until) "
    "SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::text[], $4::numeric[], $5::text[], $6::bigint[], $7::text[], "
    "$8::text[], $9::bigint[])"
)
_BULK_UNLOCKS = "INSERT INTO unlocks (channel_id, resource) SELECT * FROM unnest($1::bytea[], $2::text[]) ON CONFLICT DO NOTHING"


def _update_values(write: ChannelWrite, now: int) -> tuple[object, ...]:
    s = write.state
    return (
        _num(s.deposited), _num(s.claimed), _num(s.ceiling), s.signature, _num(s.charged), s.close_deadline,
        s.settled, s.receiver_closing, write.expected_version + 1, now, s.channel_id, write.expected_version,
    )  # fmt: skip


def _affected(status: str) -> int:
    """The row count of an asyncpg command tag: 'UPDATE 1', 'INSERT 0 1'."""
    return int(status.rsplit(" ", 1)[-1])


class _Request:
    __slots__ = ("work", "future")

    def __init__(self, work: Work, future: asyncio.Future[object]) -> None:
        self.work, self.future = work, future


# What the database (or asyncpg, before sending) refuses in one write: a unique constraint (a payment
# identifier recorded before), a CHECK (an amount of 2^256 or more), a figure out of range.
_REFUSED = (asyncpg.UniqueViolationError, asyncpg.CheckViolationError, asyncpg.NumericValueOutOfRangeError,
            asyncpg.DataError)  # fmt: skip


class _Refused(StoreError):
    """A write the database refused mid-batch (a unique constraint): redo with savepoints."""



def _outbox_values(fields: OutboxUpdate) -> list[object]:
    """The column values of an outbox update (`update_outbox`, `mark_outbox`): uint256 ones as
    NUMERIC, the status as its text."""
    check_outbox_update(fields)
    values: list[object] = []
    for name, value in fields.items():
        if name in _OUTBOX_NUMERIC and value is not None:
            assert isinstance(value, int)
            value = _num(value)
        elif name == "status" and value is not None:
            value = OutboxStatus(str(value)).value
        values.append(value)
    return values

class PostgresStore:
    def __init__(
        self, dsn: str, pool_size: int = 4, connect_timeout: float = 10.0, command_timeout: float = 30.0
    ) -> None:
        if not is_postgres_url(dsn):
            raise ValueError("a PostgreSQL URL starts with postgresql:// or postgres://")
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        # A statement that takes longer (a server that stopped answering, a lock another process
        # holds too long) fails as a StoreError rather than holding its requests forever.
        self.command_timeout = command_timeout
        self._pool: Any = None  # asyncpg.Pool for reads
        self._writer: Any = None  # the writer task's own connection
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed (for tests and benchmarks of group commit)
        self.writes = 0
        self.bulk = True  # the bulk path for batches of paid requests (tests turn it off to compare)
        self.bulk_batches = 0  # transactions that took it

    @property
    def where(self) -> str:
        return public_dsn(self.dsn)

    # ------------------------------------------------------------------ lifecycle

    async def open(self, pin: Pin) -> None:
        try:
            # Migrating has no statement timeout (a large migration, or waiting for another
            # process's), so on a connection of its own; the writer's and the pool's have one.
            migrator = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
            try:
                await self._migrate(migrator)
                await self._check_pin(migrator, pin)
            finally:
                await migrator.close()
            self._writer = await self._connect()
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size, timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
            )  # fmt: skip
        except (StoreError, asyncio.CancelledError):
            await self._close_connections()
            raise
        except Exception as exc:  # unreachable, refused, or a URL asyncpg cannot use (its text is not shown)
            await self._close_connections()
            raise StoreError(f"cannot open the PostgreSQL database {self.where}: {_reason(exc)}") from None
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._write_loop(), name="store-writer")

    async def _connect(self) -> Connection:
        return await asyncpg.connect(self.dsn, timeout=self.connect_timeout, command_timeout=self.command_timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None
        await self._close_connections()

    async def _close_connections(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    @staticmethod
    async def _migrate(connection: Connection) -> None:
        """Applies the missing migrations in order, each in its own transaction with its record,
        while holding the database's migration advisory lock (a second process waits, then finds
        nothing left to do)."""
        known = migrations()
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            applied = {row[0] for row in await connection.fetch("SELECT version FROM schema_migrations")}
            newest = known[-1][0] if known else 0
            if applied and max(applied) > newest:
                raise StoreError(f"database schema {max(applied)} is newer than this channel-node knows")
            for number, name, sql in known:
                if number in applied:
                    continue
                async with connection.transaction():
                    await connection.execute(sql)
                    await connection.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", number, name)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)

    @staticmethod
    async def _check_pin(connection: Connection, pin: Pin) -> None:
        wanted = {"chain_id": str(pin.chain_id), "contract": pin.contract.hex(), "receiver": pin.receiver.hex()}
        # The first process to open pins the database; one that raced it reads that pin back.
        async with connection.transaction():
            stored = dict(await connection.fetch("SELECT key, value FROM meta WHERE key = ANY($1::text[])", list(wanted)))
            if not stored:
                await connection.executemany(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", list(wanted.items())
                )
                stored = dict(await connection.fetch("SELECT key, value FROM meta WHERE key = ANY($1::text[])", list(wanted)))
        for key, value in wanted.items():
            if stored.get(key) != value:
                raise StoreMismatch(
                    f"this database belongs to {key} {stored.get(key)}, but the node is configured for {value}; "
                    "use another database"
                )

    # ------------------------------------------------------------------ reads (the pool)

    @property
    def _read(self) -> Any:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    async def _fetch(self, query: str, *args: object) -> list[Any]:
        try:
            return list(await self._read.fetch(query, *args))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"could not read from {self.where}: {_reason(exc)}") from None

    async def _fetchrow(self, query: str, *args: object) -> Any:
        rows = await self._fetch(query, *args)
        return rows[0] if rows else None

    async def load_channel(self, channel_id: bytes) -> StoredChannel | None:
        row = await self._fetchrow(f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE channel_id = $1", channel_id)
        return _row_to_channel(row) if row else None

    async def lookup_payment(
        self, channel_id: bytes, resource: str, payment_id: str | None, once: bool = True,
        spending: SpendingQuery | None = None,
    ) -> PaymentLookup:
        if spending is None:
            row = await self._fetchrow(_LOOKUP, channel_id, resource, once, payment_id)
            return PaymentLookup(unlocked=bool(row[0]), prior_resource=row[1] if payment_id else None)
        # `store/base.py:spending_lookup` in SQL, in the same statement (one snapshot) as the unlock.
        row = await self._fetchrow(
            _LOOKUP_SPENDING, channel_id, resource, once, payment_id, spending.cap_group, spending.since,
            spending.until, list(spending.passes), spending.now,
        )  # fmt: skip
        unlocked, prior, paid, oldest, names, untils = row
        held = dict(zip(names or [], untils or [], strict=True))
        return PaymentLookup(
            bool(unlocked), prior if payment_id else None, _int(paid), oldest, held
        )

    async def list_channels(self) -> list[StoredChannel]:
        rows = await self._fetch(f"SELECT {_CHANNEL_COLUMNS} FROM channels ORDER BY updated_at, channel_id")
        return [_row_to_channel(row) for row in rows]

    async def charges(self, channel_id: bytes) -> list[Charge]:
        rows = await self._fetch(
            "SELECT resource, amount, payment_id, at, EXISTS (SELECT 1 FROM unlocks u WHERE u.channel_id = c.channel_id "
            "AND u.resource = c.resource), cap_group, pass_name, pass_until FROM charges c WHERE channel_id = $1 "
            "ORDER BY seq",
            channel_id,
        )
        return [
            Charge(resource, _int(amount), payment_id, once, at, cap_group, pass_name, pass_until)
            for resource, amount, payment_id, at, once, cap_group, pass_name, pass_until in rows
        ]

    async def channel_ids(self) -> set[bytes]:
        return {row[0] for row in await self._fetch("SELECT channel_id FROM channels")}

    async def closing_channels(self) -> list[StoredChannel]:
        rows = await self._fetch(
            f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE close_deadline IS NOT NULL AND NOT settled"
        )
        return [_row_to_channel(row) for row in rows]

    async def anchored_channels(self) -> list[tuple[bytes, BlockRef]]:
        rows = await self._fetch("SELECT channel_id, chain_block, chain_hash FROM channels WHERE chain_block IS NOT NULL")
        return [(channel_id, BlockRef(block, block_hash)) for channel_id, block, block_hash in rows]

    async def cursor(self) -> Cursor | None:
        rows = await self._fetch("SELECT key, value FROM meta WHERE key IN ('cursor_block', 'cursor_hash')")
        stored = dict(rows)
        if "cursor_block" not in stored:
            return None
        return Cursor(int(stored["cursor_block"]), bytes.fromhex(stored["cursor_hash"]))

    async def outbox(self, statuses: tuple[OutboxStatus, ...] = OUTBOX_OPEN) -> list[OutboxRow]:
        rows = await self._fetch(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE status = ANY($1::text[]) ORDER BY id",
            [OutboxStatus(s).value for s in statuses],
        )
        return [_row_to_outbox(row) for row in rows]

    async def exact_payment(self, key: bytes) -> ExactRecord | None:
        row = await self._fetchrow(f"SELECT {_EXACT_COLUMNS} FROM exact_payments WHERE auth_key = $1", key)
        return _row_to_exact(row) if row else None

    async def exact_held(self) -> int:
        row = await self._fetchrow("SELECT COUNT(*) FROM exact_payments WHERE status = $1", ExactStatus.HELD.value)
        return int(row[0])

    # ------------------------------------------------------------------ writes (the writer task)

    async def commit(self, write: ChannelWrite) -> int:
        version = await self._submit(write)
        assert isinstance(version, int)  # what `_apply` returns for a ChannelWrite
        return version

    async def clear_anchor(self, channel_id: bytes, anchor: BlockRef) -> bool:
        async def apply(connection: Connection) -> bool:
            status = await connection.execute(
                "UPDATE channels SET chain_block = NULL, chain_hash = NULL "
                "WHERE channel_id = $1 AND chain_block = $2 AND chain_hash = $3",
                channel_id, anchor.block, anchor.block_hash,
            )  # fmt: skip
            return _affected(status) == 1

        return bool(await self._submit(apply))

    async def set_cursor(self, cursor: Cursor) -> None:
        async def apply(connection: Connection) -> None:
            await connection.executemany(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [("cursor_block", str(cursor.block)), ("cursor_hash", cursor.block_hash.hex())],
            )

        await self._submit(apply)

    async def update_outbox(self, row_id: int, **fields: Unpack[OutboxUpdate]) -> None:
        names, values = list(fields), _outbox_values(fields)

        async def apply(connection: Connection) -> None:
            assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=1))
            n = len(names)
            await connection.execute(
                f"UPDATE outbox SET {assignments}, updated_at = ${n + 1} WHERE id = ${n + 2}",
                *values, int(time.time()), row_id,
            )  # fmt: skip

        await self._submit(apply)

    async def mark_outbox(self, rows: Sequence[OutboxRow], **fields: Unpack[OutboxUpdate]) -> bool:
        fields.pop("attempts", None)  # each row's own count, plus one (store/base.py:Store.mark_outbox)
        names, values = list(fields), _outbox_values(fields)
        expected = {row.id: (OutboxStatus(row.status).value, row.attempts) for row in rows}
        ids = sorted(expected)

        async def apply(connection: Connection) -> bool:
            # FOR UPDATE: a second process's check waits for this transaction, then reads what it wrote.
            found = await connection.fetch("SELECT id, status, attempts FROM outbox WHERE id = ANY($1::bigint[]) "
                                           "ORDER BY id FOR UPDATE", ids)  # fmt: skip
            if {r["id"]: (r["status"], r["attempts"]) for r in found} != expected:
                return False
            assignments = "".join(f"{name} = ${i}, " for i, name in enumerate(names, start=1))
            n = len(names)
            await connection.execute(
                f"UPDATE outbox SET {assignments}attempts = attempts + 1, updated_at = ${n + 1} WHERE id = ANY(${n + 2}::bigint[])",
                *values, int(time.time()), ids,
            )  # fmt: skip
            return True

        return bool(await self._submit(apply))

    async def complete_outbox(self, channel_id: bytes, claimed: int, settled: bool) -> int:
        async def apply(connection: Connection) -> int:
            rows = await connection.fetch(
                "SELECT id, kind, amount FROM outbox WHERE channel_id = $1 AND status = ANY($2::text[]) FOR UPDATE",
                channel_id, _OPEN,
            )  # fmt: skip
            done = [row_id for row_id, kind, amount in rows if fulfilled(OutboxKind(kind), _int(amount), claimed, settled)]
            if done:
                await connection.execute(
                    "UPDATE outbox SET status = $1, updated_at = $2 WHERE id = ANY($3::bigint[])",
                    OutboxStatus.DONE.value, int(time.time()), done,
                )  # fmt: skip
            return len(done)

        done = await self._submit(apply)
        assert isinstance(done, int)
        return done

    async def record_exact(self, write: ExactWrite) -> tuple[ExactRecord, RecordOutcome]:
        key = write.key

        async def apply(connection: Connection) -> tuple[ExactRecord, RecordOutcome]:
            now = int(time.time())
            # ON CONFLICT: a second process recording the same nonce waits for the first's commit,
            # then inserts nothing and reads the row it holds.
            status = await connection.execute(
                "INSERT INTO exact_payments (auth_key, token, payer, nonce, receiver, value, valid_after, valid_before, "
                "signature, resource, price, status, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING",
                key, write.token, write.payer, write.nonce, write.receiver, _num(write.value), _num(write.valid_after),
                _num(write.valid_before), write.signature, write.resource, _num(write.price), ExactStatus.HELD.value,
                write.at, now,
            )  # fmt: skip
            row = await connection.fetchrow(
                f"SELECT {_EXACT_COLUMNS} FROM exact_payments WHERE token = $1 AND payer = $2 AND nonce = $3",
                write.token, write.payer, write.nonce,
            )  # fmt: skip
            record = _row_to_exact(row)
            if _affected(status) == 0:
                return record, record_outcome(record, write)
            await _enqueue(connection, key, exact_outbox_item(write), now)  # the same transaction
            return record, RecordOutcome.RECORDED

        outcome = await self._submit(apply)
        assert isinstance(outcome, tuple)
        return outcome

    async def finish_exact(
        self, key: bytes, status: ExactStatus, tx_hash: bytes | None = None, block_number: int | None = None,
        gas_used: int | None = None, error: str | None = None,
    ) -> bool:
        if status == ExactStatus.HELD:
            return False
        closed = OutboxStatus.DONE if status == ExactStatus.CONFIRMED else OutboxStatus.ABANDONED

        async def apply(connection: Connection) -> bool:
            now = int(time.time())
            updated = await connection.execute(
                "UPDATE exact_payments SET status = $1, tx_hash = $2, block_number = $3, gas_used = $4, error = $5, "
                "updated_at = $6 WHERE auth_key = $7 AND status = $8",
                status.value, tx_hash, block_number, gas_used, error, now, key, ExactStatus.HELD.value,
            )  # fmt: skip
            if _affected(updated) != 1:
                return False
            await connection.execute(
                "UPDATE outbox SET status = $1, note = $2, updated_at = $3 WHERE channel_id = $4 AND kind = $5 "
                "AND status = ANY($6::text[])",
                closed.value, error or status.value, now, key, OutboxKind.TRANSFER_AUTHORIZATION.value, _OPEN,
            )  # fmt: skip
            return True

        return bool(await self._submit(apply))

    async def serve_exact(self, key: bytes) -> bool:
        async def apply(connection: Connection) -> bool:
            status = await connection.execute(
                "UPDATE exact_payments SET served = TRUE, updated_at = $1 WHERE auth_key = $2 AND status = $3 "
                "AND NOT served",
                int(time.time()), key, ExactStatus.CONFIRMED.value,
            )  # fmt: skip
            return _affected(status) == 1

        return bool(await self._submit(apply))

    # ------------------------------------------------------------------ group commit

    async def _submit(self, work: Work) -> object:
        """Hands `work` to the writer task; returns its outcome (or raises its failure) once the
        transaction holding it has committed."""
        if self._task is None or self._task.done():
            raise StoreError("store is not open")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(work, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            try:
                outcomes = await self._apply_batch(batch)
            except Exception as exc:  # a bug in one write's work: the batch fails, the writer lives on
                failure = StoreError(f"could not commit to {self.where}: {type(exc).__name__}")
                outcomes = [failure] * len(batch)
            for request, outcome in zip(batch, outcomes, strict=True):
                if request.future.done():  # the caller was cancelled; the write stands regardless
                    continue
                if isinstance(outcome, BaseException):
                    request.future.set_exception(outcome)
                else:
                    request.future.set_result(outcome)
            if stop:
                return

    async def _apply_batch(self, batch: list[_Request]) -> list[object]:
        try:
            if self._writer is None or self._writer.is_closed():  # the server restarted: connect again
                self._writer = await self._connect()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            return [StoreError(f"could not commit to {self.where}: {_reason(exc)}")] * len(batch)
        connection = self._writer
        # Channel writes in channel order, then the rest: two processes' batches take row locks in
        # one order, so they wait for each other rather than deadlock.
        order = sorted(
            range(len(batch)),
            key=lambda i: (0, w.state.channel_id) if isinstance(w := batch[i].work, ChannelWrite) else (1, b""),
        )
        ordered = [batch[i] for i in order]
        for attempt in range(RETRIES):
            try:
                outcomes = None
                if self.bulk:
                    try:
                        outcomes = await self._apply_bulk(connection, ordered)
                    except _Refused:
                        outcomes = None
                if outcomes is None:
                    try:
                        outcomes = await self._apply_all(connection, ordered, savepoints=False)
                    except _Refused:
                        outcomes = await self._apply_all(connection, ordered, savepoints=True)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                await asyncio.sleep(0.005 * (attempt + 1))  # lost a race with another process: nothing committed
                continue
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                failure = StoreError(f"could not commit to {self.where}: {_reason(exc)}")
                return [failure] * len(batch)
            self.batches += 1
            self.writes += len(batch)
            result: list[object] = [None] * len(batch)
            for i, outcome in zip(order, outcomes, strict=True):
                result[i] = outcome
            return result
        failure = StoreError(f"could not commit to {self.where}: kept losing lock races with other processes")
        return [failure] * len(batch)

    async def _apply_bulk(self, connection: Connection, batch: list[_Request]) -> list[object] | None:
        """The common case in four statements for the whole batch, whatever its size: every write
        updates a known channel (once in the batch), with no outbox row or anchor. The channels'
        rows are locked in channel order first; a write whose compare-and-set fails is a
        StaleWrite and wrote nothing. None (nothing done) when the batch needs the per-write path;
        `_Refused` (rolled back) when the database refuses a charge."""
        writes = [request.work for request in batch if isinstance(request.work, ChannelWrite)]
        if (len(writes) != len(batch) or len(writes) < 2
                or any(w.expected_version == 0 or w.outbox or w.anchor is not None for w in writes)
                or len({w.state.channel_id for w in writes}) != len(writes)):  # fmt: skip
            return None
        now = int(time.time())
        ids = [w.state.channel_id for w in writes]
        try:
            async with connection.transaction():
                await connection.execute(
                    "SELECT 1 FROM channels WHERE channel_id = ANY($1::bytea[]) ORDER BY channel_id FOR UPDATE", ids
                )
                states = [w.state for w in writes]
                rows = await connection.fetch(
                    _BULK_UPDATE, ids, [_num(s.deposited) for s in states], [_num(s.claimed) for s in states],
                    [_num(s.ceiling) for s in states], [s.signature for s in states], [_num(s.charged) for s in states],
                    [s.close_deadline for s in states], [s.settled for s in states], [s.receiver_closing for s in states],
                    [w.expected_version for w in writes], now,
                )  # fmt: skip
                updated = {row[0] for row in rows}
                charged = [w for w in writes if w.charge is not None and w.state.channel_id in updated]
                if charged:
                    charges = [(w, w.charge) for w in charged if w.charge is not None]
                    await connection.execute(
                        _BULK_CHARGES, [w.state.channel_id for w, _ in charges], [w.expected_version + 1 for w, _ in charges],
                        [c.resource for _, c in charges], [_num(c.amount) for _, c in charges],
                        [c.payment_id for _, c in charges], [c.at for _, c in charges],
                        [c.cap_group for _, c in charges], [c.pass_name for _, c in charges],
                        [c.pass_until for _, c in charges],
                    )  # fmt: skip
                    unlocks = [(w.state.channel_id, c.resource) for w, c in charges if c.once]
                    if unlocks:
                        await connection.execute(_BULK_UNLOCKS, [u[0] for u in unlocks], [u[1] for u in unlocks])
        except _REFUSED:
            raise _Refused from None
        self.bulk_batches += 1
        return [
            w.expected_version + 1 if w.state.channel_id in updated
            else StaleWrite(f"channel 0x{w.state.channel_id.hex()} changed since it was read")
            for w in writes
        ]  # fmt: skip

    async def _apply_all(self, connection: Connection, batch: list[_Request], savepoints: bool) -> list[object]:
        """Applies every write in one transaction and commits it. Without savepoints a stale write
        is still safe to skip (its compare-and-set is its first statement, so it wrote nothing); a
        write the database refuses aborts the transaction (`_Refused`: the caller redoes the batch
        with a savepoint per write, so that only this write fails)."""
        outcomes: list[object] = []
        async with connection.transaction():
            for request in batch:
                work = request.work
                try:
                    if savepoints:
                        async with connection.transaction():  # a savepoint
                            outcome = await self._run(connection, work)
                    else:
                        outcome = await self._run(connection, work)
                except StaleWrite as exc:
                    outcome = exc
                except _REFUSED as exc:
                    if not savepoints:
                        raise _Refused from None
                    outcome = StaleWrite(f"write refused by the database: {_reason(exc)}")
                outcomes.append(outcome)
        return outcomes

    async def _run(self, connection: Connection, work: Work) -> object:
        if isinstance(work, ChannelWrite):
            return await _apply(connection, work)
        return await work(connection)


async def _apply(connection: Connection, write: ChannelWrite) -> int:
    s = write.state
    now = int(time.time())
    version = write.expected_version + 1
    anchor = write.anchor
    if write.expected_version == 0:  # a new channel: its anchor goes in with it
        c = s.config
        status = await connection.execute(
            _INSERT_CHANNEL,
            s.channel_id, c.payer, c.signer, c.receiver, c.token, c.close_delay, _num(c.salt), _num(s.deposited),
            _num(s.claimed), _num(s.ceiling), s.signature, _num(s.charged), s.close_deadline, s.settled,
            s.receiver_closing, version, now, c.receiver_authorizer, anchor.block if anchor else None,
            anchor.block_hash if anchor else None,
        )  # fmt: skip
    else:
        status = await connection.execute(_UPDATE_CHANNEL, *_update_values(write, now))
    if _affected(status) != 1:
        raise StaleWrite(f"channel 0x{s.channel_id.hex()} changed since it was read")
    if write.anchor is not None and write.expected_version != 0:
        await connection.execute(
            "UPDATE channels SET chain_block = $1, chain_hash = $2 WHERE channel_id = $3",
            write.anchor.block, write.anchor.block_hash, s.channel_id,
        )  # fmt: skip
    charge = write.charge
    if charge is not None:
        await connection.execute(
            _INSERT_CHARGE, s.channel_id, version, charge.resource, _num(charge.amount), charge.payment_id, charge.at,
            charge.cap_group, charge.pass_name, charge.pass_until,
        )  # fmt: skip
        if charge.once:
            await connection.execute(_INSERT_UNLOCK, s.channel_id, charge.resource)
    for item in write.outbox:
        await _enqueue(connection, s.channel_id, item, now)
    return version


async def _enqueue(connection: Connection, channel_id: bytes, item: OutboxItem, now: int) -> None:
    """One open row per channel and kind (store/sqlite.py:_enqueue's rule): a higher voucher
    replaces the amount of a row not yet sent; a row already sent stands. The caller holds the
    channel's row lock (or the exact sale's new row), so no other process races this row."""
    row = await connection.fetchrow(
        "SELECT id, status, amount FROM outbox WHERE channel_id = $1 AND kind = $2 AND status = ANY($3::text[]) "
        "FOR UPDATE",
        channel_id, OutboxKind(item.kind).value, _OPEN,
    )  # fmt: skip
    if row is None:
        await connection.execute(
            "INSERT INTO outbox (channel_id, kind, amount, signature, deadline, status, created_at, updated_at, "
            "voucher_amount) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            channel_id, OutboxKind(item.kind).value, _num(item.amount), item.signature, item.deadline,
            OutboxStatus.PENDING.value, now, now, _num(item.voucher),
        )  # fmt: skip
    elif row[1] == OutboxStatus.PENDING.value and _int(row[2]) < item.amount:
        await connection.execute(
            "UPDATE outbox SET amount = $1, signature = $2, deadline = $3, voucher_amount = $4, updated_at = $5 "
            "WHERE id = $6",
            _num(item.amount), item.signature, item.deadline, _num(item.voucher), now, row[0],
        )  # fmt: skip


def _reason(exc: BaseException) -> str:
    """An error's class, and the server's first line for a server error; never the DSN or its
    password (a client-side error's text, which may quote the DSN, is left out)."""
    if isinstance(exc, asyncpg.PostgresError) and str(exc):
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__
