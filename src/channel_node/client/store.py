"""The reader wallet's local state: one SQLite file (mode 0600) holding its channels, the per-channel
voucher keys, the `exact` authorizations it signed, a spending ledger and the blocked sites.

Amounts are decimal TEXT (uint256-safe) and Python ints in memory, never floats. Every method that
writes commits before it returns (WAL, `synchronous=FULL`), so the wallet can let a signature leave
the process only after the write that records it is durable. `signed` (the highest voucher amount
ever signed on a channel) never decreases: a lower value is refused here, not only by the caller.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address

from channel_node.errors import StateError
from channel_node.signing import ChannelConfig

#: The ledger's durable part: (received, lost, pending as (payment id, price, resource, once) tuples).
LedgerRow = tuple[int, int, tuple[tuple[str, int, str, bool], ...]]

SCHEMA_VERSION = 2  # 2: the ledger columns (received, lost, pending); a version 1 file is migrated

# Channel statuses. Only `open` channels are paid from.
OPENING = "opening"  # the row (and its voucher key) is written before the deposit is sent
OPEN = "open"
EXHAUSTED = "exhausted"  # at the deposit cap: no more payments; close it to get the rest back
CLOSING = "closing"  # a payer's close is pending on chain
SETTLED = "settled"
BLOCKED = "blocked"  # the server misbehaved on it
ORPHANED = "orphaned"  # found on chain after the database was lost: no voucher key, close it
FAILED = "failed"  # the opening deposit never made it on chain

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS channels (
    channel_id   TEXT PRIMARY KEY,          -- 0x + 64 hex
    chain_id     INTEGER NOT NULL,
    contract     TEXT NOT NULL,             -- checksum address
    payer        TEXT NOT NULL,
    signer       TEXT NOT NULL,
    receiver     TEXT NOT NULL,
    token        TEXT NOT NULL,             -- zero address for ETH
    close_delay  INTEGER NOT NULL,
    salt         TEXT NOT NULL,
    voucher_key  BLOB,                      -- NULL for channels recovered from chain logs
    deposited    TEXT NOT NULL DEFAULT '0',
    signed       TEXT NOT NULL DEFAULT '0', -- highest amount ever signed, never decreases
    signature    BLOB,                      -- the voucher for `signed`
    charged      TEXT NOT NULL DEFAULT '0', -- the server's charged total, as last reported
    acknowledged INTEGER NOT NULL DEFAULT 0,-- the server knows the channel: vouchers omit the config
    last_receipt TEXT,                      -- JSON of the last PAYMENT-RESPONSE
    status       TEXT NOT NULL,
    close_deadline INTEGER,
    created_at   INTEGER NOT NULL,
    received     TEXT,                      -- what delivered content cost (NULL: as charged, for old rows)
    lost         TEXT NOT NULL DEFAULT '0', -- charged for content never received (the site misbehaved)
    pending      TEXT NOT NULL DEFAULT '[]', -- JSON: vouchers sent whose outcome is open (client/ledger.py)
    receiver_authorizer TEXT NOT NULL DEFAULT '0x0000000000000000000000000000000000000000'
);
CREATE INDEX IF NOT EXISTS channels_by_terms ON channels (chain_id, contract, receiver, token, status);
CREATE TABLE IF NOT EXISTS purchases (
    channel_id TEXT NOT NULL,
    resource   TEXT NOT NULL,              -- a path bought once (`once: true`) on this channel
    PRIMARY KEY (channel_id, resource)
);
CREATE TABLE IF NOT EXISTS channel_sites (
    channel_id TEXT PRIMARY KEY,           -- a channel pays one site: its vouchers go nowhere else
    site       TEXT NOT NULL               -- the URL's host[:port] that first paid from it
);
CREATE TABLE IF NOT EXISTS ledger (
    site  TEXT NOT NULL,                   -- the URL's host[:port]
    day   TEXT NOT NULL,                   -- UTC date, YYYY-MM-DD, or a month, YYYY-MM (in the policy time zone)
    spent TEXT NOT NULL,                   -- what this site's requests cost that day (or month): see SpendEntry
    PRIMARY KEY (site, day)
);
CREATE TABLE IF NOT EXISTS site_caps (
    site      TEXT NOT NULL,               -- the URL's host[:port]
    name      TEXT NOT NULL,               -- the cap's name, as the site's receipts name it
    cap       TEXT NOT NULL,               -- base units
    paid      TEXT NOT NULL,               -- the site's figure toward the cap, as its last receipt stated it
    period    TEXT NOT NULL,               -- day | week | month | <N>d
    resets_at INTEGER,                     -- unix time the period ends (or room frees up)
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (site, name)
);
CREATE TABLE IF NOT EXISTS site_passes (
    site      TEXT NOT NULL,
    name      TEXT NOT NULL,               -- a pass this wallet bought there
    until     INTEGER NOT NULL,            -- unix time it ends, as the receipt stated it
    PRIMARY KEY (site, name)
);
CREATE TABLE IF NOT EXISTS site_flags (
    site      TEXT NOT NULL,
    flag      TEXT NOT NULL,               -- 'cap_claims': its receipts claimed a full cap and charged anyway
    reason    TEXT NOT NULL,
    at        INTEGER NOT NULL,
    PRIMARY KEY (site, flag)
);
CREATE TABLE IF NOT EXISTS site_display (
    site      TEXT PRIMARY KEY,
    display   TEXT NOT NULL                -- JSON: the site's extra.display, as last offered (for people only)
);
CREATE TABLE IF NOT EXISTS exact_payments (
    nonce        TEXT PRIMARY KEY,          -- 0x + 64 hex: the authorization's identity (random, never reused)
    chain_id     INTEGER NOT NULL,
    token        TEXT NOT NULL,             -- checksum address of the EIP-3009 token
    payer        TEXT NOT NULL,             -- the main account (authorization.from)
    pay_to       TEXT NOT NULL,             -- authorization.to
    value        TEXT NOT NULL,             -- exactly the offer's amount
    valid_before INTEGER NOT NULL,          -- unix time: the token refuses it from then on
    site         TEXT,                      -- the URL's host[:port]
    url          TEXT NOT NULL,
    day          TEXT NOT NULL,             -- the UTC day its value was counted as spent
    header       TEXT NOT NULL,             -- the PAYMENT-SIGNATURE value, as sent
    status       TEXT NOT NULL,             -- client/exact.py: signed | paid | refused | confirmed | used | unused
    tx_hash      TEXT,                      -- the receipt's transaction
    receipt      TEXT,                      -- JSON of the PAYMENT-RESPONSE
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS exact_by_status ON exact_payments (status, valid_before);
CREATE TABLE IF NOT EXISTS blocked (
    kind   TEXT NOT NULL,                  -- 'site' or 'receiver'
    value  TEXT NOT NULL,
    reason TEXT NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);
"""

