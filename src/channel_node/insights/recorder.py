"""Records every 402 offer and every paid unlock for the publisher's revenue insights.

The request path only appends a tuple to an in-memory deque (thread-safe, O(1), no lock, no I/O).
A dedicated writer thread drains it every `flush_interval` seconds, or sooner when `flush_at`
events wait, into its own SQLite file (WAL, synchronous=NORMAL: insights are analytics, not money;
a power cut may lose the last second of them, never a payment).

Schema (all compact integers):

- dictionaries: `resources` (path), `tags` (key, value), `tagsets` (one per distinct tag set, with
  its members in `tagset_tags`), `channels` (the 32-byte channel id: readers stay pseudonymous, the
  node knows nothing more about them);
- `events`: one row per offer or unlock, INTEGER columns only: `id` (in arrival order), `at` (unix
  seconds), `kind` (0 offer, 1 unlock), `resource_id`, `tagset_id`, `channel_id` (0 for offers),
  `price` (smallest unit). A price of 2**63 or more does not fit a SQLite INTEGER: the row holds
  -1 and `price_overflow(event_id, price)` holds the exact decimal text. Prices of 2**96 or more are
  refused (counted in `stats["refused"]`): no price table holds such a thing;
- rollups, updated in the same transaction as the events they count: `hourly` (the whole site),
  `hourly_tag` (per tag per hour), `daily_resource` (per day x resource x tag set x price), the
  same per week in `weekly_resource` (a year is ~52 rows per resource, not 365) and `daily_tag`.
  Revenue in a rollup is two limbs, `rev_hi * 2**40 + rev_lo` with `rev_lo < 2**40`, so a rollup
  row is exact up to 2**103 and SUM() over a year of rows cannot overflow;
- unique paying channels: distinct counts do not add up across buckets, so once an hour is over
  its distinct payers are counted from the raw events into `hourly.payers` and
  `hourly_tag.payers`; once a day is over its paying channel sets (whole site, per resource, per
  tag) are stored in `payer_sets` as sorted id arrays or compressed bitmaps, whichever is
  smaller, and the same per week once it is over in `payer_sets_weekly`; a range is the union of
  its weeks' and days' sets. Until then (the current hour, day and week, or one that received
  late events) queries count those hours from the raw events. `hourly.first_id/last_id` bound
  the event ids of each hour, so those scans need no index on `at`.

Days and hours are UTC.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
import structlog

from channel_node.lockfile import lock_beside

OFFER, UNLOCK = 0, 1
LIMB = 40
MASK = (1 << LIMB) - 1
INT63 = 1 << 63
PRICE_LIMIT = 1 << 96
HOUR, DAY = 3600, 86400
SCOPE_ALL, SCOPE_RESOURCE, SCOPE_TAG = 0, 1, 2
MAX_RESOURCE = 1024  # characters of a resource path kept
MAX_CACHED = 1_000_000  # dictionary entries the writer keeps in memory (then it starts over from the database)
SCHEMA_VERSION = 1
DENSE_FROM = 256  # a paying channel set this large is stored as a compressed bitmap when smaller

# An event as the request path buffers it: (kind, resource, price, tags, channel or None, unix time).
Event = tuple[int, str, int, dict, bytes | None, float]

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS tags (id INTEGER PRIMARY KEY, key TEXT NOT NULL, value TEXT NOT NULL, UNIQUE (key, value));
CREATE TABLE IF NOT EXISTS tagsets (id INTEGER PRIMARY KEY, canon TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS tagset_tags (
    tagset_id INTEGER NOT NULL, tag_id INTEGER NOT NULL, PRIMARY KEY (tagset_id, tag_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tagset_tags_by_tag ON tagset_tags (tag_id, tagset_id);
CREATE TABLE IF NOT EXISTS channels (id INTEGER PRIMARY KEY, channel BLOB NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, at INTEGER NOT NULL, kind INTEGER NOT NULL, resource_id INTEGER NOT NULL,
    tagset_id INTEGER NOT NULL, channel_id INTEGER NOT NULL, price INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS price_overflow (event_id INTEGER PRIMARY KEY, price TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hourly (
    hour INTEGER PRIMARY KEY, offers INTEGER NOT NULL, unlocks INTEGER NOT NULL, rev_hi INTEGER NOT NULL,
    rev_lo INTEGER NOT NULL, payers INTEGER, first_id INTEGER NOT NULL, last_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hourly_tag (
    tag_id INTEGER NOT NULL, hour INTEGER NOT NULL, offers INTEGER NOT NULL, unlocks INTEGER NOT NULL,
    rev_hi INTEGER NOT NULL, rev_lo INTEGER NOT NULL, payers INTEGER, PRIMARY KEY (tag_id, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily_resource (
    day INTEGER NOT NULL, resource_id INTEGER NOT NULL, tagset_id INTEGER NOT NULL, price INTEGER NOT NULL,
    offers INTEGER NOT NULL, unlocks INTEGER NOT NULL, rev_hi INTEGER NOT NULL, rev_lo INTEGER NOT NULL,
    PRIMARY KEY (day, resource_id, tagset_id, price)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS weekly_resource (
    week INTEGER NOT NULL, resource_id INTEGER NOT NULL, tagset_id INTEGER NOT NULL, price INTEGER NOT NULL,
    offers INTEGER NOT NULL, unlocks INTEGER NOT NULL, rev_hi INTEGER NOT NULL, rev_lo INTEGER NOT NULL,
    PRIMARY KEY (week, resource_id, tagset_id, price)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily_tag (
    day INTEGER NOT NULL, tag_id INTEGER NOT NULL, offers INTEGER NOT NULL, unlocks INTEGER NOT NULL,
    rev_hi INTEGER NOT NULL, rev_lo INTEGER NOT NULL, PRIMARY KEY (day, tag_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS days (day INTEGER PRIMARY KEY, ready INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS payer_sets (
    scope INTEGER NOT NULL, key INTEGER NOT NULL, day INTEGER NOT NULL, n INTEGER NOT NULL, ids BLOB NOT NULL,
    PRIMARY KEY (scope, key, day)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS weeks (week INTEGER PRIMARY KEY, ready INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS payer_sets_weekly (
    scope INTEGER NOT NULL, key INTEGER NOT NULL, week INTEGER NOT NULL, n INTEGER NOT NULL, ids BLOB NOT NULL,
    PRIMARY KEY (scope, key, week)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

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


def _log():
    return structlog.get_logger("channel_node.insights")


def connect(path: str | Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to an insights database (read-only ones for queries, beside the writer)."""
    if readonly:
        connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                     check_same_thread=False, timeout=10)  # fmt: skip
    else:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA cache_size=-65536")  # 64 MiB: a year of rollups stays in memory
    connection.execute("PRAGMA temp_store=MEMORY")
    return connection


