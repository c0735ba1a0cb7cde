"""The pure, synchronous channel rules: no asyncio, web3, sqlite or wall clock in here."""

from channel_node.core.channel import (
    Accepted,
    ChainClaim,
    ChainCloseRequested,
    ChainDeposit,
    ChainSettled,
    ChannelEvent,
    ChannelState,
    Effect,
    PaymentReceived,
    Reject,
    Rejected,
    transition,
)

__all__ = [
    "Accepted",
    "ChainClaim",
    "ChainCloseRequested",
    "ChainDeposit",
    "ChainSettled",
    "ChannelEvent",
    "ChannelState",
    "Effect",
    "PaymentReceived",
    "Reject",
    "Rejected",
    "transition",
]
