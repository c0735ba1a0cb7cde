"""Follows the contract's logs and feeds the confirmed ones into the runtime.

Only blocks at the confirmation depth are read (`confirmations` counts the block itself), so a
reorg shallower than that never reaches the node. The cursor (last applied block and its hash) is
persisted after each range; at every poll the watcher checks that the cursor's block is still on
the chain. If it is not (a reorg deeper than the confirmation depth), it re-syncs: every known
channel is read again from the chain at the confirmed head and the cursor moves there, instead of
the node crashing or trusting logs that no longer exist. After downtime it catches up in bounded
block ranges, with a progress bar on a terminal.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from web3 import AsyncWeb3

from channel_node.chain.client import ChannelDepositClient
from channel_node.runtime import Runtime
from channel_node.store import Cursor, Store

log = structlog.get_logger("channel_node.watcher")

DEFAULT_RANGE = 2_000  # blocks per eth_getLogs request: most providers accept this


@dataclass
class WatcherStats:
    head: int = 0
    confirmed: int = 0
    cursor: int = -1
    events: int = 0
    resyncs: int = 0
    last_poll: float = 0.0
    last_error: str | None = None  # the last poll's failure, cleared by a successful poll

    @property
    def lag(self) -> int:
        return max(0, self.confirmed - self.cursor)


class Watcher:
    def __init__(
        self,
        w3: AsyncWeb3,
        client: ChannelDepositClient,
        runtime: Runtime,
        store: Store,
        confirmations: int,
        start_block: int = 0,
        block_range: int = DEFAULT_RANGE,
        poll_interval: float = 2.0,
        defence_interval: float = 15.0,
        progress: bool = False,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.w3 = w3
        self.client = client
        self.runtime = runtime
        self.store = store
        self.confirmations = confirmations
        self.start_block = start_block
        self.block_range = block_range
        self.poll_interval = poll_interval
        self.defence_interval = defence_interval
        self.progress = progress
        self.stats = WatcherStats()
        self._last_defence = 0.0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Poll now (a new head arrived over a subscription, or a test wants it)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
                self.stats.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the chain is down or answered nonsense: keep serving, retry
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
                log.warning("watcher_poll_failed", error=self.stats.last_error)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()

    async def follow_new_heads(self) -> None:
        """Over a WebSocket: poll as soon as a new head arrives instead of waiting for the
        interval (the interval still runs, so a silent subscription costs only latency)."""
        from web3.utils.subscriptions import NewHeadsSubscription

        async def on_new_head(context) -> None:
            self.wake()

        try:
            await self.w3.subscription_manager.subscribe(NewHeadsSubscription(handler=on_new_head, label="watcher"))
            await self.w3.subscription_manager.handle_subscriptions(run_forever=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("new_heads_subscription_failed", error=f"{type(exc).__name__}: {exc}", fallback="polling")

    async def poll(self) -> int:
        """Applies every confirmed block not yet applied. Returns the number of our events applied."""
        head = await self.w3.eth.block_number
        confirmed = head - self.confirmations + 1
        self.stats.head, self.stats.confirmed, self.stats.last_poll = head, confirmed, time.time()
        cursor = await self.store.cursor()
        if cursor is not None and not await self._still_on_chain(cursor):
            await self.resync(confirmed)
            return 0
        first = self.start_block if cursor is None else cursor.block + 1
        applied = 0
        if first <= confirmed:
            applied = await self._catch_up(first, confirmed)
        if applied or time.monotonic() - self._last_defence >= self.defence_interval:
            block = await self.w3.eth.get_block(max(confirmed, 0))
            await self.runtime.new_block(block["timestamp"])
            self._last_defence = time.monotonic()
        return applied

    async def _still_on_chain(self, cursor: Cursor) -> bool:
        block = await self.w3.eth.get_block(cursor.block)
        return bytes(block["hash"]) == cursor.block_hash

    async def _catch_up(self, first: int, last: int) -> int:
        total_blocks = last - first + 1
        bar = _progress(total_blocks) if self.progress and total_blocks > self.block_range else None
        applied = 0
        try:
            for start in range(first, last + 1, self.block_range):
                end = min(start + self.block_range - 1, last)
                events = await self.client.get_events(start, end)
                applied += await self.runtime.apply_chain_events(events)
                block = await self.w3.eth.get_block(end)
                await self.store.set_cursor(Cursor(end, bytes(block["hash"])))
                self.stats.cursor = end
                self.stats.events += len(events)
                if bar is not None:
                    bar.advance(end - start + 1, len(events))
        finally:
            if bar is not None:
                bar.close()
        if total_blocks > self.block_range:
            log.info("watcher_caught_up", blocks=total_blocks, events=applied, cursor=last)
        return applied

    async def resync(self, confirmed: int) -> None:
        """After a reorg deeper than the confirmation depth: re-read every known channel from the
        chain at the confirmed head, then continue from there."""
        self.stats.resyncs += 1
        log.warning("watcher_deep_reorg", action="resync", confirmed=confirmed)
        for stored in await self.store.list_channels():
            on_chain = await self.client.get_channel(stored.state.channel_id, block=confirmed)
            await self.runtime.replace_chain_view(stored.state.channel_id, on_chain)
        block = await self.w3.eth.get_block(confirmed)
        await self.store.set_cursor(Cursor(confirmed, bytes(block["hash"])))
        self.stats.cursor = confirmed


class _progress:
    """A rich progress bar for a long catch-up (only when asked for: on a terminal)."""

    def __init__(self, blocks: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._events = 0
        self._progress = Progress(
            TextColumn("catching up"), BarColumn(), MofNCompleteColumn(), TextColumn("blocks, {task.fields[events]} events"),
            TimeRemainingColumn(), transient=True,
        )  # fmt: skip
        self._task = self._progress.add_task("catch-up", total=blocks, events=0)
        self._progress.start()

    def advance(self, blocks: int, events: int) -> None:
        self._events += events
        self._progress.update(self._task, advance=blocks, events=self._events)

    def close(self) -> None:
        self._progress.stop()


__all__ = ["Watcher", "WatcherStats"]