def week_of(day: int) -> int:
    """The week (Monday to Sunday, UTC) holding a day number; week w starts on day 7 * w - 3."""
    return (day + 3) // 7  # 1970-01-01, day 0, was a Thursday


def split(amount: int) -> tuple[int, int]:
    """Revenue limbs: (hi, lo) with amount == hi * 2**40 + lo."""
    return amount >> LIMB, amount & MASK


# ------------------------------------------------------------------ paying channel sets


def encode_ids(ids: list[int]) -> bytes:
    """Sorted distinct ids, in whichever form is smaller: b"S" + uint32 array (sparse sets) or
    b"Z" + zlib-compressed little-endian bitmap (large sets: unions of those are C-speed ORs)."""
    if not ids:
        return b"S"
    if len(ids) >= DENSE_FROM or ids[-1] >= 1 << 32:
        bitmap = bytearray(ids[-1] // 8 + 1)
        for i in ids:
            bitmap[i >> 3] |= 1 << (i & 7)
        packed_bitmap = zlib.compress(bytes(bitmap), 1)
        if len(packed_bitmap) < 4 * len(ids) or ids[-1] >= 1 << 32:
            return b"Z" + packed_bitmap
    packed = array("I", ids)
    if sys.byteorder != "little":
        packed.byteswap()
    return b"S" + packed.tobytes()


class PayerUnion:
    """The union of paying channel sets: exact distinct count across buckets."""

    __slots__ = ("bits", "ids", "parts", "only_n")

    def __init__(self) -> None:
        self.bits = 0  # bitmap sets, OR-ed as a Python int
        self.ids: set[int] = set()  # sparse sets and raw channel ids
        self.parts = 0
        self.only_n: int | None = None

    def add_blob(self, n: int, blob: bytes) -> None:
        self.parts += 1
        self.only_n = n
        kind = blob[:1]
        if kind == b"Z":
            self.bits |= int.from_bytes(zlib.decompress(blob[1:]), "little")
        elif kind == b"B":
            self.bits |= int.from_bytes(blob[1:], "little")
        elif len(blob) > 1:
            packed = array("I")
            packed.frombytes(blob[1:])
            if sys.byteorder != "little":
                packed.byteswap()
            self.ids.update(packed)

    def add_ids(self, ids: Iterable[int]) -> None:
        self.parts += 2  # never the single-blob shortcut
        self.ids.update(ids)

    def count(self) -> int:
        if self.parts == 1 and self.only_n is not None:
            return self.only_n
        if not self.bits:
            return len(self.ids)
        total = self.bits.bit_count()
        if self.ids:
            bitmap = self.bits.to_bytes((self.bits.bit_length() + 7) // 8, "little")
            size = len(bitmap)
            total += sum(1 for i in self.ids if (i >> 3) >= size or not bitmap[i >> 3] >> (i & 7) & 1)
        return total


# ------------------------------------------------------------------ the writer


class InsightsWriter:
    """Owns the insights database's write connection: dictionary encoding, events, rollups and the
    compaction of closed hours and days. Used by the Recorder's thread, and directly (single
    threaded) by bulk loaders such as scripts/bench_insights.py."""

    def __init__(self, path: str | Path, grace: float = 120.0) -> None:
        self.path = Path(path)
        self.grace = grace  # seconds after its end before an hour or day is compacted (late events)
        self._lock_file = lock_beside(self.path)
        if self._lock_file is None:
            raise RuntimeError(f"another process is writing {self.path}")
        self.db = connect(self.path)
        self.db.executescript(SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        self._load_caches()
        self.refused = 0

    def _load_caches(self) -> None:
        self._resources: dict[str, int] = {}
        self._channels: dict[bytes, int] = {}
        self._tags: dict[tuple[str, str], int] = {}
        self._tagsets: dict[tuple, int] = {}  # canonical items -> tag set id
        self._tagset_tags: dict[int, tuple[int, ...]] = {}  # tag set id -> tag ids
        self._by_dict: dict[int, tuple[dict, dict, int]] = {}  # id(tags) -> (tags, a copy, tag set id)
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
            found = row[0] if row else self.db.execute("INSERT INTO resources (path) VALUES (?)", (path,)).lastrowid
            if len(self._resources) >= MAX_CACHED:
                self._resources.clear()
            self._resources[path] = found
        return found

    def _channel(self, channel: bytes) -> int:
        row = self.db.execute("SELECT id FROM channels WHERE channel = ?", (channel,)).fetchone()
        found = row[0] if row else self.db.execute("INSERT INTO channels (channel) VALUES (?)", (channel,)).lastrowid
        if len(self._channels) >= MAX_CACHED:
            self._channels.clear()
        self._channels[channel] = found
        return found

    def _tagset(self, tags: dict) -> int:
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
                tagset_id = self.db.execute("INSERT INTO tagsets (canon) VALUES (?)", (canon,)).lastrowid
                self.db.executemany("INSERT INTO tagset_tags (tagset_id, tag_id) VALUES (?, ?)",
                                    [(tagset_id, t) for t in tag_ids])  # fmt: skip
            else:
                tagset_id = row[0]
            found = self._tagsets[items] = tagset_id
            self._tagset_tags[tagset_id] = tag_ids
        if len(self._by_dict) >= MAX_CACHED:  # someone hands a new dict each time: do not pin them all
            self._by_dict.clear()
        self._by_dict[id(tags)] = (tags, dict(tags), found)  # holds `tags`, so its id is not reused
        return found

    def _tag(self, key: str, value: str) -> int:
        found = self._tags.get((key, value))
        if found is None:
            row = self.db.execute("SELECT id FROM tags WHERE key = ? AND value = ?", (key, value)).fetchone()
            found = row[0] if row else self.db.execute(
                "INSERT INTO tags (key, value) VALUES (?, ?)", (key, value)
            ).lastrowid
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
        events: list[tuple] = []
        overflow: list[tuple[int, str]] = []
        # One dict update per event: (resource, tag set, price, hour) -> [offers, unlocks, revenue, first id,
        # last id]; every rollup is derived from these groups below.
        groups: dict[tuple[int, int, int, int], list] = {}
        next_id = self._next_id
        for kind, resource, price, tags, channel, at in batch:
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
                cid = channels.get(channel)
                if cid is None:
                    cid = self._channel(channel)
            eid = next_id
            next_id += 1
            if price < INT63:
                small = price
            else:
                small = -1
                overflow.append((eid, str(price)))
            sec = int(at)
            events.append((eid, sec, kind, rid, tagset_id, cid, small))
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
        if not events:
            return 0
        # Rows may repeat a key (a batch spanning two hours of one day): the upserts add them up.
        hourly: dict[int, list] = {}
        by_tagset: dict[tuple[int, int], list] = {}
        resource_rows, week_rows, days = [], [], set()
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
        hour_tag_rows, day_tag_rows = [], []
        for (tagset_id, hour), (o, u, r) in by_tagset.items():
            hi, lo = r >> LIMB, r & MASK
            for tag in tagset_tags[tagset_id]:
                hour_tag_rows.append((tag, hour, o, u, hi, lo))
                day_tag_rows.append((hour // 24, tag, o, u, hi, lo))
        db = self.db
        db.executemany("INSERT INTO events (id, at, kind, resource_id, tagset_id, channel_id, price) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", events)  # fmt: skip
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
        return len(events)

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
                    self._compact_hour(hour, first, last)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            done += len(hours[start : start + 500])
        closed_day = closed // DAY
        for table, sets, limit_at, first_day, last_day in (
            ("days", "payer_sets", closed_day, lambda d: d, lambda d: d + 1),
            ("weeks", "payer_sets_weekly", week_of(closed_day), lambda w: 7 * w - 3, lambda w: 7 * w + 4),
        ):  # a week once all its days are over
            column = table[:-1]
            todo = [n for (n,) in self.db.execute(
                f"SELECT {column} FROM {table} WHERE ready = 0 AND {column} < ? ORDER BY {column}", (limit_at,))]  # fmt: skip
            for period in todo[:limit]:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    self._store_sets(sets, column, period, first_day(period), last_day(period))
                    self.db.execute(f"UPDATE {table} SET ready = 1 WHERE {column} = ?", (period,))
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                done += 1
        return done

    def _compact_hour(self, hour: int, first: int, last: int) -> None:
        window = (first, last, hour * HOUR, (hour + 1) * HOUR)
        (payers,) = self.db.execute(
            "SELECT COUNT(DISTINCT CASE WHEN kind = 1 THEN channel_id END) FROM events "
            "WHERE id BETWEEN ? AND ? AND at >= ? AND at < ?", window,
        ).fetchone()  # fmt: skip
        self.db.execute("UPDATE hourly SET payers = ? WHERE hour = ?", (payers, hour))
        per_tag = self.db.execute(
            "SELECT tt.tag_id, COUNT(DISTINCT CASE WHEN e.kind = 1 THEN e.channel_id END) FROM events e "
            "CROSS JOIN tagset_tags tt ON tt.tagset_id = e.tagset_id "
            "WHERE e.id BETWEEN ? AND ? AND e.at >= ? AND e.at < ? GROUP BY tt.tag_id", window,
        ).fetchall()  # fmt: skip
        self.db.executemany("UPDATE hourly_tag SET payers = ? WHERE tag_id = ? AND hour = ?",
                            [(n, tag, hour) for tag, n in per_tag])  # fmt: skip

    def _store_sets(self, table: str, column: str, period: int, day0: int, day1: int) -> None:
        """The paying channel sets of days [day0, day1): whole site, per resource, per tag."""
        first, last = self.db.execute(
            "SELECT MIN(first_id), MAX(last_id) FROM hourly WHERE hour >= ? AND hour < ?", (day0 * 24, day1 * 24)
        ).fetchone()
        rows: list[tuple[int, int, list[int]]] = []
        if first is not None:
            window = (first, last, day0 * DAY, day1 * DAY)
            where = "e.id BETWEEN ? AND ? AND e.at >= ? AND e.at < ? AND e.kind = 1"
            everyone = [c for (c,) in self.db.execute(
                f"SELECT DISTINCT channel_id FROM events e WHERE {where} ORDER BY 1", window)]  # fmt: skip
            rows.append((SCOPE_ALL, 0, everyone))
            for scope, sql in (
                (SCOPE_RESOURCE, f"SELECT DISTINCT e.resource_id, e.channel_id FROM events e WHERE {where} ORDER BY 1, 2"),
                (SCOPE_TAG, "SELECT DISTINCT tt.tag_id, e.channel_id FROM events e CROSS JOIN tagset_tags tt "
                            f"ON tt.tagset_id = e.tagset_id WHERE {where} ORDER BY 1, 2"),
            ):  # fmt: skip
                key, ids = None, []
                for k, channel in self.db.execute(sql, window):
                    if k != key:
                        if ids:
                            rows.append((scope, key, ids))
                        key, ids = k, []
                    ids.append(channel)
                if ids:
                    rows.append((scope, key, ids))
        self.db.executemany(
            f"INSERT OR REPLACE INTO {table} (scope, key, {column}, n, ids) VALUES (?, ?, ?, ?, ?)",
            [(scope, key, period, len(ids), encode_ids(ids)) for scope, key, ids in rows if ids],
        )


# ------------------------------------------------------------------ the recorder (the paywall's hook)


class Recorder:
    """The paywall's `InsightsRecorder`: `offer` and `unlock` only append to a buffer."""

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval: float = 1.0,
        flush_at: int = 20_000,
        max_buffer: int = 1_000_000,
        grace: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.flush_at = flush_at  # buffered events that wake the writer before the interval
        self.max_buffer = max_buffer  # beyond this (writer stalled), events are dropped and counted
        self.grace = grace
        self.clock = clock  # for compaction (tests move time)
        self._buffer: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._waiters_lock = threading.Lock()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._writer: InsightsWriter | None = None
        self.stats = {"dropped": 0, "written": 0, "failed": 0, "flushes": 0, "refused": 0, "last_flush_s": 0.0}

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r})"

    # -------------------------------------------------------------- request path: buffer only

    def offer(self, resource: str, price: int, tags: dict[str, str], at: float) -> None:
        buffer = self._buffer
        if len(buffer) >= self.flush_at:
            self._overfull()
            if len(buffer) >= self.max_buffer:
                return
        buffer.append((OFFER, resource, price, tags, None, at))

    def unlock(self, resource: str, price: int, tags: dict[str, str], channel_id: bytes, at: float) -> None:
        buffer = self._buffer
        if len(buffer) >= self.flush_at:
            self._overfull()
            if len(buffer) >= self.max_buffer:
                return
        buffer.append((UNLOCK, resource, price, tags, channel_id, at))

    def _overfull(self) -> None:
        self._wake.set()
        if len(self._buffer) >= self.max_buffer:
            self.stats["dropped"] += 1

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Opens (creating) the database and starts the writer thread."""
        if self._thread is not None:
            return
        self._writer = await asyncio.to_thread(InsightsWriter, self.path, self.grace)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="insights-writer", daemon=True)
        self._thread.start()

    async def flush(self) -> None:
        """Returns once every event buffered before the call is written (and closed periods compacted)."""
        if self._thread is None:
            raise RuntimeError("the recorder is not started")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._waiters_lock:
            self._waiters.append((loop, future))
        self._wake.set()
        await future

    async def close(self) -> None:
        """Writes everything still buffered, then stops the writer and closes the database (events
        buffered by a recorder that was never started are not written)."""
        if self._thread is None:
            return
        self._stop = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -------------------------------------------------------------- writer thread

    def _run(self) -> None:
        try:
            self._loop(self._writer)
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
                for _ in range(min(len(buffer), 50_000)):
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


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


__all__ = ["InsightsWriter", "PayerUnion", "Recorder", "connect", "encode_ids", "split"]
