"""The chain boundary's translation: what the chain says, as the core's inputs. Pure functions.

A confirmed contract log becomes a `ContractReceive*` carrying the log's transaction hash and block
number (`state_change`); a direct read of a channel's figures becomes either the monotone inputs
that can only raise them (`figures_inputs`, a first voucher or a top-up check) or the one input that
may lower them (`reset`, after a reorg: docs/security.md, "Reorganisations"). Totals are absolute,
so a replayed log or a repeated read changes nothing.

It lives in `node/` (the edge that joins chain and core) rather than in `chain/` so that the chain
side keeps knowing nothing of its consumer's vocabulary (docs/design.md, "Layers").
"""

from __future__ import annotations

from channel_node.chain.logs import (
    ChannelClaimed,
    ChannelDeposited,
    ChannelEventLog,
    ChannelOpened,
    ChannelSettled,
    CloseRequested,
)
from channel_node.chain.ports import ChainChannel
from channel_node.core import (
    ChainFigures,
    ChainTime,
    ContractReadReset,
    ContractReceive,
    ContractReceiveClaim,
    ContractReceiveCloseRequested,
    ContractReceiveDeposit,
    ContractReceiveSettled,
)

# The logs that concern a channel's figures; the others (PayoutDeferred, PendingWithdrawn) are the
# receiver's account, not a channel's, and never reach the core.
CHANNEL_LOGS: tuple[type[ChannelEventLog], ...] = (
    ChannelOpened, ChannelDeposited, ChannelClaimed, CloseRequested, ChannelSettled,
)  # fmt: skip


def state_change(log: ChannelEventLog) -> ContractReceive:
    """A confirmed contract log as the core's input, with where it came from."""
    tx, block = log.tx_hash, log.block_number
    match log:
        case ChannelOpened(deposited=total) | ChannelDeposited(total_deposited=total):
            return ContractReceiveDeposit(total, transaction_hash=tx, block_number=block)
        case ChannelClaimed(total_claimed=total):
            return ContractReceiveClaim(total, transaction_hash=tx, block_number=block)
        case CloseRequested(deadline=deadline):
            return ContractReceiveCloseRequested(ChainTime(deadline), transaction_hash=tx, block_number=block)
        case ChannelSettled(total_claimed=total):
            return ContractReceiveSettled(total, transaction_hash=tx, block_number=block)
    raise TypeError(f"no core input for {type(log).__name__}")


def figures_inputs(on_chain: ChainFigures) -> list[ContractReceive]:
    """A direct read's figures as the inputs that can only raise the node's (no log: no transaction)."""
    inputs: list[ContractReceive] = [ContractReceiveDeposit(on_chain.deposited), ContractReceiveClaim(on_chain.claimed)]
    if on_chain.close_deadline is not None:
        inputs.append(ContractReceiveCloseRequested(on_chain.close_deadline))
    if on_chain.settled:
        inputs.append(ContractReceiveSettled(on_chain.claimed))
    return inputs


def reset(on_chain: ChainFigures) -> ContractReadReset:
    """The chain's figures as the one input that may lower the node's, with the block they were read
    at when the read says (a `ChainChannel`)."""
    figures = ChainFigures(on_chain.deposited, on_chain.claimed, on_chain.close_deadline, on_chain.settled)
    return ContractReadReset(figures, on_chain.block if isinstance(on_chain, ChainChannel) else None)


__all__ = ["CHANNEL_LOGS", "figures_inputs", "reset", "state_change"]
