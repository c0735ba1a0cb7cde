"""The chain edge's names from before the split, kept importable from here.

`chain/` is split along its seams (docs/design.md, "Layers"): `contract.py` (ChannelDepositClient,
TxResult), `logs.py` (log types and decoding), `reverts.py` (ContractRevert and its decoding),
`accounts.py` (senders and the one fee, nonce and gas policy), `erc20.py` (Erc20Client), and
`ports.py` (the records shared with the consumer, OnChainChannel among them). New code imports from
those modules; this one only re-exports them.
"""

from __future__ import annotations

from channel_node.chain.accounts import (
    GAS_MARGIN_PERCENT,
    AddressLike,
    LocalKeySender,
    Sender,
    UnlockedSender,
)
from channel_node.chain.contract import BlockId, ChannelDepositClient, TxResult
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
    _checksum,  # noqa: F401 (re-exported: tests/chain/test_chain_client.py imports it from here)
    decode_log,
)
from channel_node.chain.ports import OnChainChannel
from channel_node.chain.reverts import (
    ContractRevert,
    _as_revert,  # noqa: F401 (re-exported: tests/chain/test_chain_client.py imports it from here)
    as_revert,
    decode_revert_data,
)
from channel_node.types import UINT256_MAX

__all__ = [
    "EVENT_TYPES",
    "GAS_MARGIN_PERCENT",
    "UINT256_MAX",
    "AddressLike",
    "BlockId",
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
    "as_revert",
    "decode_log",
    "decode_revert_data",
]
