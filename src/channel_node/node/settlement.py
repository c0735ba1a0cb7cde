"""When the node collects its money without being asked: periodic claims and idle-channel closes.

Every `claim_interval` seconds, each open channel whose unclaimed vouchers reach
`claim_min_unclaimed` gets an operator claim (the sender batches them, `batch_size` channels per
transaction); a channel without activity for `idle_close_after` seconds is closed with its best
voucher, refunding the rest to its payer. Which channels is decided by `channel_node.node.operations`,
the same rules as the operator's `claim --all` and `close --all` (docs/design.md, "Operations");
decisions go through the core and the outbox like any other, so they survive a restart and are
never sent twice.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from channel_node.node.operations import Operations
from channel_node.node.runtime import Runtime
from channel_node.store import Store

log = structlog.get_logger("channel_node.node.settlement")


@dataclass
class SettlementPolicy:
    runtime: Runtime
    store: Store
    claim_interval: float = 3600.0
    claim_min_unclaimed: int = 1
    idle_close_after: float | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.claim_interval)
            try:
                await self.tick(time.time())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("settlement_failed", error=f"{type(exc).__name__}: {exc}")

    async def tick(self, now: float) -> tuple[int, int]:
        """Queues claims and idle closes; returns (claims, closes) queued."""
        operations = Operations(self.runtime, self.store)
        claims, closes = await operations.settle_due(now, self.idle_close_after, self.claim_min_unclaimed)
        if claims or closes:
            log.info("settlement_queued", claims=claims, closes=closes)
        return claims, closes