_COLUMNS = (
    "channel_id, chain_id, contract, payer, signer, receiver, token, close_delay, salt, deposited, signed,"
    " signature, charged, acknowledged, last_receipt, status, close_deadline, created_at, receiver_authorizer,"
    " voucher_key IS NOT NULL AS has_key, received, lost, pending, counted"
)

_LEDGER_COLUMNS = (("received", "TEXT"), ("lost", "TEXT NOT NULL DEFAULT '0'"), ("pending", "TEXT NOT NULL DEFAULT '[]'"))


@dataclass(frozen=True)
class SpendEntry:
    """A change to what the spending ledger counts (docs/security.md, "The reader's budgets"): for
    `site`, on `day` (UTC) and in `month` (the policy's time zone; None: no month is counted), by
    `amount` (negative: a receipt charged less than was counted), and the channel's new `counted`."""

    site: str | None
    day: str
    month: str | None
    amount: int
    counted: int


@dataclass(frozen=True)
class SiteCap:
    """A site's cap as its last receipt stated it: `paid` toward `cap` this period, which ends at
    `resets_at` (None: not stated)."""

    site: str
    name: str
    cap: int
    paid: int
    period: str
    resets_at: int | None
    seen_at: int


class WalletStoreError(StateError):
    """The wallet database refused a write (an invariant would break) or belongs to another account."""


class ExactLimitExceeded(WalletStoreError):
    """A daily limit refused an `exact` authorization inside the transaction that would record it."""


# An `exact` authorization's statuses (client/exact.py): `signed` - recorded, sent or about to be,
# outcome unknown; `paid` - the site's receipt says it settled; `refused` - the site answered without
# settling (the authorization stays valid until valid_before: still spent); `confirmed` - the
# receipt's transaction carries its transfer on chain; `used` / `unused` - reconciled on chain after
# valid_before (unused: its value is no longer counted as spent).
EXACT_SIGNED = "signed"
EXACT_PAID = "paid"
EXACT_REFUSED = "refused"
EXACT_CONFIRMED = "confirmed"
EXACT_USED = "used"
EXACT_UNUSED = "unused"

_EXACT_COLUMNS = (
    "nonce, chain_id, token, payer, pay_to, value, valid_before, site, url, day, header, status, tx_hash, receipt, created_at"
)


