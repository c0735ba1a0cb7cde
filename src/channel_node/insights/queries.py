"""Queries over an insights database: revenue, unlocks, unique paying channels and conversion
(offers shown -> unlocks) by resource, by tag and over time, top-N lists and price comparisons.

Every function takes a sqlite3 connection and a range `[since, until)` in unix seconds, widened to
whole UTC hours (since rounded down, until up). Figures come from the rollups for whole days and
from the raw events only for the partial days at the ends of the range and for the hours and days
not compacted yet (see payers.py), so a year of traffic answers in well under a second.

Results are plain dicts and lists. Money (revenue, prices) is an int in the token's smallest unit;
`conversion` is unlocks / offers as a float (None without offers; it can exceed 1 when a wallet
pays without being shown the 402 first). A price of 2**63 or more shows as -1 in price lists (its
revenue stays exact). Weeks start on Monday 00:00 UTC.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from channel_node.errors import UsageError
from channel_node.insights.payers import PayerUnion
from channel_node.insights.schema import DAY, HOUR, LIMB, MASK, SCOPE_ALL, SCOPE_RESOURCE, SCOPE_TAG, week_of

BUCKETS = {"hour": HOUR, "day": DAY, "week": 7 * DAY}
ORDERS = ("revenue", "unlocks", "offers", "conversion", "payers")
MAX_BUCKETS = 10_000
NO_TAG = -1  # a tag the database has never seen: matches nothing

Row = dict[str, Any]  # one result row: figures by name (money as int), as documented above


class QueryError(UsageError, ValueError):
    """A malformed query (unknown bucket, inverted range, too many buckets, malformed tag)."""


# ------------------------------------------------------------------ ranges and buckets


def hour_span(since: int, until: int) -> tuple[int, int]:
    """[since, until) as whole hours [h0, h1)."""
    if until <= since:
        raise QueryError("until must be after since")
    return since // HOUR, -(-until // HOUR)


def bucket_floor(bucket: str, t: int) -> int:
    """The start of the bucket holding unix time t (weeks start on Monday, UTC)."""
    if bucket == "hour":
        return t - t % HOUR
    if bucket == "day":
        return t - t % DAY
    if bucket == "week":
        day = t // DAY
        return (day - (day + 3) % 7) * DAY  # 1970-01-01 was a Thursday
    raise QueryError(f"bucket must be one of {list(BUCKETS)}")


def buckets(bucket: str, since: int, until: int) -> list[tuple[int, int, int]]:
    """(label, start, end) of every bucket over the range: label is the bucket's own start; start
    and end are clipped to the (hour-aligned) range."""
    h0, h1 = hour_span(since, until)
    lo, hi = h0 * HOUR, h1 * HOUR
    size = BUCKETS.get(bucket)
    if size is None:
        raise QueryError(f"bucket must be one of {list(BUCKETS)}")
    first = bucket_floor(bucket, lo)
    if (hi - first) // size > MAX_BUCKETS:
        raise QueryError(f"more than {MAX_BUCKETS} {bucket} buckets: narrow the range or use a larger bucket")
    out = []
    start = first
    while start < hi:
        out.append((start, max(start, lo), min(start + size, hi)))
        start += size
    return out


def _days(h0: int, h1: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Whole days [d0, d1) inside hours [h0, h1), and the hour ranges left at either end."""
    d0, d1 = -(-h0 // 24), h1 // 24
    if d0 >= d1:
        return d0, d0, [(h0, h1)]
    return d0, d1, [r for r in ((h0, d0 * 24), (d1 * 24, h1)) if r[0] < r[1]]


def _windows(conn: sqlite3.Connection, hour_ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """Raw-event windows (first id, last id, start, end) covering the hour ranges, adjacent ones merged."""
    merged: list[list[int]] = []
    for a, b in sorted(hour_ranges):
        if a >= b:
            continue
        if merged and merged[-1][1] >= a:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    windows = []
    for a, b in merged:
        first, last = conn.execute(
            "SELECT MIN(first_id), MAX(last_id) FROM hourly WHERE hour >= ? AND hour < ?", (a, b)
        ).fetchone()
        if first is not None:
            windows.append((first, last, a * HOUR, b * HOUR))
    return windows


_RAW = "e.id BETWEEN ? AND ? AND e.at >= ? AND e.at < ?"
# CROSS JOIN keeps events the outer loop: SQLite would otherwise scan the id range once per tag set.
_WITH_TAGS = "CROSS JOIN tagset_tags tt ON tt.tagset_id = e.tagset_id"
_TAGSETS = "e.tagset_id IN (SELECT tagset_id FROM tagset_tags WHERE tag_id = ?)"
_RAW_COUNTS = (
    f"SUM(e.kind = 0), SUM(e.kind = 1), SUM(CASE WHEN e.kind = 1 AND e.price >= 0 THEN e.price >> {LIMB} ELSE 0 END), "
    f"SUM(CASE WHEN e.kind = 1 AND e.price >= 0 THEN e.price & {MASK} ELSE 0 END)"
)


def _money(hi: int | None, lo: int | None) -> int:
    return ((hi or 0) << LIMB) + (lo or 0)


def _conversion(offers: int, unlocks: int) -> float | None:
    return unlocks / offers if offers else None


def _figures(offers: int, unlocks: int, revenue: int, payers: int | None = None) -> Row:
    out: Row = {"offers": offers, "unlocks": unlocks, "revenue": revenue, "conversion": _conversion(offers, unlocks)}
    if payers is not None:
        out["payers"] = payers
    return out


# ------------------------------------------------------------------ tags


def parse_tag(text: str) -> tuple[str, str]:
    """"section:news" (or "section=news") -> ("section", "news")."""
    for separator in (":", "="):
        key, found, value = text.partition(separator)
        if found and key:
            return key, value
    raise QueryError(f"a tag is key:value, got {text!r}")


def tag_id(conn: sqlite3.Connection, tag: str | tuple[str, str] | None) -> int | None:
    if tag is None:
        return None
    key, value = parse_tag(tag) if isinstance(tag, str) else tag
    row = conn.execute("SELECT id FROM tags WHERE key = ? AND value = ?", (key, value)).fetchone()
    return row[0] if row else NO_TAG


def _tagset_names(conn: sqlite3.Connection, tagsets: Iterable[int]) -> dict[int, dict[str, str]]:
    ids = list(set(tagsets))
    out: dict[int, dict[str, str]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for tagset, canon in conn.execute(f"SELECT id, canon FROM tagsets WHERE id IN ({marks})", chunk):
            out[tagset] = orjson.loads(canon)
    return out


def _names(conn: sqlite3.Connection, table: str, column: str, keys: Iterable[int]) -> dict[int, object]:
    ids = list(set(keys))
    out: dict[int, object] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        out.update(conn.execute(f"SELECT id, {column} FROM {table} WHERE id IN ({marks})", chunk).fetchall())
    return out


# ------------------------------------------------------------------ unique paying channels


def payer_counts(conn: sqlite3.Connection, scope: int, keys: list[int], h0: int, h1: int) -> dict[int, int]:
    """Distinct paying channels over hours [h0, h1) per key (0 for the whole site, a resource id, a
    tag id): the union of the stored week and day sets, plus raw events where no set applies yet."""
    unions = {key: PayerUnion() for key in keys}
    if not keys:
        return {}

    def add_sets(table: str, column: str, ready: set[int], lo: int, hi: int) -> None:
        for key in keys:
            union = unions[key]
            for period, n, blob in conn.execute(
                f"SELECT {column}, n, ids FROM {table} WHERE scope = ? AND key = ? AND {column} >= ? AND {column} < ?",
                (scope, key, lo, hi),
            ):
                if period in ready:
                    union.add_blob(n, blob)

    d0, d1, raw = _days(h0, h1)
    day_ranges = [(d0, d1)] if d0 < d1 else []
    w0, w1 = week_of(d0 + 6), week_of(d1)  # whole weeks inside the whole days
    if d0 < d1 and w0 < w1:
        weeks = {w for (w,) in conn.execute("SELECT week FROM weeks WHERE week >= ? AND week < ? AND ready = 1", (w0, w1))}
        if weeks:
            add_sets("payer_sets_weekly", "week", weeks, w0, w1)
            day_ranges = [(d0, w0 * 7 - 3), (w1 * 7 - 3, d1)]
            day_ranges += [(7 * w - 3, 7 * w + 4) for w in range(w0, w1) if w not in weeks]
    for a, b in day_ranges:
        if a >= b:
            continue
        ready: set[int] = set()
        for day, is_ready in conn.execute("SELECT day, ready FROM days WHERE day >= ? AND day < ?", (a, b)):
            if is_ready:
                ready.add(day)
            else:
                raw.append((day * 24, day * 24 + 24))
        if ready:
            add_sets("payer_sets", "day", ready, a, b)
    for window in _windows(conn, raw):
        if scope == SCOPE_ALL:
            ids = [c for (c,) in conn.execute(f"SELECT DISTINCT e.channel_id FROM events e WHERE {_RAW} AND e.kind = 1", window)]
            if ids:
                unions[0].add_ids(ids)
            continue
        marks = ",".join("?" * len(keys))
        if scope == SCOPE_RESOURCE:
            sql = (f"SELECT DISTINCT e.resource_id, e.channel_id FROM events e WHERE {_RAW} AND e.kind = 1 "
                   f"AND e.resource_id IN ({marks})")  # fmt: skip
        else:
            sql = (f"SELECT DISTINCT tt.tag_id, e.channel_id FROM events e {_WITH_TAGS} "
                   f"WHERE {_RAW} AND e.kind = 1 AND tt.tag_id IN ({marks})")  # fmt: skip
        found: dict[int, list[int]] = {}
        for key, channel in conn.execute(sql, (*window, *keys)):
            found.setdefault(key, []).append(channel)
        for key, ids in found.items():
            unions[key].add_ids(ids)
    return {key: union.count() for key, union in unions.items()}


def _payers_scope(tag: int | None) -> tuple[int, int]:
    return (SCOPE_ALL, 0) if tag is None else (SCOPE_TAG, tag)


# ------------------------------------------------------------------ summary and series


def summary(conn: sqlite3.Connection, since: int, until: int, tag: str | None = None) -> Row:
    """Totals over the range (optionally for one tag): offers, unlocks, revenue, payers, conversion."""
    h0, h1 = hour_span(since, until)
    tid = tag_id(conn, tag)
    if tid is None:
        row = conn.execute("SELECT SUM(offers), SUM(unlocks), SUM(rev_hi), SUM(rev_lo) FROM hourly "
                           "WHERE hour >= ? AND hour < ?", (h0, h1)).fetchone()  # fmt: skip
    else:
        row = conn.execute("SELECT SUM(offers), SUM(unlocks), SUM(rev_hi), SUM(rev_lo) FROM hourly_tag "
                           "WHERE tag_id = ? AND hour >= ? AND hour < ?", (tid, h0, h1)).fetchone()  # fmt: skip
    offers, unlocks = row[0] or 0, row[1] or 0
    scope, key = _payers_scope(tid)
    payers = payer_counts(conn, scope, [key], h0, h1)[key] if unlocks else 0
    return {"since": h0 * HOUR, "until": h1 * HOUR, **_figures(offers, unlocks, _money(row[2], row[3]), payers)}


def series(conn: sqlite3.Connection, bucket: str, since: int, until: int, tag: str | None = None) -> list[Row]:
    """One row per bucket over the range (empty buckets included): start, offers, unlocks, revenue,
    payers (distinct paying channels within the bucket), conversion."""
    spans = buckets(bucket, since, until)
    h0, h1 = spans[0][1] // HOUR, spans[-1][2] // HOUR
    tid = tag_id(conn, tag)
    if tid is None:
        rows = conn.execute("SELECT hour, offers, unlocks, rev_hi, rev_lo, payers FROM hourly "
                            "WHERE hour >= ? AND hour < ?", (h0, h1))  # fmt: skip
    else:
        rows = conn.execute("SELECT hour, offers, unlocks, rev_hi, rev_lo, payers FROM hourly_tag "
                            "WHERE tag_id = ? AND hour >= ? AND hour < ?", (tid, h0, h1))  # fmt: skip
    starts = [label for label, _, _ in spans]
    index = {label: i for i, label in enumerate(starts)}
    totals = [[0, 0, 0, 0, 0] for _ in spans]  # offers, unlocks, hi, lo, payers (hour buckets)
    open_hours: list[int] = []
    for hour, offers, unlocks, hi, lo, payers in rows:
        slot = totals[index[bucket_floor(bucket, hour * HOUR)]]
        slot[0] += offers
        slot[1] += unlocks
        slot[2] += hi
        slot[3] += lo
        if bucket == "hour":
            if payers is not None:
                slot[4] = payers
            elif unlocks:
                open_hours.append(hour)
    scope, key = _payers_scope(tid)
    for hour in open_hours:
        totals[index[hour * HOUR]][4] = payer_counts(conn, scope, [key], hour, hour + 1)[key]
    out: list[Row] = []
    for (label, start, end), (offers, unlocks, hi, lo, payers) in zip(spans, totals, strict=True):
        if bucket != "hour" and unlocks:
            payers = payer_counts(conn, scope, [key], start // HOUR, end // HOUR)[key]
        out.append({"start": label, **_figures(offers, unlocks, _money(hi, lo), payers)})
    return out


# ------------------------------------------------------------------ resources


def _resource_rows(conn: sqlite3.Connection, h0: int, h1: int, tid: int | None) -> dict[tuple[int, int, int], list[int]]:
    """(resource id, tagset id, price) -> [offers, unlocks, revenue] over hours [h0, h1)."""
    out: dict[tuple[int, int, int], list[int]] = {}

    def add(rows: sqlite3.Cursor) -> None:
        for rid, tagset, price, offers, unlocks, hi, lo in rows:
            slot = out.get((rid, tagset, price))
            if slot is None:
                out[(rid, tagset, price)] = [offers, unlocks, _money(hi, lo)]
            else:
                slot[0] += offers
                slot[1] += unlocks
                slot[2] += _money(hi, lo)

    d0, d1, edges = _days(h0, h1)
    tag_filter = "" if tid is None else f" AND {_TAGSETS.replace('e.', '')}"
    tag_args = () if tid is None else (tid,)
    columns = "resource_id, tagset_id, price, SUM(offers), SUM(unlocks), SUM(rev_hi), SUM(rev_lo)"
    w0, w1 = week_of(d0 + 6), week_of(d1)  # whole weeks inside the whole days
    day_ranges = [(d0, d1)]
    if w0 < w1:
        add(conn.execute(
            f"SELECT {columns} FROM weekly_resource WHERE week >= ? AND week < ?{tag_filter} "
            "GROUP BY resource_id, tagset_id, price", (w0, w1, *tag_args),
        ))  # fmt: skip
        day_ranges = [(d0, w0 * 7 - 3), (w1 * 7 - 3, d1)]
    for a, b in day_ranges:
        if a < b:
            add(conn.execute(
                f"SELECT {columns} FROM daily_resource WHERE day >= ? AND day < ?{tag_filter} "
                "GROUP BY resource_id, tagset_id, price", (a, b, *tag_args),
            ))  # fmt: skip
    raw_filter = "" if tid is None else f" AND {_TAGSETS}"
    for window in _windows(conn, edges):
        add(conn.execute(
            f"SELECT e.resource_id, e.tagset_id, e.price, {_RAW_COUNTS} FROM events e WHERE {_RAW}{raw_filter} "
            "GROUP BY e.resource_id, e.tagset_id, e.price", (*window, *tag_args),
        ))  # fmt: skip
        for rid, tagset, price in conn.execute(  # prices beyond 63 bits: exact from their overflow rows
            f"SELECT e.resource_id, e.tagset_id, o.price FROM events e JOIN price_overflow o ON o.event_id = e.id "
            f"WHERE {_RAW} AND e.kind = 1{raw_filter}", (*window, *tag_args),
        ):  # fmt: skip
            out[(rid, tagset, -1)][2] += int(price)
    return out


def by_resource(conn: sqlite3.Connection, since: int, until: int, tag: str | None = None) -> dict[int, Row]:
    """resource id -> offers, unlocks, revenue, prices {price: [offers, unlocks, revenue]}, tagset."""
    h0, h1 = hour_span(since, until)
    out: dict[int, Row] = {}
    for (rid, tagset, price), (offers, unlocks, revenue) in _resource_rows(conn, h0, h1, tag_id(conn, tag)).items():
        entry = out.get(rid)
        if entry is None:
            entry = out[rid] = {"offers": 0, "unlocks": 0, "revenue": 0, "prices": {}, "tagset": tagset}
        entry["offers"] += offers
        entry["unlocks"] += unlocks
        entry["revenue"] += revenue
        entry["tagset"] = max(entry["tagset"], tagset)  # the newest tag set the resource was seen with
        slot = entry["prices"].setdefault(price, [0, 0, 0])
        slot[0] += offers
        slot[1] += unlocks
        slot[2] += revenue
    return out


def _order_key(by: str, min_offers: int) -> Callable[[Row], tuple[Any, ...]]:
    if by == "conversion":
        return lambda row: (row["offers"] >= min_offers, row["conversion"] or 0.0, row["revenue"])
    return lambda row: (row[by], row["revenue"])


def top_resources(
    conn: sqlite3.Connection, since: int, until: int, n: int | None = 10, by: str = "revenue", tag: str | None = None,
    min_offers: int = 20,
) -> list[Row]:
    """The top `n` resources (all with n=None) by revenue, unlocks, offers, payers or conversion
    (conversion ranks resources shown at least `min_offers` times first). Each row: resource, tags,
    prices (distinct, ascending), offers, unlocks, revenue, payers, conversion."""
    if by not in ORDERS:
        raise QueryError(f"order must be one of {list(ORDERS)}")
    h0, h1 = hour_span(since, until)
    rows = by_resource(conn, since, until, tag)
    entries = [{"id": rid, **_figures(e["offers"], e["unlocks"], e["revenue"]), "tagset": e["tagset"],
                "prices": sorted(e["prices"])} for rid, e in rows.items()]  # fmt: skip
    if by == "payers":  # needs every resource's distinct count: slower, computed for all
        counts = payer_counts(conn, SCOPE_RESOURCE, [e["id"] for e in entries if e["unlocks"]], h0, h1)
        for entry in entries:
            entry["payers"] = counts.get(entry["id"], 0)
    entries.sort(key=lambda e: e["id"])
    entries.sort(key=_order_key(by, min_offers), reverse=True)
    chosen = entries if n is None else entries[:n]
    if by != "payers":
        counts = payer_counts(conn, SCOPE_RESOURCE, [e["id"] for e in chosen if e["unlocks"]], h0, h1)
        for entry in chosen:
            entry["payers"] = counts.get(entry["id"], 0)
    paths = _names(conn, "resources", "path", [e["id"] for e in chosen])
    tags = _tagset_names(conn, [e["tagset"] for e in chosen])
    return [{"resource": paths[e["id"]], "tags": tags.get(e["tagset"], {}), "prices": e["prices"],
             **{k: e[k] for k in ("offers", "unlocks", "revenue", "payers", "conversion")}}
            for e in chosen]  # fmt: skip


# ------------------------------------------------------------------ tags


def by_tag(
    conn: sqlite3.Connection, since: int, until: int, key: str | None = None, n: int | None = None
) -> list[Row]:
    """Per tag (key, value): offers, unlocks, revenue, payers, conversion; ordered by key, then
    revenue. `key` keeps one tag key; `n` keeps the top n values (by revenue) of each key."""
    h0, h1 = hour_span(since, until)
    d0, d1, edges = _days(h0, h1)
    totals: dict[int, list[int]] = {}

    def add(rows: sqlite3.Cursor) -> None:
        for tid, offers, unlocks, hi, lo in rows:
            slot = totals.setdefault(tid, [0, 0, 0])
            slot[0] += offers
            slot[1] += unlocks
            slot[2] += _money(hi, lo)

    if d0 < d1:
        add(conn.execute("SELECT tag_id, SUM(offers), SUM(unlocks), SUM(rev_hi), SUM(rev_lo) FROM daily_tag "
                         "WHERE day >= ? AND day < ? GROUP BY tag_id", (d0, d1)))  # fmt: skip
    for window in _windows(conn, edges):
        add(conn.execute(f"SELECT tt.tag_id, {_RAW_COUNTS} FROM events e {_WITH_TAGS} WHERE {_RAW} GROUP BY tt.tag_id",
                         window))  # fmt: skip
        for tid, price in conn.execute(
            f"SELECT tt.tag_id, o.price FROM events e {_WITH_TAGS} "
            f"JOIN price_overflow o ON o.event_id = e.id WHERE {_RAW} AND e.kind = 1", window,
        ):  # fmt: skip
            totals[tid][2] += int(price)
    names = {tid: (k, v) for tid, k, v in conn.execute("SELECT id, key, value FROM tags")}
    rows = [{"key": names[tid][0], "value": names[tid][1], "id": tid, **_figures(*t)} for tid, t in totals.items()
            if key is None or names[tid][0] == key]  # fmt: skip
    rows.sort(key=lambda r: (r["key"], -r["revenue"], -r["unlocks"], r["value"]))
    if n is not None:
        kept: list[Row] = []
        seen: dict[str, int] = {}
        for row in rows:
            seen[row["key"]] = seen.get(row["key"], 0) + 1
            if seen[row["key"]] <= n:
                kept.append(row)
        rows = kept
    counts = payer_counts(conn, SCOPE_TAG, [r["id"] for r in rows if r["unlocks"]], h0, h1)
    out: list[Row] = []
    for row in rows:
        tid = row.pop("id")
        out.append({"key": row["key"], "value": row["value"], **_figures(row["offers"], row["unlocks"], row["revenue"],
                                                                         counts.get(tid, 0))})  # fmt: skip
    return out


def price_comparison(conn: sqlite3.Connection, tag: str, since: int, until: int) -> Row:
    """Resources sharing one tag value side by side: per resource and price (a resource whose
    price changed has a row per price) offers, unlocks, revenue, conversion and revenue per offer
    shown; and the same per price level across those resources."""
    key, value = parse_tag(tag)
    h0, h1 = hour_span(since, until)
    rows = _resource_rows(conn, h0, h1, tag_id(conn, (key, value)))
    per: dict[tuple[int, int], list[int]] = {}
    for (rid, _tagset, price), (offers, unlocks, revenue) in rows.items():
        slot = per.setdefault((rid, price), [0, 0, 0])
        slot[0] += offers
        slot[1] += unlocks
        slot[2] += revenue
    paths = _names(conn, "resources", "path", [rid for rid, _ in per])
    resources: list[Row] = []
    levels: dict[int, tuple[set[int], list[int]]] = {}  # price -> (resource ids, [offers, unlocks, revenue])
    for (rid, price), (offers, unlocks, revenue) in per.items():
        resources.append({"resource": paths[rid], "price": price, **_figures(offers, unlocks, revenue),
                          "revenue_per_offer": revenue // offers if offers else None})  # fmt: skip
        ids, level = levels.setdefault(price, (set(), [0, 0, 0]))
        ids.add(rid)
        level[0] += offers
        level[1] += unlocks
        level[2] += revenue
    resources.sort(key=lambda r: (-r["price"], -r["revenue"], r["resource"]))
    by_price = [{"price": price, "resources": len(ids), **_figures(offers, unlocks, revenue),
                 "revenue_per_offer": revenue // offers if offers else None}
                for price, (ids, (offers, unlocks, revenue)) in sorted(levels.items(), reverse=True)]  # fmt: skip
    return {"tag": f"{key}:{value}", "resources": resources, "by_price": by_price}


# ------------------------------------------------------------------ everything the dashboard shows


def dashboard(
    conn: sqlite3.Connection, bucket: str, since: int, until: int, tag: str | None = None, top: int = 10,
    tags_per_key: int = 12,
) -> Row:
    """All of the dashboard's figures in one read transaction (a consistent snapshot)."""
    conn.execute("BEGIN")
    try:
        h0, h1 = hour_span(since, until)
        tags = by_tag(conn, since, until, n=tags_per_key)
        compare = tag
        if compare is None and tags:
            best = max(tags, key=lambda r: (r["revenue"], r["unlocks"]))
            compare = f"{best['key']}:{best['value']}"
        return {
            "range": {"since": h0 * HOUR, "until": h1 * HOUR, "bucket": bucket, "tag": tag},
            "summary": summary(conn, since, until, tag),
            "series": series(conn, bucket, since, until, tag),
            "top_resources": top_resources(conn, since, until, top, "revenue", tag),
            "tags": tags,
            "prices": price_comparison(conn, compare, since, until) if compare else None,
        }
    finally:
        conn.execute("COMMIT")


__all__ = [
    "BUCKETS", "QueryError", "bucket_floor", "buckets", "by_resource", "by_tag", "dashboard", "hour_span",
    "parse_tag", "payer_counts", "price_comparison", "series", "summary", "top_resources",
]  # fmt: skip
