"""The default store: one SQLite file in WAL mode, written by one thread with group commit.

Why a writer thread: a commit with synchronous=FULL waits for the disk, which must not block the
event loop. Why group commit: concurrent requests hand their writes to the thread, which applies
every write waiting in its queue inside one transaction (each under its own savepoint, so one stale
write cannot undo the others), commits once, and only then wakes the requests. Each request still
learns its voucher is durable before it sends content; many requests share one disk sync.

Reads are short primary-key lookups done on the caller's thread through a second connection; WAL
lets them run beside the writer. A file lock keeps a second node process off the same database.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import IO, Any, Unpack

from channel_node.core import ChannelState
from channel_node.lockfile import lock_beside
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
    StoreLocked,
    StoreMismatch,
    check_outbox_update,
    exact_outbox_item,
    fulfilled,
    record_outcome,
)

MAX_BATCH = 512  # writes per transaction; bounds the time a batch holds the write lock
SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}
# The open statuses in SQL, from the one definition (store/base.py); the migration's partial unique
# index `outbox_open` spells the same list, which tests/store/test_store.py checks.
_OPEN_SQL = "(" + ", ".join(f"'{status.value}'" for status in OUTBOX_OPEN) + ")"

# A unit of the writer thread's work: a channel's write, or a function run on the writer connection.
Work = ChannelWrite | Callable[[sqlite3.Connection], object]


def migrations() -> list[tuple[int, str]]:
    """Numbered SQL files under store/migrations, in order: `0001_initial.sql` is version 1."""
    folder = resources.files("channel_node.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


def _statements(sql: str) -> list[str]:
    """Splits a migration into statements; a ';' inside a comment or string does not end one."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer)
            buffer = ""
    if buffer.strip() and not all(l.strip().startswith("--") or not l.strip() for l in buffer.splitlines()):
        raise StoreError(f"migration ends with an incomplete statement: {buffer.strip()[:80]}")
    return statements


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={SYNCHRONOUS[synchronous]}")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def _row_to_channel(row: tuple[Any, ...]) -> StoredChannel:
    (channel_id, payer, signer, receiver, token, close_delay, salt, deposited, claimed, ceiling,
     signature, charged, close_deadline, settled, receiver_closing, version, updated_at, chain_block,
     chain_hash, receiver_authorizer) = row  # fmt: skip
    config = ChannelConfig(payer, signer, receiver, token, close_delay, int(salt), receiver_authorizer)
    state = ChannelState(
        channel_id=channel_id,
        config=config,
        deposited=int(deposited),
        claimed=int(claimed),
        ceiling=int(ceiling),
        signature=signature,
        charged=int(charged),
        close_deadline=close_deadline,
        settled=bool(settled),
        receiver_closing=bool(receiver_closing),
    )
    anchor = BlockRef(chain_block, bytes(chain_hash)) if chain_block is not None else None
    return StoredChannel(state, version, updated_at, anchor)


_CHANNEL_COLUMNS = (
    "channel_id, payer, signer, receiver, token, close_delay, salt, deposited, claimed, ceiling, "
    "signature, charged, close_deadline, settled, receiver_closing, version, updated_at, chain_block, chain_hash, "
    "receiver_authorizer"
)


_OUTBOX_TEXT = frozenset({"max_fee", "priority_fee", "gas_price"})  # uint256 columns, stored as decimal text


def _outbox_values(fields: OutboxUpdate) -> list[object]:
    """The column values of an outbox update (`update_outbox`, `mark_outbox`), uint256 ones as text."""
    check_outbox_update(fields)
    return [str(v) if k in _OUTBOX_TEXT and v is not None else v for k, v in fields.items()]