@dataclass(frozen=True)
class ExactRecord:
    """One `exact` authorization this wallet signed (what it may owe until valid_before)."""

    nonce: bytes
    chain_id: int
    token: str
    payer: str
    pay_to: str
    value: int
    valid_before: int
    site: str | None
    url: str
    day: str
    header: str
    status: str = EXACT_SIGNED
    tx_hash: bytes | None = None
    receipt: dict[str, Any] | None = None
    created_at: int = 0

    @property
    def nonce_hex(self) -> str:
        return "0x" + self.nonce.hex()


def _exact_record(row: sqlite3.Row) -> ExactRecord:
    return ExactRecord(
        nonce=bytes.fromhex(row["nonce"][2:]), chain_id=row["chain_id"], token=row["token"], payer=row["payer"],
        pay_to=row["pay_to"], value=int(row["value"]), valid_before=row["valid_before"], site=row["site"], url=row["url"],
        day=row["day"], header=row["header"], status=row["status"],
        tx_hash=bytes.fromhex(row["tx_hash"][2:]) if row["tx_hash"] else None,
        receipt=json.loads(row["receipt"]) if row["receipt"] else None, created_at=row["created_at"],
    )  # fmt: skip


@dataclass(frozen=True)
class ChannelRecord:
    """One channel as the wallet knows it. The voucher key is deliberately not part of it, so a
    record can be logged or printed; `WalletStore.voucher_key` reads the key when signing."""

    channel_id: bytes
    chain_id: int
    contract: str
    config: ChannelConfig
    deposited: int
    signed: int
    signature: bytes | None
    charged: int
    acknowledged: bool
    last_receipt: dict[str, Any] | None
    status: str
    close_deadline: int | None
    created_at: int
    has_key: bool
    # The ledger's durable part (client/ledger.py): what delivered content cost, what was charged
    # without being received, and the vouchers sent whose outcome is open (payment id, price,
    # resource, once).
    received: int = 0
    lost: int = 0
    pending: tuple[tuple[str, int, str, bool], ...] = ()
    # What the spending ledger counts for this channel (docs/security.md, "The reader's budgets"):
    # `signed`, less what receipts charged below the price signed for (a cap, a pass).
    counted: int = 0

    @property
    def hex_id(self) -> str:
        return "0x" + self.channel_id.hex()

    @property
    def receiver(self) -> str:
        return to_checksum_address(self.config.receiver)

    @property
    def unsigned_deposit(self) -> int:
        """Deposit not yet promised to the receiver by any voucher."""
        return self.deposited - self.signed


def _hex_id(channel: bytes) -> str:
    return "0x" + bytes(channel).hex()


def _record(row: sqlite3.Row) -> ChannelRecord:
    config = ChannelConfig.create(
        payer=row["payer"],
        signer=row["signer"],
        receiver=row["receiver"],
        token=row["token"],
        close_delay=row["close_delay"],
        salt=int(row["salt"]),
        receiver_authorizer=row["receiver_authorizer"],
    )
    return ChannelRecord(
        channel_id=bytes.fromhex(row["channel_id"][2:]),
        chain_id=row["chain_id"],
        contract=row["contract"],
        config=config,
        deposited=int(row["deposited"]),
        signed=int(row["signed"]),
        signature=bytes(row["signature"]) if row["signature"] is not None else None,
        charged=int(row["charged"]),
        acknowledged=bool(row["acknowledged"]),
        last_receipt=json.loads(row["last_receipt"]) if row["last_receipt"] else None,
        status=row["status"],
        close_deadline=row["close_deadline"],
        created_at=row["created_at"],
        has_key=bool(row["has_key"]),
        received=int(row["received"]) if row["received"] is not None else int(row["charged"]),
        lost=int(row["lost"]),
        pending=tuple((str(p), int(a), str(r), bool(o)) for p, a, r, o in json.loads(row["pending"])),
        counted=int(row["counted"]) if row["counted"] is not None else int(row["signed"]),
    )


def _amount(value: int, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int):  # a float here is a bug upstream
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return str(value)


