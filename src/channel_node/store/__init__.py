"""Durable state: a Store protocol, SQLite (default) and in-memory implementations."""

from channel_node.store.base import (
    OUTBOX_OPEN,
    BlockRef,
    Charge,
    ChannelWrite,
    Cursor,
    OutboxItem,
    OutboxRow,
    PaymentLookup,
    Pin,
    StaleWrite,
    Store,
    StoredChannel,
    StoreError,
    StoreLocked,
    StoreMismatch,
)
from channel_node.store.memory import MemoryStore
from channel_node.store.sqlite import SQLiteStore

__all__ = [
    "OUTBOX_OPEN",
    "BlockRef",
    "Charge",
    "ChannelWrite",
    "Cursor",
    "OutboxItem",
    "OutboxRow",
    "MemoryStore",
    "PaymentLookup",
    "Pin",
    "SQLiteStore",
    "StaleWrite",
    "Store",
    "StoreError",
    "StoreLocked",
    "StoreMismatch",
    "StoredChannel",
]
