"""The insights database's writer: `InsightsWriter` turns a batch of buffered events into one
transaction (dictionary encoding, the events, every rollup) and compacts closed periods
(payers.py); `WriterThread` is the thread that drains the recorder's buffer into it.

The thread wakes every `flush_interval` seconds, or sooner when the request path finds `flush_at`
events waiting or someone awaits `Recorder.flush`; it writes the buffer in batches of at most
`BATCH` events (one transaction each), then compacts at most one closed day and week so the buffer
keeps draining. A batch that fails (disk full, I/O error) is dropped and counted: insights are
analytics, not money. The on-disk format is schema.py's.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, TypedDict

import orjson
import structlog
from structlog.typing import FilteringBoundLogger

from channel_node.amounts import Asset
from channel_node.insights.payers import compact_hour, store_sets
from channel_node.insights.schema import (
    DAY,
    GAS_KINDS,
    HOUR,
    INT63,
    LIMB,
    MASK,
    PRICE_LIMIT,
    SALE_ARTICLE,
    SALE_KINDS,
    UNLOCK,
    open_database,
    week_of,
    write_asset,
    write_economics,
)
from channel_node.lockfile import lock_beside

MAX_RESOURCE = 1024  # characters of a resource path kept
MAX_CACHED = 1_000_000  # dictionary entries the writer keeps in memory (then it starts over from the database)
BATCH = 50_000  # events per transaction when the thread drains the buffer

Tags = dict[str, str]
GAS = 2  # a buffered transaction cost; never an `events` row (it goes to the `gas` table)
NO_TAGS: Tags = {}
# An event as the request path buffers it: (kind, resource, price, tags, channel or None, unix time),
# and for a sale that is not a plain article a 7th item (sale kind, list price or None, cap or pass
# name or None). A GAS item is (GAS, gas kind, gas used, NO_TAGS, tx hash, unix time, (gas price, rows)).
Event = tuple[int, str, int, Tags, bytes | None, float] | tuple[int, str, int, Tags, bytes | None, float, tuple[Any, ...]]


class RecorderStats(TypedDict):
    dropped: int  # events the request path dropped: the buffer was full (the writer stalled)
    written: int
    failed: int  # events in batches that could not be written
    flushes: int
    refused: int  # events with a price of 2**96 or more
    last_flush_s: float


def _log() -> FilteringBoundLogger:
    logger: FilteringBoundLogger = structlog.get_logger("channel_node.insights")  # get_logger is untyped (Any)
    return logger


def _inserted(cursor: sqlite3.Cursor) -> int:
    """The rowid an INSERT just made (typeshed has lastrowid optional: it is None only before any insert)."""
    rowid = cursor.lastrowid
    if rowid is None:
        raise sqlite3.DatabaseError("the insert made no row")
    return rowid


_REV = (
    f"rev_hi = rev_hi + excluded.rev_hi + ((rev_lo + excluded.rev_lo) >> {LIMB}), "
    f"rev_lo = (rev_lo + excluded.rev_lo) & {MASK}"
)
_COUNTS = "offers = offers + excluded.offers, unlocks = unlocks + excluded.unlocks"
_UPSERT_HOURLY = (
    "INSERT INTO hourly (hour, offers, unlocks, rev_hi, rev_lo, payers, first_id, last_id) VALUES (?, ?, ?, ?, ?, NULL, ?, ?) "
    f"ON CONFLICT (hour) DO UPDATE SET {_COUNTS}, {_REV}, payers = NULL, "
    "first_id = MIN(first_id, excluded.first_id), last_id = MAX(last_id, excluded.last_id)"
)
_UPSERT_HOURLY_TAG = (
    "INSERT INTO hourly_tag (tag_id, hour, offers, unlocks, rev_hi, rev_lo, payers) VALUES (?, ?, ?, ?, ?, ?, NULL) "
    f"ON CONFLICT (tag_id, hour) DO UPDATE SET {_COUNTS}, {_REV}, payers = NULL"
)
_UPSERT_DAILY_RESOURCE = (
    "INSERT INTO daily_resource (day, resource_id, tagset_id, price, offers, unlocks, rev_hi, rev_lo) "
    f"VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, resource_id, tagset_id, price) DO UPDATE SET {_COUNTS}, {_REV}"
)
_UPSERT_WEEKLY_RESOURCE = _UPSERT_DAILY_RESOURCE.replace("daily_resource (day", "weekly_resource (week").replace(
    "(day, resource_id", "(week, resource_id"
)
_UPSERT_DAILY_TAG = (
    "INSERT INTO daily_tag (day, tag_id, offers, unlocks, rev_hi, rev_lo) VALUES (?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT (day, tag_id) DO UPDATE SET {_COUNTS}, {_REV}"
)
_UPSERT_DAY = "INSERT INTO days (day, ready) VALUES (?, 0) ON CONFLICT (day) DO UPDATE SET ready = 0"
_UPSERT_WEEK = "INSERT INTO weeks (week, ready) VALUES (?, 0) ON CONFLICT (week) DO UPDATE SET ready = 0"


class InsightsWriter:
    """Owns the insights database's write connection: dictionary encoding, events, rollups and the
    compaction of closed hours and days. Used by the Recorder's thread, and directly (single
    threaded) by bulk loaders such as scripts/bench_insights.py."""

    def __init__(
        self, path: str | Path, grace: float = 120.0, asset: Asset | None = None,
        economics: tuple[str | None, str | None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.grace = grace  # seconds after its end before an hour or day is compacted (late events)
        lock = lock_beside(self.path)
        if lock is None:
            raise RuntimeError(f"another process is writing {self.path}")
        self._lock_file: IO[Any] = lock
        self.db = open_database(self.path)
        if asset is not None:
            write_asset(self.db, asset)
        if economics is not None:
            write_economics(self.db, *economics)
        self._load_caches()
        self.refused = 0

    def _load_caches(self) -> None:
        self._resources: dict[str, int] = {}
        self._channels: dict[bytes, int] = {}
        self._tags: dict[tuple[str, str], int] = {}
        self._tagsets: dict[tuple[tuple[str, str], ...], int] = {}  # canonical items -> tag set id
        self._tagset_tags: dict[int, tuple[int, ...]] = {}  # tag set id -> tag ids
        self._by_dict: dict[int, tuple[Tags, Tags, int]] = {}  # id(tags) -> (tags, a copy, tag set id)
        self._labels: dict[str, int] = {}  # cap and pass names
        self._next_id = (self.db.execute("SELECT MAX(id) FROM events").fetchone()[0] or 0) + 1

    def close(self) -> None:
        self.db.close()
        self._lock_file.close()

    # -------------------------------------------------------------- dictionaries

    def _resource(self, path: str) -> int:
        path = path[:MAX_RESOURCE]
        found = self._resources.get(path)
        if found is None:
            row = self.db.execute("SELECT id FROM resources WHERE path = ?", (path,)).fetchone()
            found = row[0] if row else _inserted(self.db.execute("INSERT INTO resources (path) VALUES (?)", (path,)))
            if len(self._resources) >= MAX_CACHED:
                self._resources.clear()
            self._resources[path] = found
        return found

    def _channel(self, channel: bytes) -> int:
        row = self.db.execute("SELECT id FROM channels WHERE channel = ?", (channel,)).fetchone()
        found: int = row[0] if row else _inserted(self.db.execute("INSERT INTO channels (channel) VALUES (?)", (channel,)))
        if len(self._channels) >= MAX_CACHED:
            self._channels.clear()
        self._channels[channel] = found
        return found

    def _tagset(self, tags: Tags) -> int:
        """The tag set's id. Price tables hand the same dict for every request: it is looked up by
        identity, and compared by value (in C) in case someone changed it since."""
        cached = self._by_dict.get(id(tags))
        if cached is not None and cached[0] is tags and cached[1] == tags:
            return cached[2]
        items = tuple(sorted((str(k), str(v)) for k, v in tags.items()))
        found = self._tagsets.get(items)
        if found is None:
            canon = orjson.dumps(dict(items)).decode()
            row = self.db.execute("SELECT id FROM tagsets WHERE canon = ?", (canon,)).fetchone()
            tag_ids = tuple(self._tag(k, v) for k, v in items)
            if row is None:
                tagset_id = _inserted(self.db.execute("INSERT INTO tagsets (canon) VALUES (?)", (canon,)))
                self.db.executemany("INSERT INTO tagset_tags (tagset_id, tag_id) VALUES (?, ?)",
                                    [(tagset_id, t) for t in tag_ids])  # fmt: skip
            else:
                tagset_id = int(row[0])
            found = self._tagsets[items] = tagset_id
            self._tagset_tags[tagset_id] = tag_ids
        if len(self._by_dict) >= MAX_CACHED:  # someone hands a new dict each time: do not pin them all
            self._by_dict.clear()
        self._by_dict[id(tags)] = (tags, dict(tags), found)  # holds `tags`, so its id is not reused
        return found

    def _label(self, name: str | None) -> int:
        if not name:
            return 0
        name = str(name)[:MAX_RESOURCE]
        found = self._labels.get(name)
        if found is None:
            row = self.db.execute("SELECT id FROM labels WHERE name = ?", (name,)).fetchone()
            found = row[0] if row else _inserted(self.db.execute("INSERT INTO labels (name) VALUES (?)", (name,)))
            self._labels[name] = found
        return found

    def _tag(self, key: str, value: str) -> int:
        found = self._tags.get((key, value))
        if found is None:
            row = self.db.execute("SELECT id FROM tags WHERE key = ? AND value = ?", (key, value)).fetchone()
            found = row[0] if row else _inserted(self.db.execute(
                "INSERT INTO tags (key, value) VALUES (?, ?)", (key, value)))  # fmt: skip
            self._tags[(key, value)] = found
        return found

    # -------------------------------------------------------------- writing

    def write(self, batch: Iterable[Event]) -> int:
        """Appends the events and updates every rollup in one transaction. Returns events written."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            written = self._write(batch)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._load_caches()  # ids handed out in the rolled back transaction are void
            raise
        return written

    def _write(self, batch: Iterable[Event]) -> int:
        resources, channels = self._resources, self._channels
        by_dict = self._by_dict
        events: list[tuple[int, int, int, int, int, int, int]] = []
        overflow: list[tuple[int, str]] = []
        # One dict update per event: (resource, tag set, price, hour) -> [offers, unlocks, revenue, first id,
        # last id]; every rollup is derived from these groups below.
        groups: dict[tuple[int, int, int, int], list[int]] = {}
        sales: list[tuple[int, ...]] = []
        gas: list[tuple[bytes, int, int, int, str, int]] = []
        next_id = self._next_id
        for event in batch:
            if len(event) == 6:
                kind, resource, price, tags, channel, at = event
                extra = None
            else:
                kind, resource, price, tags, channel, at, extra = event
                if kind == GAS:
                    gas_kind = GAS_KINDS.get(resource)
                    if gas_kind is None or channel is None or not 0 <= price < INT63 or not 0 <= extra[0] < PRICE_LIMIT:
                        self.refused += 1
                    else:
                        gas.append((channel, int(at), gas_kind, price, str(extra[0]), int(extra[1])))
                    continue
            if not 0 <= price < PRICE_LIMIT:
                self.refused += 1
                continue
            rid = resources.get(resource)
            if rid is None:
                rid = self._resource(resource)
            cached = by_dict.get(id(tags))
            tagset_id = cached[2] if cached is not None and cached[0] is tags and cached[1] == tags else self._tagset(tags)
            if channel is None:
                cid = 0
            else:
                known = channels.get(channel)
                cid = self._channel(channel) if known is None else known
            eid = next_id
            next_id += 1
            if price < INT63:
                small = price
            else:
                small = -1
                overflow.append((eid, str(price)))
            sec = int(at)
            events.append((eid, sec, kind, rid, tagset_id, cid, small))
            if extra is not None and kind == UNLOCK:
                sale = SALE_KINDS.get(extra[0], SALE_ARTICLE)
                if sale != SALE_ARTICLE:
                    listed = extra[1] if isinstance(extra[1], int) and 0 <= extra[1] < PRICE_LIMIT else price
                    sales.append((eid, sec, sale, self._label(extra[2]), cid, price >> LIMB, price & MASK,
                                  listed >> LIMB, listed & MASK))  # fmt: skip
            key = (rid, tagset_id, small, sec // HOUR)
            row = groups.get(key)
            if kind == UNLOCK:
                if row is None:
                    groups[key] = [0, 1, price, eid, eid]
                else:
                    row[1] += 1
                    row[2] += price
                    row[4] = eid
            elif row is None:
                groups[key] = [1, 0, 0, eid, eid]
            else:
                row[0] += 1
                row[4] = eid
        db = self.db
        if gas:  # one row per transaction, whoever reports it again (a restart re-meters)
            db.executemany("INSERT OR IGNORE INTO gas (tx_hash, at, kind, gas_used, gas_price, rows) "
                           "VALUES (?, ?, ?, ?, ?, ?)", gas)  # fmt: skip
        if not events:
            return len(gas)
        # Rows may repeat a key (a batch spanning two hours of one day): the upserts add them up.
        hourly: dict[int, list[int]] = {}
        by_tagset: dict[tuple[int, int], list[int]] = {}
        resource_rows: list[tuple[int, ...]] = []
        week_rows: list[tuple[int, ...]] = []
        days: set[int] = set()
        for (rid, tagset_id, small, hour), (o, u, r, first, last) in groups.items():
            row = hourly.get(hour)
            if row is None:
                hourly[hour] = [o, u, r, first, last]
            else:
                row[0] += o
                row[1] += u
                row[2] += r
                row[3] = min(row[3], first)
                row[4] = max(row[4], last)
            row = by_tagset.get((tagset_id, hour))
            if row is None:
                by_tagset[(tagset_id, hour)] = [o, u, r]
            else:
                row[0] += o
                row[1] += u
                row[2] += r
            day = hour // 24
            days.add(day)
            resource_rows.append((day, rid, tagset_id, small, o, u, r >> LIMB, r & MASK))
            week_rows.append((week_of(day), rid, tagset_id, small, o, u, r >> LIMB, r & MASK))
        tagset_tags = self._tagset_tags
        hour_tag_rows: list[tuple[int, ...]] = []
        day_tag_rows: list[tuple[int, ...]] = []
        for (tagset_id, hour), (o, u, r) in by_tagset.items():
            hi, lo = r >> LIMB, r & MASK
            for tag in tagset_tags[tagset_id]:
                hour_tag_rows.append((tag, hour, o, u, hi, lo))
                day_tag_rows.append((hour // 24, tag, o, u, hi, lo))
        db.executemany("INSERT INTO events (id, at, kind, resource_id, tagset_id, channel_id, price) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", events)  # fmt: skip
        if sales:
            db.executemany("INSERT INTO sales (event_id, at, sale, label_id, channel_id, price_hi, price_lo, list_hi, "
                           "list_lo) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", sales)  # fmt: skip
        if overflow:
            db.executemany("INSERT INTO price_overflow (event_id, price) VALUES (?, ?)", overflow)
        db.executemany(_UPSERT_HOURLY, [(h, o, u, r >> LIMB, r & MASK, f, l) for h, (o, u, r, f, l) in hourly.items()])
        db.executemany(_UPSERT_HOURLY_TAG, hour_tag_rows)
        db.executemany(_UPSERT_DAILY_RESOURCE, resource_rows)
        db.executemany(_UPSERT_WEEKLY_RESOURCE, week_rows)
        db.executemany(_UPSERT_DAILY_TAG, day_tag_rows)
        db.executemany(_UPSERT_DAY, [(d,) for d in days])
        db.executemany(_UPSERT_WEEK, [(w,) for w in {week_of(d) for d in days}])
        self._next_id = next_id
        return len(events) + len(gas)

    # -------------------------------------------------------------- compaction of closed hours and days

    def compact(self, now: float | None = None, limit: int | None = None) -> int:
        """Counts the distinct payers of every closed hour and stores the paying channel sets of every
        closed day and week that changed since. Returns the hours, days and weeks compacted (at most
        `limit` days and `limit` weeks)."""
        now = time.time() if now is None else now
        closed = int(now - self.grace)
        done = 0
        hours = self.db.execute(
            "SELECT hour, first_id, last_id FROM hourly WHERE payers IS NULL AND hour < ? ORDER BY hour", (closed // HOUR,)
        ).fetchall()
        for start in range(0, len(hours), 500):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for hour, first, last in hours[start : start + 500]:
                    compact_hour(self.db, hour, first, last)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            done += len(hours[start : start + 500])
        closed_day = closed // DAY
        periods: tuple[tuple[str, str, int, Callable[[int], int], Callable[[int], int]], ...] = (
            ("days", "payer_sets", closed_day, lambda d: d, lambda d: d + 1),
            ("weeks", "payer_sets_weekly", week_of(closed_day), lambda w: 7 * w - 3, lambda w: 7 * w + 4),
        )  # a week once all its days are over
        for table, sets, limit_at, first_day, last_day in periods:
            column = table[:-1]
            todo = [n for (n,) in self.db.execute(
                f"SELECT {column} FROM {table} WHERE ready = 0 AND {column} < ? ORDER BY {column}", (limit_at,))]  # fmt: skip
            for period in todo[:limit]:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    store_sets(self.db, sets, column, period, first_day(period), last_day(period))
                    self.db.execute(f"UPDATE {table} SET ready = 1 WHERE {column} = ?", (period,))
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                done += 1
        return done



# ------------------------------------------------------------------ the writer thread


class WriterThread:
    """Drains a recorder's buffer into an `InsightsWriter` on its own thread ("insights-writer").

    The request path only appends to `buffer` and sets `wake`; everything else happens here. Whoever
    awaits a flush registers a future (`add_waiter`), resolved on its event loop once the round that
    started after it has written and compacted."""

    def __init__(
        self,
        writer: InsightsWriter,
        buffer: collections.deque[Event],
        wake: threading.Event,
        stats: RecorderStats,
        flush_interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.writer = writer
        self._buffer = buffer
        self._wake = wake
        self.stats = stats
        self.flush_interval = flush_interval
        self.clock = clock  # for compaction (tests move time)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="insights-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add_waiter(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        """Resolves `future` (on `loop`) after the next round, and wakes the thread for it."""
        with self._waiters_lock:
            self._waiters.append((loop, future))
        self._wake.set()

    def stop(self) -> None:
        """Blocking: asks the thread to write what is buffered and end, and waits until it has."""
        self._stop = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            self._loop(self.writer)
        except BaseException as exc:  # a bug: say so, and release whoever waits on a flush
            _log().error("insights_writer_died", error=f"{type(exc).__name__}: {exc}"[:300])
            with self._waiters_lock:
                waiters, self._waiters = self._waiters, []
            for loop, future in waiters:
                loop.call_soon_threadsafe(_resolve, future)
            raise

    def _loop(self, writer: InsightsWriter) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            with self._waiters_lock:
                waiters, self._waiters = self._waiters, []
            stopping = self._stop
            self._flush(writer)
            try:
                writer.compact(self.clock(), limit=1)  # at most one day per round: the buffer keeps draining
            except Exception as exc:
                _log().error("insights_compact_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            for loop, future in waiters:
                loop.call_soon_threadsafe(_resolve, future)
            if stopping:
                self._flush(writer)  # anything appended while the last round ran
                return

    def _flush(self, writer: InsightsWriter) -> None:
        buffer = self._buffer
        while buffer:
            batch = []
            pop = buffer.popleft
            try:
                for _ in range(min(len(buffer), BATCH)):
                    batch.append(pop())
            except IndexError:
                pass
            started = time.perf_counter()
            try:
                self.stats["written"] += writer.write(batch)
            except Exception as exc:  # disk full, I/O error: analytics, so the batch is dropped and counted
                self.stats["failed"] += len(batch)
                _log().error("insights_write_failed", events=len(batch), error=f"{type(exc).__name__}: {exc}"[:300])
            self.stats["flushes"] += 1
            self.stats["refused"] = writer.refused
            self.stats["last_flush_s"] = round(time.perf_counter() - started, 4)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


__all__ = ["BATCH", "GAS", "MAX_CACHED", "MAX_RESOURCE", "NO_TAGS", "Event", "InsightsWriter", "RecorderStats", "Tags", "WriterThread"]
