"""The insights database's format and setup: the DDL, the constants the rows are written in, and
the file's connections (WAL, synchronous=NORMAL: insights are analytics, not money; a power cut may
lose the last second of them, never a payment).

Schema (all compact integers):

- dictionaries: `resources` (path), `tags` (key, value), `tagsets` (one per distinct tag set, with
  its members in `tagset_tags`), `channels` (the 32-byte channel id: readers stay pseudonymous, the
  node knows nothing more about them);
- `events`: one row per offer or unlock, INTEGER columns only: `id` (in arrival order), `at` (unix
  seconds), `kind` (0 offer, 1 unlock), `resource_id`, `tagset_id`, `channel_id` (0 for offers),
  `price` (smallest unit). A price of 2**63 or more does not fit a SQLite INTEGER: the row holds
  -1 and `price_overflow(event_id, price)` holds the exact decimal text. Prices of 2**96 or more are
  refused (counted in the recorder's `stats["refused"]`): no price table holds such a thing;
- rollups, updated in the same transaction as the events they count (writer.py): `hourly` (the
  whole site), `hourly_tag` (per tag per hour), `daily_resource` (per day x resource x tag set x
  price), the same per week in `weekly_resource` (a year is ~52 rows per resource, not 365) and
  `daily_tag`. Revenue in a rollup is two limbs, `rev_hi * 2**40 + rev_lo` with `rev_lo < 2**40`,
  so a rollup row is exact up to 2**103 and SUM() over a year of rows cannot overflow;
- unique paying channels (payers.py): `hourly.payers` and `hourly_tag.payers` once an hour is
  over, `payer_sets` per closed day and `payer_sets_weekly` per closed week, and `days` / `weeks`
  marking which of those are up to date. `hourly.first_id/last_id` bound the event ids of each
  hour, so the scans over raw events need no index on `at`;
- `meta`: the schema version, and the asset the prices are in (`asset_symbol`, `asset_decimals`,
  `asset_address`, empty for ETH), written by the node when it opens the file so the report and
  the dashboard show amounts as `0.0005 ETH` without being told (docs/amounts.md).

There are no migrations yet: every statement is `CREATE ... IF NOT EXISTS`, so opening a file
written by any release so far (schema 1) is a no-op, and a new file gets the whole schema. Days and
hours are UTC.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from channel_node.amounts import Asset, Display, with_display

OFFER, UNLOCK = 0, 1  # events.kind
LIMB = 40
MASK = (1 << LIMB) - 1
INT63 = 1 << 63  # prices from here on are stored as -1 with the exact text in price_overflow
PRICE_LIMIT = 1 << 96  # prices from here on are refused
HOUR, DAY = 3600, 86400
SCOPE_ALL, SCOPE_RESOURCE, SCOPE_TAG = 0, 1, 2  # payer_sets.scope: whole site, per resource, per tag
SCHEMA_VERSION = 1

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


def open_database(path: str | Path) -> sqlite3.Connection:
    """The write connection to an insights database, created with the whole schema if new."""
    db = connect(path)
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    return db


def write_asset(db: sqlite3.Connection, asset: Asset) -> None:
    """Records the asset the prices are in (the node's; a later node's replaces it)."""
    rows = [("asset_symbol", asset.symbol), ("asset_decimals", str(asset.decimals)), ("asset_address", asset.address or "")]
    db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
    # Its display form (docs/amounts.md, "Display forms"), for the report and the dashboard: kept as
    # the offer writes it (wire/channel.py:display_extra); a node without one removes an older one.
    form = asset.display
    db.execute("DELETE FROM meta WHERE key LIKE 'asset_display_%'")
    if form is not None:
        shown = [("asset_display_symbol", form.symbol), ("asset_display_shown", str(form.shown))]
        if form.cents_below is not None:
            shown.append(("asset_display_cents_below", str(form.cents_below)))
        db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", shown)


def read_asset(db: sqlite3.Connection) -> Asset | None:
    """The asset `write_asset` recorded; None for a file without one (written before it was
    recorded) or with one that does not make an asset."""
    try:
        meta = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'asset_%'").fetchall())
    except sqlite3.OperationalError:  # no meta table: not an insights database of ours, or an empty one
        return None
    try:
        asset = Asset(meta["asset_symbol"], int(meta["asset_decimals"]), meta.get("asset_address") or None)
    except (KeyError, ValueError):
        return None
    if "asset_display_symbol" in meta:
        try:
            cents = meta.get("asset_display_cents_below")
            form = Display(meta["asset_display_symbol"], None if cents is None else int(cents), int(meta["asset_display_shown"]))
            asset = with_display(asset, form)
        except (KeyError, ValueError):
            pass  # a form that does not make one: the asset's own unit
    return asset



def asset_of_file(path: str | Path) -> Asset | None:
    """The asset an insights file records (read-only); None when it records none."""
    try:
        db = connect(path, readonly=True)
    except sqlite3.Error:
        return None
    try:
        return read_asset(db)
    except sqlite3.Error:
        return None
    finally:
        db.close()


__all__ = [
    "DAY", "HOUR", "INT63", "LIMB", "MASK", "OFFER", "PRICE_LIMIT", "SCHEMA", "SCHEMA_VERSION", "SCOPE_ALL",
    "SCOPE_RESOURCE", "SCOPE_TAG", "UNLOCK", "connect", "open_database", "read_asset", "split", "week_of",
    "asset_of_file", "write_asset",
]  # fmt: skip
