"""The chain edge, split along its seams (docs/design.md, "Layers"): `contract` (the typed
ChannelDeposit client), `logs`, `reverts`, `erc20`, `accounts` (senders and the one fee, nonce and
gas policy), `ports` (what the edge shares with its consumer), `view`, `watcher` and `outbox` (the
sender of every transaction the core decided on)."""

from channel_node.chain.accounts import LocalKeySender, Sender, UnlockedSender
from channel_node.chain.contract import ChannelDepositClient, TxResult
from channel_node.chain.erc20 import Erc20Client
from channel_node.chain.logs import (
    EVENT_TYPES,
    ChannelClaimed,
    ChannelDeposited,
    ChannelEventLog,
    ChannelOpened,
    ChannelSettled,
    CloseRequested,
    PayoutDeferred,
    PendingWithdrawn,
    decode_log,
)
from channel_node.chain.ports import OnChainChannel
from channel_node.chain.reverts import ContractRevert, decode_revert_data

__all__ = [
    "EVENT_TYPES",
    "ChannelClaimed",
    "ChannelDeposited",
    "ChannelDepositClient",
    "ChannelEventLog",
    "ChannelOpened",
    "ChannelSettled",
    "CloseRequested",
    "ContractRevert",
    "Erc20Client",
    "LocalKeySender",
    "OnChainChannel",
    "PayoutDeferred",
    "PendingWithdrawn",
    "Sender",
    "TxResult",
    "UnlockedSender",
    "decode_log",
    "decode_revert_data",
]
