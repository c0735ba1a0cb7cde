"""Durable state: a Store protocol, SQLite (default), PostgreSQL (several processes) and in-memory
implementations; `open_store` picks one from the `database` setting."""

from pathlib import Path

from channel_node.store.base import (
    OUTBOX_OPEN,
    TO_OUTBOX,
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
    Store,
    StoredChannel,
    StoreError,
    StoreLocked,
    StoreMismatch,
    authorization_key,
    exact_outbox_item,
    fulfilled,
    outbox_item,
    outbox_items,
    spending_lookup,
)
from channel_node.store.memory import MemoryStore
from channel_node.store.postgres import PostgresStore, is_postgres_url, public_dsn
from channel_node.store.sqlite import SQLiteStore


def store_for(database: Path | str, sqlite_synchronous: str = "full") -> Store:
    """The one place a `database` setting becomes a store (not yet opened): a `postgresql://` or
    `postgres://` URL is a PostgresStore, anything else an SQLite file."""
    if is_postgres_url(database):
        return PostgresStore(str(database))
    return SQLiteStore(Path(database), sqlite_synchronous)


def describe_database(database: Path | str) -> str:
    """A `database` setting as it may be shown (logs, errors, doctor, status): a path as is, a URL
    without its user, password or query (store/postgres.py:public_dsn)."""
    return public_dsn(str(database)) if is_postgres_url(database) else str(database)


__all__ = [
    "OUTBOX_OPEN",
    "TO_OUTBOX",
    "BlockRef",
    "Charge",
    "ChannelWrite",
    "Cursor",
    "ExactRecord",
    "ExactStatus",
    "ExactWrite",
    "OutboxItem",
    "OutboxKind",
    "OutboxRow",
    "OutboxStatus",
    "OutboxUpdate",
    "MemoryStore",
    "PaymentLookup",
    "PostgresStore",
    "Pin",
    "RecordOutcome",
    "SQLiteStore",
    "SpendingQuery",
    "StaleWrite",
    "Store",
    "StoreError",
    "StoreLocked",
    "StoreMismatch",
    "StoredChannel",
    "authorization_key",
    "describe_database",
    "exact_outbox_item",
    "fulfilled",
    "is_postgres_url",
    "outbox_item",
    "outbox_items",
    "public_dsn",
    "spending_lookup",
    "store_for",
]