class _Request:
    __slots__ = ("write", "loop", "future")

    def __init__(self, write: Work, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.write, self.loop, self.future = write, loop, future


class SQLiteStore:
    def __init__(self, path: str | Path, synchronous: str = "full") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS)}, got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._lock_file: IO[Any] | None = None
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0  # transactions committed (for tests and benchmarks of group commit)
        self.writes = 0

    # ------------------------------------------------------------------ lifecycle

    async def open(self, pin: Pin) -> None:
        self._lock_file = lock_beside(self.path)
        if self._lock_file is None:
            raise StoreLocked(f"another channel-node process is using {self.path}")
        self._writer = _connect(self.path, self.synchronous)
        self._migrate(self._writer)
        self._check_pin(self._writer, pin)
        self._reader = _connect(self.path, self.synchronous)
        self._thread = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        for connection in (self._reader, self._writer):
            if connection is not None:
                connection.close()
        self._reader = self._writer = None
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    @staticmethod
    def _migrate(connection: sqlite3.Connection) -> None:
        current = connection.execute("PRAGMA user_version").fetchone()[0]
        known = migrations()
        if current > (known[-1][0] if known else 0):
            raise StoreError(f"database schema {current} is newer than this channel-node knows")
        for number, sql in known:
            if number <= current:
                continue
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(sql):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version={number}")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    @staticmethod
    def _check_pin(connection: sqlite3.Connection, pin: Pin) -> None:
        wanted = {"chain_id": str(pin.chain_id), "contract": pin.contract.hex(), "receiver": pin.receiver.hex()}
        stored = dict(connection.execute("SELECT key, value FROM meta"))
        if not stored:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", wanted.items())
            connection.execute("COMMIT")
            return
        for key, value in wanted.items():
            if stored.get(key) != value:
                raise StoreMismatch(
                    f"this database belongs to {key} {stored.get(key)}, but the node is configured for {value}; "
                    "use another database file"
                )

    # ------------------------------------------------------------------ reads (caller's thread)

    @property
    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreError("store is not open")
        return self._reader

    async def load_channel(self, channel_id: bytes) -> StoredChannel | None:
        row = self._read.execute(
            f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE channel_id = ?", (channel_id,)
        ).fetchone()
        return _row_to_channel(row) if row else None

    async def lookup_payment(
        self, channel_id: bytes, resource: str, payment_id: str | None, once: bool = True,
        spending: SpendingQuery | None = None,
    ) -> PaymentLookup:
        unlocked = once and (
            self._read.execute(
                "SELECT 1 FROM unlocks WHERE channel_id = ? AND resource = ?", (channel_id, resource)
            ).fetchone()
            is not None
        )
        prior = None
        if payment_id:
            row = self._read.execute(
                "SELECT resource FROM charges WHERE channel_id = ? AND payment_id = ?", (channel_id, payment_id)
            ).fetchone()
            prior = row[0] if row else None
        if spending is None:
            return PaymentLookup(unlocked=unlocked, prior_resource=prior)
        paid, oldest, held = self._spending(channel_id, spending)
        return PaymentLookup(unlocked, prior, paid, oldest, held)

    def _spending(self, channel_id: bytes, query: SpendingQuery) -> tuple[int, int | None, dict[str, int]]:
        """`store/base.py:spending_lookup` in SQL (amounts are decimal text: summed here)."""
        paid, oldest = 0, None
        if query.cap_group is not None:
            window = (channel_id, query.cap_group, query.since, query.until if query.until is not None else 1 << 62)
            # Only charges above 0 (the partial index holds only those): reads made free once the
            # cap is reached add nothing to scan.
            where = "WHERE channel_id = ? AND cap_group = ? AND at >= ? AND at < ? AND amount <> '0'"
            try:
                # Summed by SQLite while every amount has at most 18 digits (below 2**63): its integer
                # SUM is exact or raises on overflow; a longer amount is summed here instead.
                total, first, longest = self._read.execute(
                    f"SELECT SUM(CAST(amount AS INTEGER)), MIN(at), MAX(LENGTH(amount)) FROM charges {where}", window,
                ).fetchone()
            except sqlite3.OperationalError:  # integer overflow
                longest = None
                total = first = None
                exact = False
            else:
                exact = longest is None or longest <= 18
            if exact:
                paid, oldest = int(total or 0), first
            else:
                for amount, at in self._read.execute(f"SELECT amount, at FROM charges {where}", window).fetchall():
                    value = int(amount)
                    paid += value
                    if value > 0 and (oldest is None or at < oldest):
                        oldest = at
        held: dict[str, int] = {}
        if query.passes:
            marks = ", ".join("?" * len(query.passes))
            rows = self._read.execute(
                f"SELECT pass_name, MAX(pass_until) FROM charges WHERE channel_id = ? AND pass_name IN ({marks}) "
                "AND pass_until > ? GROUP BY pass_name",
                (channel_id, *query.passes, query.now),
            ).fetchall()
            held = {name: until for name, until in rows}
        return paid, oldest, held

    async def list_channels(self) -> list[StoredChannel]:
        rows = self._read.execute(f"SELECT {_CHANNEL_COLUMNS} FROM channels ORDER BY updated_at").fetchall()
        return [_row_to_channel(row) for row in rows]

    async def charges(self, channel_id: bytes) -> list[Charge]:
        rows = self._read.execute(
            "SELECT resource, amount, payment_id, at, EXISTS(SELECT 1 FROM unlocks u WHERE u.channel_id = c.channel_id "
            "AND u.resource = c.resource), cap_group, pass_name, pass_until FROM charges c WHERE channel_id = ? ORDER BY seq",
            (channel_id,),
        ).fetchall()
        return [
            Charge(resource, int(amount), payment_id, bool(once), at, cap_group, pass_name, pass_until)
            for resource, amount, payment_id, at, once, cap_group, pass_name, pass_until in rows
        ]

    async def channel_ids(self) -> set[bytes]:
        return {row[0] for row in self._read.execute("SELECT channel_id FROM channels")}

    async def closing_channels(self) -> list[StoredChannel]:
        rows = self._read.execute(
            f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE close_deadline IS NOT NULL AND settled = 0"
        ).fetchall()
        return [_row_to_channel(row) for row in rows]

    async def anchored_channels(self) -> list[tuple[bytes, BlockRef]]:
        rows = self._read.execute(
            "SELECT channel_id, chain_block, chain_hash FROM channels WHERE chain_block IS NOT NULL"
        ).fetchall()
        return [(channel_id, BlockRef(block, bytes(block_hash))) for channel_id, block, block_hash in rows]

    async def clear_anchor(self, channel_id: bytes, anchor: BlockRef) -> bool:
        def apply(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE channels SET chain_block = NULL, chain_hash = NULL "
                "WHERE channel_id = ? AND chain_block = ? AND chain_hash = ?",
                (channel_id, anchor.block, anchor.block_hash),
            )
            return cursor.rowcount == 1

        return bool(await self._submit(apply))

    async def cursor(self) -> Cursor | None:
        stored = dict(self._read.execute("SELECT key, value FROM meta WHERE key IN ('cursor_block', 'cursor_hash')"))
        if "cursor_block" not in stored:
            return None
        return Cursor(int(stored["cursor_block"]), bytes.fromhex(stored["cursor_hash"]))

    async def outbox(self, statuses: tuple[OutboxStatus, ...] = OUTBOX_OPEN) -> list[OutboxRow]:
        marks = ", ".join("?" * len(statuses))
        rows = self._read.execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE status IN ({marks}) ORDER BY id", statuses
        ).fetchall()
        return [_row_to_outbox(row) for row in rows]

    # ------------------------------------------------------------------ writes (writer thread)

    async def commit(self, write: ChannelWrite) -> int:
        version = await self._submit(write)
        assert isinstance(version, int)  # what `_apply` returns for a ChannelWrite
        return version

    async def set_cursor(self, cursor: Cursor) -> None:
        def apply(connection: sqlite3.Connection) -> None:
            connection.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [("cursor_block", str(cursor.block)), ("cursor_hash", cursor.block_hash.hex())],
            )

        await self._submit(apply)

    async def update_outbox(self, row_id: int, **fields: Unpack[OutboxUpdate]) -> None:
        values = _outbox_values(fields)

        def apply(connection: sqlite3.Connection) -> None:
            assignments = ", ".join(f"{name} = ?" for name in fields)
            connection.execute(
                f"UPDATE outbox SET {assignments}, updated_at = ? WHERE id = ?", (*values, int(time.time()), row_id)
            )

        await self._submit(apply)

    async def mark_outbox(self, rows: Sequence[OutboxRow], **fields: Unpack[OutboxUpdate]) -> bool:
        fields.pop("attempts", None)  # each row's own count, plus one (store/base.py:Store.mark_outbox)
        values = _outbox_values(fields)
        expected = [(row.id, OutboxStatus(row.status).value, row.attempts) for row in rows]

        def apply(connection: sqlite3.Connection) -> bool:
            # One writer thread inside one write transaction: nothing changes the rows between the
            # check and the update.
            for row_id, status, attempts in expected:
                found = connection.execute("SELECT status, attempts FROM outbox WHERE id = ?", (row_id,)).fetchone()
                if found is None or (found[0], found[1]) != (status, attempts):
                    return False
            assignments = "".join(f"{name} = ?, " for name in fields)
            connection.executemany(
                f"UPDATE outbox SET {assignments}attempts = attempts + 1, updated_at = ? WHERE id = ?",
                [(*values, int(time.time()), row_id) for row_id, _, _ in expected],
            )
            return True

        return bool(await self._submit(apply))

    async def complete_outbox(self, channel_id: bytes, claimed: int, settled: bool) -> int:
        def apply(connection: sqlite3.Connection) -> int:
            rows = connection.execute(
                f"SELECT id, kind, amount FROM outbox WHERE channel_id = ? AND status IN {_OPEN_SQL}", (channel_id,)
            ).fetchall()
            done = [row_id for row_id, kind, amount in rows if fulfilled(OutboxKind(kind), int(amount), claimed, settled)]
            connection.executemany(
                "UPDATE outbox SET status = ?, updated_at = ? WHERE id = ?",
                [(OutboxStatus.DONE, int(time.time()), i) for i in done],
            )
            return len(done)

        done = await self._submit(apply)
        assert isinstance(done, int)
        return done

    # ------------------------------------------------------------------ x402 `exact` sales

    async def record_exact(self, write: ExactWrite) -> tuple[ExactRecord, RecordOutcome]:
        key = write.key

        def apply(connection: sqlite3.Connection) -> tuple[ExactRecord, RecordOutcome]:
            row = connection.execute(
                f"SELECT {_EXACT_COLUMNS} FROM exact_payments WHERE token = ? AND payer = ? AND nonce = ?",
                (write.token, write.payer, write.nonce),
            ).fetchone()
            if row is not None:
                existing = _row_to_exact(row)
                return existing, record_outcome(existing, write)
            now = int(time.time())
            connection.execute(
                "INSERT INTO exact_payments (auth_key, token, payer, nonce, receiver, value, valid_after, valid_before, "
                "signature, resource, price, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, write.token, write.payer, write.nonce, write.receiver, str(write.value), str(write.valid_after),
                 str(write.valid_before), write.signature, write.resource, str(write.price), ExactStatus.HELD.value,
                 write.at, now),
            )  # fmt: skip
            _enqueue(connection, key, exact_outbox_item(write), now)  # the same transaction
            created = connection.execute(
                f"SELECT {_EXACT_COLUMNS} FROM exact_payments WHERE auth_key = ?", (key,)
            ).fetchone()
            return _row_to_exact(created), RecordOutcome.RECORDED

        outcome = await self._submit(apply)
        assert isinstance(outcome, tuple)
        return outcome

    async def exact_payment(self, key: bytes) -> ExactRecord | None:
        row = self._read.execute(f"SELECT {_EXACT_COLUMNS} FROM exact_payments WHERE auth_key = ?", (key,)).fetchone()
        return _row_to_exact(row) if row else None

    async def finish_exact(
        self, key: bytes, status: ExactStatus, tx_hash: bytes | None = None, block_number: int | None = None,
        gas_used: int | None = None, error: str | None = None,
    ) -> bool:
        if status == ExactStatus.HELD:
            return False
        closed = OutboxStatus.DONE if status == ExactStatus.CONFIRMED else OutboxStatus.ABANDONED

        def apply(connection: sqlite3.Connection) -> bool:
            now = int(time.time())
            cursor = connection.execute(
                "UPDATE exact_payments SET status = ?, tx_hash = ?, block_number = ?, gas_used = ?, error = ?, "
                "updated_at = ? WHERE auth_key = ? AND status = ?",
                (status.value, tx_hash, block_number, gas_used, error, now, key, ExactStatus.HELD.value),
            )
            if cursor.rowcount != 1:
                return False
            connection.execute(
                f"UPDATE outbox SET status = ?, note = ?, updated_at = ? WHERE channel_id = ? AND kind = ? "
                f"AND status IN {_OPEN_SQL}",
                (closed.value, error or status.value, now, key, OutboxKind.TRANSFER_AUTHORIZATION.value),
            )
            return True

        return bool(await self._submit(apply))

    async def serve_exact(self, key: bytes) -> bool:
        def apply(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE exact_payments SET served = 1, updated_at = ? WHERE auth_key = ? AND status = ? AND served = 0",
                (int(time.time()), key, ExactStatus.CONFIRMED.value),
            )
            return cursor.rowcount == 1

        return bool(await self._submit(apply))

    async def exact_held(self) -> int:
        row = self._read.execute("SELECT COUNT(*) FROM exact_payments WHERE status = ?", (ExactStatus.HELD.value,)).fetchone()
        return int(row[0])

    async def _submit(self, work: Work) -> object:
        """Hands `work` to the writer thread and returns its outcome (or raises its failure)."""
        if self._thread is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self._queue.put(_Request(work, loop, future))
        return await future

    def _write_loop(self) -> None:
        connection = self._writer
        assert connection is not None  # opened before the thread starts
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            outcomes = self._apply_batch(connection, batch)
            # One wake-up per event loop per batch, not one per write: each wake-up is a syscall.
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[object], object]]] = {}
            for request, outcome in zip(batch, outcomes, strict=True):
                by_loop.setdefault(request.loop, []).append((request.future, outcome))
            for loop, results in by_loop.items():
                loop.call_soon_threadsafe(_resolve_all, results)
            if stop:
                return

    def _apply_batch(self, connection: sqlite3.Connection, batch: list[_Request]) -> list[object]:
        try:
            outcomes = None
            try:
                outcomes = self._apply_bulk(connection, batch)
            except sqlite3.IntegrityError:
                connection.execute("ROLLBACK")
            if outcomes is None:
                try:
                    outcomes = self._apply_all(connection, batch, savepoints=False)
                except sqlite3.IntegrityError:
                    # A write failed after its channel row changed (a payment id another process
                    # recorded): redo with a savepoint per write so only that write is undone.
                    connection.execute("ROLLBACK")
                    outcomes = self._apply_all(connection, batch, savepoints=True)
            connection.execute("COMMIT")
            self.batches += 1
            self.writes += len(batch)
        except Exception as exc:  # disk full, I/O error: nothing in the batch is durable
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            failure = StoreError(f"could not commit to {self.path}: {exc}")
            return [failure] * len(batch)
        return outcomes

    def _apply_bulk(self, connection: sqlite3.Connection, batch: list[_Request]) -> list[object] | None:
        """The common case, in three statements for the whole batch: every write updates a known
        channel and every compare-and-set holds. Returns None (nothing written) when a write needs
        the per-write path: a new channel, or a channel another writer changed."""
        writes = [request.write for request in batch if isinstance(request.write, ChannelWrite)]
        if len(writes) != len(batch) or any(w.expected_version == 0 or w.outbox or w.anchor for w in writes):
            return None
        now = int(time.time())
        connection.execute("BEGIN IMMEDIATE")
        cursor = connection.executemany(_UPDATE_CHANNEL, [_update_values(write, now) for write in writes])
        if cursor.rowcount != len(writes):
            connection.execute("ROLLBACK")
            return None
        charges = [(write, write.charge) for write in writes if write.charge is not None]
        if charges:
            connection.executemany(_INSERT_CHARGE, [_charge_values(write, charge) for write, charge in charges])
            unlocks = [(w.state.channel_id, charge.resource) for w, charge in charges if charge.once]
            if unlocks:
                connection.executemany(_INSERT_UNLOCK, unlocks)
        return [write.expected_version + 1 for write in writes]

    def _apply_all(self, connection: sqlite3.Connection, batch: list[_Request], savepoints: bool) -> list[object]:
        """Applies every write in one transaction. Without savepoints a stale write is still safe to
        skip: its compare-and-set UPDATE is its first statement, so it wrote nothing."""
        outcomes: list[object] = []
        connection.execute("BEGIN IMMEDIATE")
        for request in batch:
            if savepoints:
                connection.execute("SAVEPOINT w")
            try:
                work = request.write
                outcomes.append(self._apply(connection, work) if isinstance(work, ChannelWrite) else work(connection))
            except StaleWrite as exc:
                outcomes.append(exc)
            except sqlite3.IntegrityError as exc:
                if not savepoints:
                    raise
                connection.execute("ROLLBACK TO w")
                outcomes.append(StaleWrite(f"write refused by the database: {exc}"))
            if savepoints:
                connection.execute("RELEASE w")
        return outcomes

    @staticmethod
    def _apply(connection: sqlite3.Connection, write: ChannelWrite) -> int:
        s = write.state
        now = int(time.time())
        version = write.expected_version + 1
        if write.expected_version == 0:
            c = s.config
            values = (
                str(s.deposited), str(s.claimed), str(s.ceiling), s.signature, str(s.charged),
                s.close_deadline, int(s.settled), int(s.receiver_closing), version, now,
            )  # fmt: skip
            cursor = connection.execute(
                "INSERT OR IGNORE INTO channels (channel_id, payer, signer, receiver, token, close_delay, salt, "
                "deposited, claimed, ceiling, signature, charged, close_deadline, settled, receiver_closing, version, "
                "updated_at, receiver_authorizer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (s.channel_id, c.payer, c.signer, c.receiver, c.token, c.close_delay, str(c.salt), *values,
                 c.receiver_authorizer),  # fmt: skip
            )
        else:
            cursor = connection.execute(_UPDATE_CHANNEL, _update_values(write, now))
        if cursor.rowcount != 1:
            raise StaleWrite(f"channel 0x{s.channel_id.hex()} changed since it was read")
        if write.anchor is not None:
            connection.execute(
                "UPDATE channels SET chain_block = ?, chain_hash = ? WHERE channel_id = ?",
                (write.anchor.block, write.anchor.block_hash, s.channel_id),
            )
        charge = write.charge
        if charge is not None:
            connection.execute(_INSERT_CHARGE, _charge_values(write, charge))
            if charge.once:
                connection.execute(_INSERT_UNLOCK, (s.channel_id, charge.resource))
        for item in write.outbox:
            _enqueue(connection, s.channel_id, item, now)
        return version


