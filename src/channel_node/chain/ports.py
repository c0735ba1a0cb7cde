"""What the chain edge hands to the node and what it expects of it (docs/design.md, "Layers").

The chain side knows nothing of its consumer: the watcher tells a `ChainSink` what it found
(confirmed logs, a new confirmed block, figures to force after a reorg, anchors the cursor now
covers), the way a chain notifier feeds whoever subscribed. `Runtime` implements the sink; a test
may hand the watcher anything with these methods. The reads go the other way through `ChainView`,
whose figures are a `ChainChannel` tied to the block they were read at.

Nothing here imports the node: `chain/` imports `core`, `signing`, `store` and `types` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from channel_node.chain.logs import ChannelEventLog
from channel_node.core import ChainFigures, ChainTime
from channel_node.errors import RemoteError
from channel_node.store import BlockRef


class ChainUnavailable(RemoteError):
    """The chain could not be read; the request may be retried."""


OnChainChannel = ChainFigures
"""A channel's four figures on chain: `getChannel` decoded (the contract client's reads). The record
is declared once, in `core/figures.py` (the core's `ContractReadReset` and the wallet use it too);
this is its name on the chain side. `ChainChannel` adds the block it was read at."""


@dataclass(frozen=True, slots=True)
class ChainChannel(ChainFigures):
    """A channel as the chain shows it at the confirmation depth, and the block (number and hash)
    it was read at: the figures were read at that very hash, so the two cannot disagree
    (docs/security.md, "Reorganisations")."""

    block: int | None = None
    block_hash: bytes | None = None

    @property
    def ref(self) -> BlockRef | None:
        return BlockRef(self.block, self.block_hash) if self.block is not None and self.block_hash else None


class ChainView(Protocol):
    async def confirmed_channel(self, channel_id: bytes) -> ChainChannel | None:
        """The channel at the confirmed block, or None if it has no deposit there."""
        ...

    async def is_canonical(self, ref: BlockRef) -> bool:
        """Whether the chain still has that block at that number (asked only for reads that carried a ref)."""
        ...


class ChainSink(Protocol):
    """The watcher's consumer: everything the watcher reports, in the order it finds it."""

    async def apply_chain_events(self, logs: list[ChannelEventLog]) -> int:
        """Confirmed, decoded contract logs of one block range, in chain order. Returns how many
        concerned the consumer's channels."""
        ...

    async def new_block(self, timestamp: ChainTime) -> int:
        """A confirmed block's timestamp (at least every defence interval). Returns how many
        channels still need a claim."""
        ...

    def suspend(self, channel: bytes) -> None:
        """A reorg took the block the channel's figures rest on: sell nothing on it until
        `replace_chain_view` brings the chain's figures again."""
        ...

    @property
    def suspended(self) -> frozenset[bytes]:
        """The channels suspended and not yet re-read (the watcher re-reads them at its cursor)."""
        ...

    async def replace_chain_view(self, channel: bytes, on_chain: ChainFigures) -> None:
        """The chain's figures at a canonical block, forced onto the channel even where they are
        lower (a re-sync after a deep reorg, a shorter chain, a read at a block that is gone).
        `on_chain` is a `ChainChannel` (the block it was read at becomes the channel's anchor) or
        bare figures (a client's read, test doubles)."""
        ...

    async def cover_anchor(self, channel: bytes, anchor: BlockRef) -> bool:
        """The cursor passed the anchor's block with that block still canonical."""
        ...


__all__ = ["ChainChannel", "ChainSink", "ChainTime", "ChainUnavailable", "ChainView", "OnChainChannel"]
