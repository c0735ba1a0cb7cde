"""Records every 402 offer and every paid unlock for the publisher's revenue insights.

The request path only appends a tuple to an in-memory deque (thread-safe, O(1), no lock, no I/O):
`Recorder.offer` and `Recorder.unlock`, the paywall's `InsightsRecorder`. A dedicated writer
thread (writer.py) drains it every `flush_interval` seconds, or sooner when `flush_at` events
wait, into its own SQLite file (schema.py: WAL, synchronous=NORMAL; insights are analytics, not
money: a power cut may lose the last second of them, never a payment). Unique paying channels are
counted as payers.py says.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from pathlib import Path

from channel_node.amounts import Asset
from channel_node.insights.schema import OFFER, UNLOCK
from channel_node.insights.writer import Event, InsightsWriter, RecorderStats, WriterThread


class Recorder:
    """The paywall's `InsightsRecorder`: `offer` and `unlock` only append to a buffer."""

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval: float = 1.0,
        flush_at: int = 20_000,
        max_buffer: int = 1_000_000,
        grace: float = 120.0,
        clock: Callable[[], float] = time.time,
        asset: Asset | None = None,
    ) -> None:
        self.path = Path(path)
        self.asset = asset  # the prices' asset, recorded in the file for the report (schema.py, meta)
        self.flush_interval = flush_interval
        self.flush_at = flush_at  # buffered events that wake the writer before the interval
        self.max_buffer = max_buffer  # beyond this (writer stalled), events are dropped and counted
        self.grace = grace
        self.clock = clock  # for compaction (tests move time)
        self._buffer: collections.deque[Event] = collections.deque()
        self._wake = threading.Event()
        self._thread: WriterThread | None = None
        self.stats: RecorderStats = {"dropped": 0, "written": 0, "failed": 0, "flushes": 0, "refused": 0,
                                     "last_flush_s": 0.0}  # fmt: skip

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r})"

    # -------------------------------------------------------------- request path: buffer only

    def offer(self, resource: str, price: int, tags: dict[str, str], at: float) -> None:
        buffer = self._buffer
        if len(buffer) >= self.flush_at:
            self._overfull()
            if len(buffer) >= self.max_buffer:
                return
        buffer.append((OFFER, resource, price, tags, None, at))

    def unlock(
        self, resource: str, price: int, tags: dict[str, str], channel_id: bytes, at: float, *,
        kind: str = "article", list_price: int | None = None, cap: str | None = None, pass_name: str | None = None,
    ) -> None:
        # `kind`, `list_price`, `cap` and `pass_name` (caps and passes, docs/protocol.md) are the
        # paywall's to give; storing them is the insights schema's (not yet: recorded as a sale).
        buffer = self._buffer
        if len(buffer) >= self.flush_at:
            self._overfull()
            if len(buffer) >= self.max_buffer:
                return
        buffer.append((UNLOCK, resource, price, tags, channel_id, at))

    def _overfull(self) -> None:
        self._wake.set()
        if len(self._buffer) >= self.max_buffer:
            self.stats["dropped"] += 1

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def running(self) -> bool:
        """Whether the writer thread was started (and not closed): `flush` may be awaited."""
        return self._thread is not None

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Opens (creating) the database and starts the writer thread."""
        if self._thread is not None:
            return
        writer = await asyncio.to_thread(InsightsWriter, self.path, self.grace, self.asset)
        self._thread = WriterThread(writer, self._buffer, self._wake, self.stats, self.flush_interval, self.clock)
        self._thread.start()

    async def flush(self) -> None:
        """Returns once every event buffered before the call is written (and closed periods compacted)."""
        if self._thread is None:
            raise RuntimeError("the recorder is not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._thread.add_waiter(loop, future)
        await future

    async def close(self) -> None:
        """Writes everything still buffered, then stops the writer and closes the database (events
        buffered by a recorder that was never started are not written)."""
        if self._thread is None:
            return
        thread = self._thread
        await asyncio.to_thread(thread.stop)
        self._thread = None
        thread.writer.close()


__all__ = ["Recorder"]