class WalletStore:
    """Synchronous SQLite access for one wallet; use it from one thread (the event loop's)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            # Created 0600 before SQLite touches it: it holds voucher keys. SQLite gives its -wal and
            # -shm files the database file's permissions.
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            os.close(fd)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._tx():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            columns = {row["name"] for row in self._db.execute("PRAGMA table_info(channels)")}
            if "receiver_authorizer" not in columns:  # a wallet from before the receiver authorizer
                self._db.execute(
                    "ALTER TABLE channels ADD COLUMN receiver_authorizer TEXT NOT NULL "
                    "DEFAULT '0x0000000000000000000000000000000000000000'"
                )
            if "counted" not in columns:  # a wallet from before caps: it counts what it signed
                self._db.execute("ALTER TABLE channels ADD COLUMN counted TEXT")
            exact_columns = {row["name"] for row in self._db.execute("PRAGMA table_info(exact_payments)")}
            if "month" not in exact_columns:
                self._db.execute("ALTER TABLE exact_payments ADD COLUMN month TEXT")
            version = self._meta("schema_version")
            if version is not None and int(version) == 1:
                # Version 1 had no ledger columns: old rows count what was charged as received.
                have = {r["name"] for r in self._db.execute("PRAGMA table_info(channels)")}
                for name, kind in _LEDGER_COLUMNS:
                    if name not in have:
                        self._db.execute(f"ALTER TABLE channels ADD COLUMN {name} {kind}")
                version = None
            if version is None:
                self._set_meta("schema_version", str(SCHEMA_VERSION))
            elif int(version) != SCHEMA_VERSION:
                raise WalletStoreError(f"wallet database schema {version} is not {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> WalletStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WalletStore({str(self.path)!r})"

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed (durably) on exit, rolled back on an exception."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # ------------------------------------------------------------------ account

    @property
    def account(self) -> str | None:
        """The main account (checksum address) this wallet pays from."""
        return self._meta("account")

    def bind_account(self, address: str) -> None:
        """Pins the database to one main account: its channels' payer is that account, so another key
        could neither top them up nor close them."""
        address = to_checksum_address(address)
        with self._tx():
            current = self._meta("account")
            if current is None:
                self._set_meta("account", address)
            elif current != address:
                raise WalletStoreError(f"this wallet database belongs to {current}, not {address}")

    # ------------------------------------------------------------------ channels

    def insert_channel(
        self,
        channel: bytes,
        chain_id: int,
        contract: str,
        config: ChannelConfig,
        voucher_key: bytes | None,
        status: str,
        deposited: int = 0,
        charged: int = 0,
    ) -> ChannelRecord:
        with self._tx() as db:
            db.execute(
                "INSERT INTO channels (channel_id, chain_id, contract, payer, signer, receiver, token, close_delay,"
                " salt, voucher_key, deposited, charged, status, created_at, receiver_authorizer)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    _hex_id(channel), chain_id, to_checksum_address(contract), to_checksum_address(config.payer),
                    to_checksum_address(config.signer), to_checksum_address(config.receiver),
                    to_checksum_address(config.token), config.close_delay, str(config.salt), voucher_key,
                    _amount(deposited, "deposited"), _amount(charged, "charged"), status, int(time.time()),
                    to_checksum_address(config.receiver_authorizer),
                ),
            )  # fmt: skip
        record = self.channel(channel)
        assert record is not None  # the row this method just inserted
        return record

    def channel(self, channel: bytes) -> ChannelRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM channels WHERE channel_id = ?", (_hex_id(channel),)).fetchone()
        return None if row is None else _record(row)

    def channels(self, status: str | None = None) -> list[ChannelRecord]:
        if status is None:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM channels ORDER BY created_at, rowid").fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM channels WHERE status = ? ORDER BY created_at, rowid", (status,)
            ).fetchall()
        return [_record(r) for r in rows]

    def open_channels(self, chain_id: int, contract: str, receiver: str, token: str) -> list[ChannelRecord]:
        """Open channels with a voucher key for these terms, newest first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM channels WHERE chain_id = ? AND contract = ? AND receiver = ? AND token = ?"
            " AND status = ? AND voucher_key IS NOT NULL ORDER BY created_at DESC, rowid DESC",
            (chain_id, to_checksum_address(contract), to_checksum_address(receiver), to_checksum_address(token), OPEN),
        ).fetchall()
        return [_record(r) for r in rows]

    def count_channels(self) -> int:
        count: int = self._db.execute("SELECT COUNT(*) FROM channels").fetchone()[0]
        return count

    def voucher_key(self, channel: bytes) -> bytes | None:
        row = self._db.execute("SELECT voucher_key FROM channels WHERE channel_id = ?", (_hex_id(channel),)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def update_channel(
        self,
        channel: bytes,
        *,
        deposited: int | None = None,
        charged: int | None = None,
        acknowledged: bool | None = None,
        last_receipt: dict[str, Any] | None = None,
        status: str | None = None,
        close_deadline: int | None = None,
    ) -> None:
        """Everything but `signed`, which only `record_signature` and `raise_signed` move."""
        sets: list[str] = []
        args: list[object] = []
        if deposited is not None:
            sets.append("deposited = ?")
            args.append(_amount(deposited, "deposited"))
        if charged is not None:
            sets.append("charged = ?")
            args.append(_amount(charged, "charged"))
        if acknowledged is not None:
            sets.append("acknowledged = ?")
            args.append(int(acknowledged))
        if last_receipt is not None:
            sets.append("last_receipt = ?")
            args.append(json.dumps(last_receipt, separators=(",", ":")))
        if status is not None:
            sets.append("status = ?")
            args.append(status)
        if close_deadline is not None:
            sets.append("close_deadline = ?")
            args.append(close_deadline)
        if not sets:
            return
        with self._tx() as db:
            db.execute(f"UPDATE channels SET {', '.join(sets)} WHERE channel_id = ?", (*args, _hex_id(channel)))

    def _signed(self, channel: bytes) -> int:
        row = self._db.execute("SELECT signed FROM channels WHERE channel_id = ?", (_hex_id(channel),)).fetchone()
        if row is None:
            raise WalletStoreError(f"unknown channel {_hex_id(channel)}")
        return int(row[0])

    def record_signature(
        self, channel: bytes, amount: int, signature: bytes, site: str | None, day: str, spend: int,
        ledger: LedgerRow | None = None, *, month: str | None = None, counted: int | None = None,
    ) -> None:  # fmt: skip
        """Records a new voucher, what it spends and (when given) the ledger with the voucher's request
        pending, in one transaction. Called BEFORE the voucher is sent: a crash afterwards leaves the
        wallet knowing at least what the server may hold. Signing an amount again is refused: one
        total is signed once, so a restart never sends two different vouchers for it. `spend` is
        counted on `day` and (when given) `month`; `counted`: the channel's new counted figure
        (None: the amount signed)."""
        with self._tx() as db:
            current = self._signed(channel)
            if amount <= current and not (amount == current == 0):
                raise WalletStoreError(f"refusing to sign {amount} again or lower (signed is {current})")
            db.execute(
                "UPDATE channels SET signed = ?, signature = ? WHERE channel_id = ?",
                (_amount(amount, "amount"), bytes(signature), _hex_id(channel)),
            )
            if ledger is not None:
                self._write_ledger(channel, ledger)
            db.execute("UPDATE channels SET counted = ? WHERE channel_id = ?",
                       (_amount(amount if counted is None else counted, "counted"), _hex_id(channel)))  # fmt: skip
            if site is not None and spend:
                self._add_spend(site, day, spend)
                if month is not None:
                    self._add_spend(site, month, spend)

    def _write_ledger(self, channel: bytes, ledger: LedgerRow) -> None:
        received, lost, pending = ledger
        self._db.execute(
            "UPDATE channels SET received = ?, lost = ?, pending = ? WHERE channel_id = ?",
            (_amount(received, "received"), _amount(lost, "lost"),
             json.dumps([list(p) for p in pending], separators=(",", ":")), _hex_id(channel)),
        )  # fmt: skip

    def save_ledger(self, channel: bytes, ledger: LedgerRow, *, charged: int | None = None, receipt: dict[str, Any] | None = None,
                    purchase: str | None = None, status: str | None = None, spend: SpendEntry | None = None) -> None:  # fmt: skip
        """The ledger's durable part (what was received and lost, the pending vouchers), with the
        node's charged total, the receipt, a purchase and a change to what is counted as spent
        when they come with it: one transaction."""
        with self._tx() as db:
            self._write_ledger(channel, ledger)
            if spend is not None:
                db.execute("UPDATE channels SET counted = ? WHERE channel_id = ?", (_amount(spend.counted, "counted"), _hex_id(channel)))
                if spend.site is not None and spend.amount:
                    self._add_spend(spend.site, spend.day, spend.amount)
                    if spend.month is not None:
                        self._add_spend(spend.site, spend.month, spend.amount)
            if charged is not None:
                db.execute("UPDATE channels SET charged = ? WHERE channel_id = ?", (_amount(charged, "charged"), _hex_id(channel)))
            if receipt is not None:
                db.execute(
                    "UPDATE channels SET acknowledged = 1, last_receipt = ? WHERE channel_id = ?",
                    (json.dumps(receipt, separators=(",", ":")), _hex_id(channel)),
                )
            if purchase is not None:
                db.execute(
                    "INSERT OR IGNORE INTO purchases (channel_id, resource) VALUES (?, ?)", (_hex_id(channel), purchase)
                )
            if status is not None:
                db.execute("UPDATE channels SET status = ? WHERE channel_id = ?", (status, _hex_id(channel)))

    def raise_signed(self, channel: bytes, amount: int, signature: bytes) -> bool:
        """Adopts a higher voucher of ours that the server holds (a wallet restored from an old copy).
        A lower or equal amount changes nothing. Returns whether it changed."""
        with self._tx() as db:
            if amount <= self._signed(channel):
                return False
            db.execute(
                "UPDATE channels SET signed = ?, signature = ? WHERE channel_id = ?",
                (_amount(amount, "amount"), bytes(signature), _hex_id(channel)),
            )
            return True

    def record_receipt(self, channel: bytes, charged: int, receipt: dict[str, Any], purchase: str | None = None) -> None:
        """A checked receipt: the server's charged total, the receipt itself and, for a resource sold
        once, that this channel owns it now. One transaction."""
        with self._tx() as db:
            db.execute(
                "UPDATE channels SET charged = ?, acknowledged = 1, last_receipt = ? WHERE channel_id = ?",
                (_amount(charged, "charged"), json.dumps(receipt, separators=(",", ":")), _hex_id(channel)),
            )
            if purchase is not None:
                db.execute(
                    "INSERT OR IGNORE INTO purchases (channel_id, resource) VALUES (?, ?)", (_hex_id(channel), purchase)
                )

    # ------------------------------------------------------------------ which site a channel pays

    def channel_site(self, channel: bytes) -> str | None:
        row = self._db.execute("SELECT site FROM channel_sites WHERE channel_id = ?", (_hex_id(channel),)).fetchone()
        return None if row is None else row[0]

    def claim_channel(self, channel: bytes, site: str) -> str:
        """Binds an unbound channel to `site`; returns the site it is bound to (maybe another one)."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO channel_sites (channel_id, site) VALUES (?, ?)", (_hex_id(channel), site.lower()))
        bound = self.channel_site(channel)
        assert bound is not None  # the row exists: inserted above, or there before (OR IGNORE)
        return bound

    # ------------------------------------------------------------------ purchases

    def add_purchase(self, channel: bytes, resource: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO purchases (channel_id, resource) VALUES (?, ?)", (_hex_id(channel), resource))

    def purchased(self, channel: bytes, resource: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM purchases WHERE channel_id = ? AND resource = ?", (_hex_id(channel), resource)
        ).fetchone()
        return row is not None

    # ------------------------------------------------------------------ ledger

    def _add_spend(self, site: str, day: str, amount: int) -> None:
        row = self._db.execute("SELECT spent FROM ledger WHERE site = ? AND day = ?", (site, day)).fetchone()
        total = amount + (int(row[0]) if row else 0)
        self._db.execute(
            "INSERT INTO ledger (site, day, spent) VALUES (?, ?, ?) ON CONFLICT(site, day) DO UPDATE SET spent = excluded.spent",
            (site, day, str(total)),
        )

    def spent(self, day: str, site: str | None = None) -> int:
        """What was spent on `day` (YYYY-MM-DD, UTC) or in a month (YYYY-MM), for one site or (site
        None) in total: what requests cost as their receipts state it, the prices of those whose
        outcome is open, and vouchers signed for requests the site refused (docs/security.md, "The
        reader's budgets")."""
        if site is None:
            rows = self._db.execute("SELECT spent FROM ledger WHERE day = ?", (day,)).fetchall()
        else:
            rows = self._db.execute("SELECT spent FROM ledger WHERE day = ? AND site = ?", (day, site)).fetchall()
        return sum(int(r[0]) for r in rows)

    def sites_spent(self, period: str) -> dict[str, int]:
        """What each site cost on a day or in a month (`spent`'s keys), sites with nothing left out."""
        rows = self._db.execute("SELECT site, spent FROM ledger WHERE day = ?", (period,)).fetchall()
        return {r[0]: int(r[1]) for r in rows if int(r[1])}

    # ------------------------------------------------------------------ caps, passes, display forms (per site)

    def record_cap(self, cap: SiteCap) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO site_caps (site, name, cap, paid, period, resets_at, seen_at) VALUES (?,?,?,?,?,?,?)"
                " ON CONFLICT(site, name) DO UPDATE SET cap = excluded.cap, paid = excluded.paid, period = excluded.period,"
                " resets_at = excluded.resets_at, seen_at = excluded.seen_at",
                (cap.site, cap.name, _amount(cap.cap, "cap"), _amount(cap.paid, "paid"), cap.period, cap.resets_at, cap.seen_at),
            )

    def caps(self, site: str | None = None) -> list[SiteCap]:
        query, args = "SELECT site, name, cap, paid, period, resets_at, seen_at FROM site_caps", list[object]()
        if site is not None:
            query, args = query + " WHERE site = ?", [site]
        rows = self._db.execute(query + " ORDER BY site, name", args).fetchall()
        return [SiteCap(r[0], r[1], int(r[2]), int(r[3]), r[4], r[5], r[6]) for r in rows]

    def record_pass(self, site: str, name: str, until: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO site_passes (site, name, until) VALUES (?,?,?)"
                " ON CONFLICT(site, name) DO UPDATE SET until = MAX(until, excluded.until)",
                (site, name, int(until)),
            )

    def end_passes(self, site: str, names: tuple[str, ...], at: int) -> None:
        """The site charged a read these passes were held for: they are not believed past `at`."""
        with self._tx() as db:
            db.executemany("UPDATE site_passes SET until = MIN(until, ?) WHERE site = ? AND name = ?",
                           [(int(at), site, name) for name in names])  # fmt: skip

    def flag_site(self, site: str, flag: str, reason: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO site_flags (site, flag, reason, at) VALUES (?, ?, ?, ?)",
                       (site, flag, reason, int(time.time())))  # fmt: skip

    def site_flagged(self, site: str, flag: str) -> bool:
        return self._db.execute("SELECT 1 FROM site_flags WHERE site = ? AND flag = ?", (site, flag)).fetchone() is not None

    def passes(self, site: str | None = None) -> list[tuple[str, str, int]]:
        """(site, name, until) of the passes this wallet bought, latest end per name."""
        query, args = "SELECT site, name, until FROM site_passes", list[object]()
        if site is not None:
            query, args = query + " WHERE site = ?", [site]
        return [(r[0], r[1], int(r[2])) for r in self._db.execute(query + " ORDER BY site, name", args).fetchall()]

    def record_display(self, site: str, display: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO site_display (site, display) VALUES (?, ?) ON CONFLICT(site) DO UPDATE SET display = excluded.display",
                       (site, json.dumps(display, separators=(",", ":"))))  # fmt: skip

    def display(self, site: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT display FROM site_display WHERE site = ?", (site,)).fetchone()
        if row is None:
            return None
        found = json.loads(row[0])
        return found if isinstance(found, dict) else None

    # ------------------------------------------------------------------ exact payments (client/exact.py)

    def record_exact(
        self, payment: ExactRecord, *, per_site_limit: int | None = None, daily_limit: int | None = None,
        month: str | None = None, per_site_monthly_limit: int | None = None, monthly_limit: int | None = None,
    ) -> None:
        """Records a signed `exact` authorization and counts its value as spent today, in one
        transaction, BEFORE its header leaves the process: a restart knows every authorization that
        may be out there. The daily limits are checked inside the same transaction (another process
        sharing the file cannot slip a payment between the check and the write). A nonce is
        recorded once: a second insert is refused."""
        value = int(_amount(payment.value, "value"))
        with self._tx() as db:
            if payment.site is not None and per_site_limit is not None:
                spent = self.spent(payment.day, payment.site)
                if spent + value > per_site_limit:
                    raise ExactLimitExceeded(
                        f"paying {value} would bring today's spending on {payment.site} to {spent + value}, "
                        f"above the per-site daily limit {per_site_limit}"
                    )
            if daily_limit is not None:
                spent = self.spent(payment.day)
                if spent + value > daily_limit:
                    raise ExactLimitExceeded(
                        f"paying {value} would bring today's spending to {spent + value}, above the daily limit {daily_limit}"
                    )
            if month is not None and payment.site is not None and per_site_monthly_limit is not None:
                spent = self.spent(month, payment.site)
                if spent + value > per_site_monthly_limit:
                    raise ExactLimitExceeded(
                        f"paying {value} would bring this month's spending on {payment.site} to {spent + value}, "
                        f"above the per-site monthly budget {per_site_monthly_limit}"
                    )
            if month is not None and monthly_limit is not None:
                spent = self.spent(month)
                if spent + value > monthly_limit:
                    raise ExactLimitExceeded(
                        f"paying {value} would bring this month's spending to {spent + value}, above the monthly budget {monthly_limit}"
                    )
            if db.execute("SELECT 1 FROM exact_payments WHERE nonce = ?", (payment.nonce_hex,)).fetchone() is not None:
                raise WalletStoreError(f"authorization nonce {payment.nonce_hex} is already recorded")
            now = int(time.time())
            db.execute(
                "INSERT INTO exact_payments (nonce, chain_id, token, payer, pay_to, value, valid_before, site, url, day,"
                " header, status, created_at, updated_at, month) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    payment.nonce_hex, payment.chain_id, to_checksum_address(payment.token), to_checksum_address(payment.payer),
                    to_checksum_address(payment.pay_to), str(value), payment.valid_before, payment.site, payment.url,
                    payment.day, payment.header, payment.status, now, now, month,
                ),
            )  # fmt: skip
            if payment.site is not None and value:
                self._add_spend(payment.site, payment.day, value)
                if month is not None:
                    self._add_spend(payment.site, month, value)

    def exact_payment(self, nonce: bytes) -> ExactRecord | None:
        row = self._db.execute(f"SELECT {_EXACT_COLUMNS} FROM exact_payments WHERE nonce = ?", (_hex_id(nonce),)).fetchone()
        return None if row is None else _exact_record(row)

    def exact_payments(self, *statuses: str, site: str | None = None) -> list[ExactRecord]:
        """Recorded authorizations, oldest first: those in `statuses` (all when none), of `site` when given."""
        query, args = f"SELECT {_EXACT_COLUMNS} FROM exact_payments WHERE 1 = 1", list[object]()
        if statuses:
            query += f" AND status IN ({', '.join('?' * len(statuses))})"
            args.extend(statuses)
        if site is not None:
            query += " AND site = ?"
            args.append(site)
        return [_exact_record(r) for r in self._db.execute(query + " ORDER BY created_at, rowid", args).fetchall()]

    def update_exact(
        self, nonce: bytes, status: str, *, tx_hash: bytes | None = None, receipt: dict[str, Any] | None = None,
        unspend: bool = False,
    ) -> None:  # fmt: skip
        """Moves an authorization to `status` (with the receipt's transaction and the receipt). With
        `unspend` (the chain shows it can never be used: expired unused) its value is taken off the
        day it was counted on, once: a row already `unused` is left as it is."""
        with self._tx() as db:
            row = db.execute("SELECT status, value, site, day, month FROM exact_payments WHERE nonce = ?", (_hex_id(nonce),)).fetchone()
            if row is None:
                raise WalletStoreError(f"unknown authorization nonce {_hex_id(nonce)}")
            if row["status"] == EXACT_UNUSED:
                return  # final: its value was already given back
            sets, args = ["status = ?", "updated_at = ?"], [status, int(time.time())]
            if tx_hash is not None:
                sets.append("tx_hash = ?")
                args.append("0x" + tx_hash.hex())
            if receipt is not None:
                sets.append("receipt = ?")
                args.append(json.dumps(receipt, separators=(",", ":")))
            db.execute(f"UPDATE exact_payments SET {', '.join(sets)} WHERE nonce = ?", (*args, _hex_id(nonce)))
            if unspend and row["site"] is not None:
                self._add_spend(row["site"], row["day"], -int(row["value"]))
                if row["month"] is not None:
                    self._add_spend(row["site"], row["month"], -int(row["value"]))

    # ------------------------------------------------------------------ blocked sites

    def block(self, kind: str, value: str, reason: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO blocked (kind, value, reason, at) VALUES (?, ?, ?, ?) ON CONFLICT(kind, value) DO NOTHING",
                (kind, value.lower(), reason, int(time.time())),
            )

    def unblock(self, kind: str, value: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM blocked WHERE kind = ? AND value = ?", (kind, value.lower()))

    def receivers_blocked_with(self, site: str) -> list[str]:
        """The receivers blocked together with `site` (kind 'link', value 'site receiver')."""
        prefix = site.lower() + " "
        rows = self._db.execute("SELECT value FROM blocked WHERE kind = 'link'").fetchall()
        return [r[0][len(prefix):] for r in rows if r[0].startswith(prefix)]

    def blocked(self) -> list[tuple[str, str, str]]:
        """Every block: (kind, value, reason), sites and receivers."""
        rows = self._db.execute("SELECT kind, value, reason FROM blocked WHERE kind != 'link' ORDER BY at").fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def blocked_reason(self, kind: str, value: str) -> str | None:
        row = self._db.execute("SELECT reason FROM blocked WHERE kind = ? AND value = ?", (kind, value.lower())).fetchone()
        return None if row is None else row[0]


__all__ = [
    "BLOCKED",
    "EXACT_CONFIRMED",
    "EXACT_PAID",
    "EXACT_REFUSED",
    "EXACT_SIGNED",
    "EXACT_UNUSED",
    "EXACT_USED",
    "CLOSING",
    "EXHAUSTED",
    "FAILED",
    "OPEN",
    "OPENING",
    "ORPHANED",
    "SETTLED",
    "ChannelRecord",
    "ExactLimitExceeded",
    "ExactRecord",
    "SiteCap",
    "SpendEntry",
    "WalletStore",
    "WalletStoreError",
]
