"""Follows the contract's logs and feeds the confirmed ones to its sink (the runtime, in a node).

Only blocks at the confirmation depth are read (`confirmations` counts the block itself). The cursor
(last applied block and its hash) is persisted after each range; at every poll the watcher checks
that the cursor's block is still on the chain. If it is not (a reorg deeper than the confirmation
depth), it re-syncs: every known channel is read again from the chain at the confirmed head and the
cursor moves there, instead of the node crashing or trusting logs that no longer exist.

Figures the node read directly (a channel's first voucher, a top-up check) carry the block they were
read at (an anchor) and may lie above the cursor, where a reorg no deeper than the confirmation
depth can remove them without touching the cursor. At every poll, after the logs, each anchor is
checked: still canonical and covered by the cursor, it is cleared; no longer canonical (or no longer
confirmed), the channel is suspended and read again at the cursor's block (a `ContractReadReset`,
which may lower its figures to zero) (docs/security.md, "Reorganisations"). After downtime it
catches up in bounded block ranges, with a progress bar on a terminal.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from web3 import AsyncWeb3
from web3.providers.async_base import AsyncBaseProvider

from channel_node.chain.contract import ChannelDepositClient
from channel_node.chain.ports import ChainSink
from channel_node.chain.view import block_ref, canonical_hash, channel_at
from channel_node.core import ChainTime
from channel_node.store import BlockRef, Cursor, Store

log = structlog.get_logger("channel_node.watcher")

DEFAULT_RANGE = 2_000  # blocks per eth_getLogs request: most providers accept this
RESYNC_RESCAN = 128  # after a deep reorg, logs are read again from this many blocks below the old cursor


@dataclass
class WatcherStats:
    head: int = 0
    confirmed: int = 0
    cursor: int = -1
    events: int = 0
    resyncs: int = 0
    stepped_back: int = 0  # polls that found the chain shorter than the cursor's block
    reverified: int = 0  # channels read again because the block their figures were read at is gone
    chain_moved: int = 0  # catch-up ranges abandoned because the chain changed while they were read
    last_poll: float = 0.0
    last_error: str | None = None  # the last poll's failure, cleared by a successful poll

    @property
    def lag(self) -> int:
        return max(0, self.confirmed - self.cursor)


class Watcher:
    def __init__(
        self,
        w3: AsyncWeb3[AsyncBaseProvider],
        client: ChannelDepositClient,
        sink: ChainSink,
        store: Store,
        confirmations: int,
        start_block: int = 0,
        block_range: int = DEFAULT_RANGE,
        poll_interval: float = 2.0,
        defence_interval: float = 15.0,
        progress: bool = False,
        resync_rescan: int = RESYNC_RESCAN,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.w3 = w3
        self.client = client
        self.sink = sink  # what the watcher reports to; it does not know what consumes it
        self.store = store
        self.confirmations = confirmations
        self.start_block = start_block
        self.block_range = block_range
        self.poll_interval = poll_interval
        self.defence_interval = defence_interval
        self.progress = progress
        self.resync_rescan = resync_rescan
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
        from web3.utils.subscriptions import NewHeadsSubscription, NewHeadsSubscriptionContext

        async def on_new_head(context: NewHeadsSubscriptionContext) -> None:
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
            cursor = await self.resync(max(confirmed, 0), cursor)
        elif cursor is not None and cursor.block > max(confirmed, 0):
            cursor = await self._step_back(cursor, max(confirmed, 0))
        first = self.start_block if cursor is None else cursor.block + 1
        applied = 0
        if first <= confirmed:
            applied = await self._catch_up(first, confirmed)
        await self._check_anchors()
        await self._release_leftovers()
        if applied or time.monotonic() - self._last_defence >= self.defence_interval:
            block = await self.w3.eth.get_block(max(confirmed, 0))
            await self.sink.new_block(ChainTime(int(block["timestamp"])))
            self._last_defence = time.monotonic()
        return applied

    async def _still_on_chain(self, cursor: Cursor) -> bool:
        return await canonical_hash(self.w3, cursor.block) == cursor.block_hash

    async def _step_back(self, cursor: Cursor, confirmed: int) -> Cursor:
        """The chain got shorter: the cursor's block is still canonical but no longer at the
        confirmation depth. The channels with logs above the confirmed block are read again there
        (their figures may go down) and the cursor steps back to it."""
        self.stats.stepped_back += 1
        at = await block_ref(self.w3, confirmed)
        events = await self.client.get_events(at.block + 1, cursor.block)
        known = await self.store.channel_ids()
        touched = sorted({cid for e in events if (cid := getattr(e, "channel_id", None)) in known})
        log.warning("watcher_chain_shorter", cursor=cursor.block, confirmed=at.block, channels=len(touched))
        for channel in touched:
            self.sink.suspend(channel)
        for channel in touched:
            await self.sink.replace_chain_view(channel, await channel_at(self.client, channel, at))
        moved = Cursor(at.block, at.block_hash)
        await self.store.set_cursor(moved)
        self.stats.cursor = moved.block
        return moved

    async def _check_anchors(self) -> None:
        """Re-validates every channel figure read directly at a block the cursor had not covered.

        Order matters: the cursor's hash was read before this check, so if a reorg replaces an
        anchor's block after the check it also replaces the cursor's block (at or above it), and the
        next poll re-syncs everything."""
        anchored = await self.store.anchored_channels()
        if not anchored:
            return
        cursor = await self.store.cursor()
        confirmed = await self.w3.eth.block_number - self.confirmations + 1
        hashes: dict[int, bytes | None] = {}
        for channel, anchor in anchored:
            if anchor.block not in hashes:
                hashes[anchor.block] = await canonical_hash(self.w3, anchor.block)
            if hashes[anchor.block] == anchor.block_hash and anchor.block <= confirmed:
                if cursor is not None and anchor.block <= cursor.block:
                    await self.sink.cover_anchor(channel, anchor)
                continue  # canonical and confirmed, above the cursor: checked again next poll
            # Gone (or no longer at the confirmation depth): sell nothing on it until it is re-read.
            self.sink.suspend(channel)
            self.stats.reverified += 1
            at = BlockRef(cursor.block, cursor.block_hash) if cursor is not None else await block_ref(self.w3, confirmed)
            on_chain = await channel_at(self.client, channel, at)
            log.warning(
                "watcher_reorged_read", channel="0x" + channel.hex(), read_block=anchor.block,
                reread_block=at.block, deposited=str(on_chain.deposited),
            )  # fmt: skip
            await self.sink.replace_chain_view(channel, on_chain)

    async def _release_leftovers(self) -> None:
        """Channels still suspended after the checks above were left by an earlier poll whose
        re-read failed (and whose cause may since have gone, the chain flipping back): they are read
        again at the cursor's block, which is canonical, before they are sold on again."""
        leftovers = self.sink.suspended
        cursor = await self.store.cursor()
        if not leftovers or cursor is None:
            return
        at = BlockRef(cursor.block, cursor.block_hash)
        for channel in sorted(leftovers):
            await self.sink.replace_chain_view(channel, await channel_at(self.client, channel, at))

    async def _catch_up(self, first: int, last: int) -> int:
        total_blocks = last - first + 1
        bar = _progress(total_blocks) if self.progress and total_blocks > self.block_range else None
        applied = 0
        try:
            for start in range(first, last + 1, self.block_range):
                end = min(start + self.block_range - 1, last)
                # The range's last block is read before and after its logs: if the chain changed in
                # between, the logs may belong to either branch, so they wait for the next poll.
                before = await block_ref(self.w3, end)
                events = await self.client.get_events(start, end)
                if await canonical_hash(self.w3, end) != before.block_hash:
                    self.stats.chain_moved += 1
                    log.info("watcher_chain_moved", block=end)
                    break
                applied += await self.sink.apply_chain_events(events)
                await self.store.set_cursor(Cursor(end, before.block_hash))
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

    async def resync(self, confirmed: int, cursor: Cursor | None = None) -> Cursor:
        """After a reorg deeper than the confirmation depth: re-read every known channel from the
        chain at the confirmed head (by its hash), then move the cursor back `resync_rescan` blocks
        below where the branches can have split, so that the logs of the new branch are read (a
        channel opened only there is learnt; known channels' logs change nothing: they are at or
        below the figures just read). Returns the new cursor."""
        self.stats.resyncs += 1
        log.warning("watcher_deep_reorg", action="resync", confirmed=confirmed)
        stored_channels = await self.store.list_channels()
        for stored in stored_channels:  # nothing is sold on figures of a branch that is gone
            self.sink.suspend(stored.state.channel_id)
        at = await block_ref(self.w3, confirmed)
        for stored in stored_channels:
            # Read at the hash itself; the anchor it leaves is checked (and cleared) by later polls.
            on_chain = await channel_at(self.client, stored.state.channel_id, at)
            await self.sink.replace_chain_view(stored.state.channel_id, on_chain)
        below = at.block if cursor is None else min(cursor.block, at.block)
        restart = await block_ref(self.w3, max(0, below - self.resync_rescan))
        moved = Cursor(restart.block, restart.block_hash)
        await self.store.set_cursor(moved)
        self.stats.cursor = moved.block
        return moved


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
