"""A channel's four figures on chain: the one declaration of that record.

The core's `ContractReadReset` carries it, the chain edge decodes `getChannel` into it
(`chain/ports.OnChainChannel` is this class; `ChainChannel` adds the block it was read at), and the
reader's wallet extends it (`client.wallet.ChainChannelInfo`). It lives in `core/` because that is
the lowest layer that needs it: chain and client may both import core, and core imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass

from channel_node.core.clocks import ChainTime


@dataclass(frozen=True, slots=True)
class ChainFigures:
    """`getChannel` decoded. A channel that was never funded reads as all zeros."""

    deposited: int
    claimed: int
    close_deadline: ChainTime | None  # the finalization time while a payer's close is pending
    settled: bool

    @property
    def exists(self) -> bool:
        return self.deposited > 0  # deposits of zero revert, so a funded channel is never 0

    @property
    def closing(self) -> bool:
        return self.close_deadline is not None

    @property
    def unclaimed(self) -> int:
        return self.deposited - self.claimed


__all__ = ["ChainFigures"]
