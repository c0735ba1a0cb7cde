"""Unique paying channels: distinct counts do not add up across buckets, so the writer stores the
sets themselves once a period is over, and queries take the union of those they cover.

- once an hour is over (plus the writer's grace for late events), its distinct payers are counted
  from the raw events into `hourly.payers` and `hourly_tag.payers` (`compact_hour`);
- once a day is over, its paying channel sets (whole site, per resource, per tag) are stored in
  `payer_sets` as sorted id arrays or compressed bitmaps, whichever is smaller (`encode_ids`), and
  the same per week once it is over in `payer_sets_weekly` (`store_sets`);
- a range's distinct payers are the union of its weeks' and days' sets and the raw events of the
  hours not compacted yet (`PayerUnion`, used by queries.py). Until then (the current hour, day and
  week, or one that received late events) queries count those hours from the raw events.

The ids are the `channels` dictionary's, never the channel ids themselves.
"""

from __future__ import annotations

import itertools
import sqlite3
import sys
import zlib
from array import array
from collections.abc import Iterable
from typing import Any

from channel_node.insights.schema import DAY, HOUR, SCOPE_ALL, SCOPE_RESOURCE, SCOPE_TAG

DENSE_FROM = 256  # a paying channel set this large is stored as a compressed bitmap when smaller


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


def compact_hour(db: sqlite3.Connection, hour: int, first: int, last: int) -> None:
    """Counts a closed hour's distinct payers (whole site and per tag) from its raw events, whose
    ids lie in [first, last]. Runs inside the caller's transaction."""
    window = (first, last, hour * HOUR, (hour + 1) * HOUR)
    (payers,) = db.execute(
        "SELECT COUNT(DISTINCT CASE WHEN kind = 1 THEN channel_id END) FROM events "
        "WHERE id BETWEEN ? AND ? AND at >= ? AND at < ?", window,
    ).fetchone()  # fmt: skip
    db.execute("UPDATE hourly SET payers = ? WHERE hour = ?", (payers, hour))
    per_tag = db.execute(
        "SELECT tt.tag_id, COUNT(DISTINCT CASE WHEN e.kind = 1 THEN e.channel_id END) FROM events e "
        "CROSS JOIN tagset_tags tt ON tt.tagset_id = e.tagset_id "
        "WHERE e.id BETWEEN ? AND ? AND e.at >= ? AND e.at < ? GROUP BY tt.tag_id", window,
    ).fetchall()  # fmt: skip
    db.executemany("UPDATE hourly_tag SET payers = ? WHERE tag_id = ? AND hour = ?",
                   [(n, tag, hour) for tag, n in per_tag])  # fmt: skip


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def store_sets(db: sqlite3.Connection, table: str, column: str, period: int, day0: int, day1: int) -> None:
    """Stores the paying channel sets of days [day0, day1) (whole site, per resource, per tag) as
    `period`'s rows of `table` (`payer_sets` by day, `payer_sets_weekly` by week). Runs inside the
    caller's transaction."""
    first, last = db.execute(
        "SELECT MIN(first_id), MAX(last_id) FROM hourly WHERE hour >= ? AND hour < ?", (day0 * 24, day1 * 24)
    ).fetchone()
    rows: list[tuple[int, int, list[int]]] = []
    if first is not None:
        window = (first, last, day0 * DAY, day1 * DAY)
        where = "e.id BETWEEN ? AND ? AND e.at >= ? AND e.at < ? AND e.kind = 1"
        everyone = [c for (c,) in db.execute(
            f"SELECT DISTINCT channel_id FROM events e WHERE {where} ORDER BY 1", window)]  # fmt: skip
        rows.append((SCOPE_ALL, 0, everyone))
        for scope, sql in (
            (SCOPE_RESOURCE, f"SELECT DISTINCT e.resource_id, e.channel_id FROM events e WHERE {where} ORDER BY 1, 2"),
            (SCOPE_TAG, "SELECT DISTINCT tt.tag_id, e.channel_id FROM events e CROSS JOIN tagset_tags tt "
                        f"ON tt.tagset_id = e.tagset_id WHERE {where} ORDER BY 1, 2"),
        ):  # fmt: skip
            for key, group in itertools.groupby(db.execute(sql, window), key=_first):  # ordered by key
                rows.append((scope, key, [channel for _, channel in group]))
    db.executemany(
        f"INSERT OR REPLACE INTO {table} (scope, key, {column}, n, ids) VALUES (?, ?, ?, ?, ?)",
        [(scope, key, period, len(ids), encode_ids(ids)) for scope, key, ids in rows if ids],
    )


__all__ = ["DENSE_FROM", "PayerUnion", "compact_hour", "encode_ids", "store_sets"]
