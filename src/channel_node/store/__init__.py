"""Durable state: a Store protocol, SQLite (default) and in-memory implementations."""

from channel_node.store.base import (
    Charge,
    ChannelWrite,
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
    "Charge",
    "ChannelWrite",
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