_UPDATE_CHANNEL = (
    "UPDATE channels SET deposited = ?, claimed = ?, ceiling = ?, signature = ?, charged = ?, close_deadline = ?, "
    "settled = ?, receiver_closing = ?, version = ?, updated_at = ? WHERE channel_id = ? AND version = ?"
)
_INSERT_CHARGE = (
    "INSERT INTO charges (channel_id, seq, resource, amount, payment_id, at, cap_group, pass_name, pass_until) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_UNLOCK = "INSERT OR IGNORE INTO unlocks (channel_id, resource) VALUES (?, ?)"


_OUTBOX_COLUMNS = (
    "id, channel_id, kind, amount, signature, deadline, status, tx_hash, raw_tx, nonce, max_fee, priority_fee, "
    "sent_at, attempts, note, voucher_amount, gas_used, gas_price"
)


def _row_to_outbox(row: tuple[Any, ...]) -> OutboxRow:
    (row_id, channel_id, kind, amount, signature, deadline, status, tx_hash, raw_tx, nonce, max_fee,
     priority_fee, sent_at, attempts, note, voucher_amount, gas_used, gas_price) = row  # fmt: skip
    return OutboxRow(
        row_id, channel_id, OutboxKind(kind), int(amount), signature, deadline, OutboxStatus(status), tx_hash, raw_tx, nonce,
        int(max_fee) if max_fee is not None else None, int(priority_fee) if priority_fee is not None else None,
        sent_at, attempts, note, int(voucher_amount) if voucher_amount is not None else None, gas_used,
        int(gas_price) if gas_price is not None else None,
    )  # fmt: skip


_EXACT_COLUMNS = (
    "auth_key, token, payer, nonce, receiver, value, valid_after, valid_before, signature, resource, price, status, "
    "tx_hash, block_number, gas_used, error, served, created_at"
)


def _row_to_exact(row: tuple[Any, ...]) -> ExactRecord:
    (key, token, payer, nonce, receiver, value, valid_after, valid_before, signature, resource, price, status,
     tx_hash, block_number, gas_used, error, served, created_at) = row  # fmt: skip
    return ExactRecord(
        bytes(key), bytes(token), bytes(payer), bytes(nonce), bytes(receiver), int(value), int(valid_after),
        int(valid_before), bytes(signature), resource, int(price), ExactStatus(status),
        bytes(tx_hash) if tx_hash is not None else None, block_number, gas_used, error, bool(served), created_at,
    )  # fmt: skip


def _enqueue(connection: sqlite3.Connection, channel_id: bytes, item: OutboxItem, now: int) -> None:
    """One open row per channel and kind: a higher voucher replaces the amount of a row not yet sent;
    a row already sent stands (once done, the core asks again if more is owed)."""
    row = connection.execute(
        f"SELECT id, status, amount FROM outbox WHERE channel_id = ? AND kind = ? AND status IN {_OPEN_SQL}",
        (channel_id, item.kind),
    ).fetchone()
    if row is None:
        connection.execute(
            "INSERT INTO outbox (channel_id, kind, amount, signature, deadline, status, created_at, updated_at, "
            "voucher_amount) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (channel_id, item.kind, str(item.amount), item.signature, item.deadline, OutboxStatus.PENDING, now, now,
             str(item.voucher)),
        )  # fmt: skip
    elif row[1] == OutboxStatus.PENDING and int(row[2]) < item.amount:
        connection.execute(
            "UPDATE outbox SET amount = ?, signature = ?, deadline = ?, voucher_amount = ?, updated_at = ? WHERE id = ?",
            (str(item.amount), item.signature, item.deadline, str(item.voucher), now, row[0]),
        )


def _update_values(write: ChannelWrite, now: int) -> tuple[object, ...]:
    s = write.state
    return (
        str(s.deposited), str(s.claimed), str(s.ceiling), s.signature, str(s.charged), s.close_deadline,
        int(s.settled), int(s.receiver_closing), write.expected_version + 1, now, s.channel_id, write.expected_version,
    )  # fmt: skip


def _charge_values(write: ChannelWrite, c: Charge) -> tuple[object, ...]:
    return (write.state.channel_id, write.expected_version + 1, c.resource, str(c.amount), c.payment_id, c.at,
            c.cap_group, c.pass_name, c.pass_until)  # fmt: skip


def _resolve_all(results: list[tuple[asyncio.Future[object], object]]) -> None:
    for future, outcome in results:
        if future.done():  # the request was cancelled (client went away); the write stands regardless
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


