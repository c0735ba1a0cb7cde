"""The reader's side: a wallet that pays `channel`-scheme 402s from payment channels it opens and
x402 `exact` 402s with EIP-3009 authorizations (client/exact.py), keeps its state in a local SQLite
file, and an aiohttp session (or client middleware) using it."""

from channel_node.client.exact import ExactPayer, SchemeOptions, choose_scheme, exact_payer
from channel_node.client.ledger import Ledger
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
    InsufficientFunds,
    OfferRejected,
    PaymentHeader,
    Policy,
    ServerMisbehaved,
    SiteBlocked,
    SiteSpending,
    SpendingLimitExceeded,
    UnsupportedAsset,
    Wallet,
    WalletError,
    is_channel_deposit_code,
    site_of,
    site_spending,
    trust_site,
)

__all__ = [
    "MIDDLEWARE_SUPPORTED",
    "ChainChannelInfo",
    "ChannelRecord",
    "CloseTicket",
    "ExactPayer",
    "Finalized",
    "InsufficientFunds",
    "Ledger",
    "OfferRejected",
    "PayingSession",
    "PaymentHeader",
    "Policy",
    "Result",
    "SchemeOptions",
    "ServerMisbehaved",
    "SiteBlocked",
    "SiteSpending",
    "SpendingLimitExceeded",
    "UnsupportedAsset",
    "Wallet",
    "WalletError",
    "WalletStore",
    "WalletStoreError",
    "channel_offer",
    "choose_scheme",
    "exact_payer",
    "is_channel_deposit_code",
    "pay_and_fetch",
    "payment_middleware",
    "site_of",
    "site_spending",
    "trust_site",
]
