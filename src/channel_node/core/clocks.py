"""The node's two clocks, named apart so that no comparison between them passes unseen.

- `WallTime`: unix seconds from the node's own clock (`Runtime.clock`), when a request arrived.
- `ChainTime`: unix seconds as the chain counts them, a block's `timestamp`. The contract's close
  deadline (`closeDeadline`, `block.timestamp + closeDelay` at the payer's close request) and a
  confirmed block's timestamp are chain time.

Only chain time decides on chain: the payer may finalize once a block's timestamp reaches the
deadline, so the node's defence must be mined in a block before it. The node compares the two
clocks in exactly one rule, `stops_sales` below (docs/design.md, "Two clocks"): it stops selling on a
channel whose payer's close is pending once `now + close_margin` reaches the deadline. Why that is
safe, and what bounds it:

- a block's timestamp is set by its proposer but bounded by consensus: after the merge it is the
  slot's start (genesis time + 12 s per slot), so the confirmed head's chain time trails wall time
  by the confirmation depth times the block interval, and can never run ahead of honest wall time
  by more than the few seconds clients tolerate (other chains: their own bound, e.g. L2 sequencers);
- the node's own clock must be NTP-synchronised (an operator's duty); then its error is well under
  a second against the chain's honest wall time;
- what the margin must cover is therefore: that skew, plus the time the last sale's claim takes to
  be mined (fee bumps included). Every sale made while a close is pending queues the defence claim
  at once (`core.channel`), so a sale accepted before the stop is collected if its claim lands
  before the deadline. With the default `close_margin` of 300 s, skew and inclusion time fit many
  times over; an operator on a chain with looser timestamps raises the margin.

A node whose clock runs ahead stops selling earlier (safe); one whose clock runs late by more than
the margin could sell content whose claim lands after the deadline: the loss is bounded by what was
sold in that window, never the deposit already charged (the first sight defence is sent at once).
"""

from __future__ import annotations

from typing import NewType

WallTime = NewType("WallTime", int)
"""Unix seconds read from the node's clock."""

ChainTime = NewType("ChainTime", int)
"""Unix seconds as the chain counts them: a block's timestamp, the contract's close deadline."""


def stops_sales(now: WallTime, close_margin: int, close_deadline: ChainTime) -> bool:
    """Whether a request arriving at wall time `now` comes within `close_margin` seconds of a
    pending close's chain-time deadline: the one place the two clocks meet (see the module doc)."""
    return now + close_margin >= close_deadline


__all__ = ["ChainTime", "WallTime", "stops_sales"]
