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
  the dashboard show amounts as `0.0005 ETH` without being told (docs/amounts.md), and the
  publisher's `[economics]` prices (`eth_price`, `gas_price_gwei`; docs/economics.md);
- schema 2 (caps, passes and the cost of collection, docs/economics.md): `sales`, one row per
  unlock that is not a plain article sale (`SALE_PASS` a pass bought, `SALE_CAPPED` a read that cost
  less than its list price because of a cap, `SALE_PASS_READ` a read a pass covered), keyed by its
  event's id, with what was charged and the list price as revenue limbs and the cap or pass name
  (`labels`); an article sale has no row there (the common case costs nothing more). `gas`: one row
  per transaction the node's sender saw mined (claims, closes, defences, exact transfers), keyed by
  its hash, with gasUsed and effectiveGasPrice (wei; the product is summed in Python, exactly).

Migrations: `open_database` creates schema 1 (`SCHEMA`, every statement `CREATE ... IF NOT
EXISTS`), then applies each of `MIGRATIONS` above the file's `meta.schema` in order and records the
new version, in one transaction each; a file from a newer release is refused. The statements are
`IF NOT EXISTS` too, so a half-applied step is simply applied again. A read-only reader of an
older file (the report on a file no new node has opened) finds no schema 2 tables:
`has_table` says so and the queries answer empty figures. Days and hours are UTC.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from channel_node.amounts import Asset, Display, with_display
from channel_node.errors import ConfigError

OFFER, UNLOCK = 0, 1  # events.kind
LIMB = 40
MASK = (1 << LIMB) - 1
INT63 = 1 << 63  # prices from here on are stored as -1 with the exact text in price_overflow
PRICE_LIMIT = 1 << 96  # prices from here on are refused
HOUR, DAY = 3600, 86400
SCOPE_ALL, SCOPE_RESOURCE, SCOPE_TAG = 0, 1, 2  # payer_sets.scope: whole site, per resource, per tag
SALE_ARTICLE, SALE_PASS, SALE_CAPPED, SALE_PASS_READ = 0, 1, 2, 3  # sales.sale
SALE_KINDS = {"article": SALE_ARTICLE, "pass": SALE_PASS, "capped": SALE_CAPPED, "pass_read": SALE_PASS_READ}
GAS_CLAIM, GAS_CLOSE, GAS_DEFENCE, GAS_TRANSFER = 0, 1, 2, 3  # gas.kind
GAS_KINDS = {"claim": GAS_CLAIM, "close": GAS_CLOSE, "defence": GAS_DEFENCE, "transfer_authorization": GAS_TRANSFER}
SCHEMA_VERSION = 2

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

# version -> the statements that bring a file of the version before up to it
MIGRATIONS: dict[int, str] = {
    2: """
CREATE TABLE IF NOT EXISTS labels (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sales (
    event_id INTEGER PRIMARY KEY, at INTEGER NOT NULL, sale INTEGER NOT NULL, label_id INTEGER NOT NULL,
    channel_id INTEGER NOT NULL, price_hi INTEGER NOT NULL, price_lo INTEGER NOT NULL,
    list_hi INTEGER NOT NULL, list_lo INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sales_by_time ON sales (at, sale);
CREATE TABLE IF NOT EXISTS gas (
    tx_hash BLOB PRIMARY KEY, at INTEGER NOT NULL, kind INTEGER NOT NULL, gas_used INTEGER NOT NULL,
    gas_price TEXT NOT NULL, rows INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS gas_by_time ON gas (at);
""",
}
if sorted(MIGRATIONS) != list(range(2, SCHEMA_VERSION + 1)):  # pragma: no cover (a version without its step)
    raise ImportError("insights.schema.MIGRATIONS must hold every version from 2 to SCHEMA_VERSION")


class SchemaTooNew(ConfigError, sqlite3.DatabaseError):
    """An insights file written by a newer release than this one (the configuration names a file
    this release cannot write)."""


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
    """The write connection to an insights database, created with the whole schema if new and
    migrated to `SCHEMA_VERSION` if older."""
    db = connect(path)
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '1')")
    migrate(db)
    return db


def schema_version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    return int(row[0]) if row else 1


def migrate(db: sqlite3.Connection) -> None:
    """Brings the file up to `SCHEMA_VERSION`, one version per transaction."""
    current = schema_version(db)
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(f"insights schema {current} is newer than this channel-node knows ({SCHEMA_VERSION})")
    for version in range(current + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(version),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def write_economics(db: sqlite3.Connection, eth_price: str | None, gas_price_gwei: str | None) -> None:
    """Records the publisher's `[economics]` prices (decimal text; None removes one), so the
    report converts gas into the asset without being told (docs/economics.md)."""
    for key, value in (("eth_price", eth_price), ("gas_price_gwei", gas_price_gwei)):
        if value is None:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def read_economics(db: sqlite3.Connection) -> dict[str, str]:
    """What `write_economics` recorded: {"eth_price": ..., "gas_price_gwei": ...}, either absent."""
    try:
        return dict(db.execute("SELECT key, value FROM meta WHERE key IN ('eth_price', 'gas_price_gwei')").fetchall())
    except sqlite3.OperationalError:
        return {}


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
    "DAY", "GAS_CLAIM", "GAS_CLOSE", "GAS_DEFENCE", "GAS_KINDS", "GAS_TRANSFER", "HOUR", "INT63", "LIMB", "MASK",
    "MIGRATIONS", "OFFER", "PRICE_LIMIT", "SALE_ARTICLE", "SALE_CAPPED", "SALE_KINDS", "SALE_PASS", "SALE_PASS_READ",
    "SCHEMA", "SCHEMA_VERSION", "SCOPE_ALL", "SCOPE_RESOURCE", "SCOPE_TAG", "UNLOCK", "SchemaTooNew", "asset_of_file",
    "connect", "has_table", "migrate", "open_database", "read_asset", "read_economics", "schema_version", "split",
    "week_of", "write_asset", "write_economics",
]  # fmt: skip
