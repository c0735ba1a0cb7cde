"""Voucher signer recovery off the event loop's thread, many signatures per hand-off.

Recovery is the largest piece of CPU in a paid request. libsecp256k1 runs without the GIL (coincurve
calls it through cffi), so a worker thread can recover signatures on the second core while the event
loop parses HTTP. Requests that arrive in the same loop iteration share one hand-off, so the cost of
crossing threads is paid per batch, not per request.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from channel_node.signing import InvalidSignature, recover_signer

# A digest and signature to recover, and the future its request awaits.
_Job = tuple[bytes, bytes, "asyncio.Future[bytes]"]
# A job's future and what it gets: the signer's address, or the error `recover_signer` raised.
_Outcome = tuple["asyncio.Future[bytes]", bytes | Exception]


class SignerRecovery:
    def __init__(self, threads: int = 1) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="recover")
        self._pending: list[_Job] = []

    async def recover(self, digest: bytes, signature: bytes) -> bytes:
        """The signer's address; raises InvalidSignature like `recover_signer`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._hand_off, loop)
        self._pending.append((digest, signature, future))
        return await future

    def _hand_off(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, []
        self._executor.submit(_recover_batch, batch, loop)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _recover_batch(batch: list[_Job], loop: asyncio.AbstractEventLoop) -> None:
    results: list[_Outcome] = []
    for digest, signature, future in batch:
        try:
            results.append((future, recover_signer(digest, signature)))
        except (InvalidSignature, ValueError) as exc:
            results.append((future, exc))
    loop.call_soon_threadsafe(_deliver, results)


def _deliver(results: list[_Outcome]) -> None:
    for future, outcome in results:
        if future.done():
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
