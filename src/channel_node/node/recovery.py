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


class SignerRecovery:
    def __init__(self, threads: int = 1) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="recover")
        self._pending: list[tuple[bytes, bytes, asyncio.Future]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def recover(self, digest: bytes, signature: bytes) -> bytes:
        """The signer's address; raises InvalidSignature like `recover_signer`."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            self._loop = loop
            loop.call_soon(self._hand_off)
        self._pending.append((digest, signature, future))
        return await future

    def _hand_off(self) -> None:
        batch, self._pending = self._pending, []
        self._executor.submit(_recover_batch, batch, self._loop)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _recover_batch(batch: list[tuple[bytes, bytes, asyncio.Future]], loop: asyncio.AbstractEventLoop) -> None:
    results = []
    for digest, signature, future in batch:
        try:
            results.append((future, recover_signer(digest, signature), None))
        except (InvalidSignature, ValueError) as exc:
            results.append((future, None, exc))
    loop.call_soon_threadsafe(_deliver, results)


def _deliver(results) -> None:
    for future, signer, error in results:
        if future.done():
            continue
        if error is None:
            future.set_result(signer)
        else:
            future.set_exception(error)
