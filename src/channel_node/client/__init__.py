"""The reader's side: a wallet that pays `channel`-scheme 402s from payment channels it opens,
keeps its state in a local SQLite file, and an aiohttp session (or client middleware) using it."""

from channel_node.client.session import (
    MIDDLEWARE_SUPPORTED,
    PayingSession,
    Result,
    channel_offer,
    pay_and_fetch,
    payment_middleware,
)
from channel_node.client.store import ChannelRecord, WalletStore, WalletStoreError
from channel_node.client.wallet import (
    ChainChannelInfo,
    CloseTicket,
    Finalized,
    OfferRejected,
    PaymentHeader,
    Policy,
    ServerMisbehaved,
    SiteBlocked,
    SpendingLimitExceeded,
    UnsupportedAsset,
    Wallet,
    WalletError,
    is_channel_deposit_code,
    site_of,
)

__all__ = [
    "MIDDLEWARE_SUPPORTED",
    "ChainChannelInfo",
    "ChannelRecord",
    "CloseTicket",
    "Finalized",
    "OfferRejected",
    "PayingSession",
    "PaymentHeader",
    "Policy",
    "Result",
    "ServerMisbehaved",
    "SiteBlocked",
    "SpendingLimitExceeded",
    "UnsupportedAsset",
    "Wallet",
    "WalletError",
    "WalletStore",
    "WalletStoreError",
    "channel_offer",
    "is_channel_deposit_code",
    "pay_and_fetch",
    "payment_middleware",
    "site_of",
]
