"""Where content comes from: a local folder, or an existing origin server behind the paywall.

Priced content is fetched *before* the voucher is committed, so a missing file or a failing origin
never costs the reader anything; it is sent only after the commit.
"""

from __future__ import annotations

import mimetypes
import os
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from multidict import CIMultiDict

SMALL_FILE = 1 << 20  # files up to this size are read into memory; larger ones are streamed
CACHE_BYTES = 64 << 20  # small files kept in memory, revalidated by a stat every REVALIDATE seconds
REVALIDATE = 1.0
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "content-length", "content-encoding", "host",
}  # fmt: skip


@dataclass
class Content:
    status: int
    headers: CIMultiDict
    body: bytes | None = None
    file: Path | None = None  # streamed from disk when set

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def not_found() -> Content:
    return Content(404, CIMultiDict({"Content-Type": "text/plain"}), b"not found\n")


@dataclass
class _Cached:
    file: Path
    body: bytes
    mime: str
    signature: tuple[int, int]  # (mtime_ns, size) when read
    checked: float


class StaticSource:
    """Files under `root`. Small files are served from memory: resolving and reading a file per
    request costs more than the whole payment check, and a stat per second keeps edits visible."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise ValueError(f"content directory {root} does not exist")
        self._cache: dict[str, _Cached] = {}
        self._cached_bytes = 0

    def locate(self, path: str) -> Path | None:
        candidate = (self.root / path.lstrip("/")).resolve()
        if candidate != self.root and not candidate.is_relative_to(self.root):
            return None  # ../ escapes are simply not found
        if candidate.is_dir():
            candidate = candidate / "index.html"
        return candidate if candidate.is_file() else None

    def exists(self, path: str) -> bool:
        return path in self._cache or self.locate(path) is not None

    async def fetch(self, method: str, path: str, query: str, headers, body: bytes) -> Content:
        cached = self._fresh(path)
        if cached is not None:
            return Content(200, CIMultiDict({"Content-Type": cached.mime}), cached.body)
        file = self.locate(path)
        if file is None:
            return not_found()
        mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        stat = file.stat()
        if stat.st_size > SMALL_FILE:
            return Content(200, CIMultiDict({"Content-Type": mime}), file=file)
        data = file.read_bytes()
        if self._cached_bytes + len(data) <= CACHE_BYTES:
            self._cache[path] = _Cached(file, data, mime, (stat.st_mtime_ns, stat.st_size), time.monotonic())
            self._cached_bytes += len(data)
        return Content(200, CIMultiDict({"Content-Type": mime}), data)

    def _fresh(self, path: str) -> _Cached | None:
        cached = self._cache.get(path)
        if cached is None:
            return None
        now = time.monotonic()
        if now - cached.checked < REVALIDATE:
            return cached
        try:
            stat = os.stat(cached.file)
            unchanged = (stat.st_mtime_ns, stat.st_size) == cached.signature
        except OSError:
            unchanged = False
        if unchanged:
            cached.checked = now
            return cached
        del self._cache[path]
        self._cached_bytes -= len(cached.body)
        return None

    def mime_type(self, path: str) -> str:
        return mimetypes.guess_type(path.rstrip("/") or "index.html")[0] or "text/html"

    async def close(self) -> None:
        pass


class ProxySource:
    """Reverse-proxy mode: forwards to `upstream` and relays its answer."""

    def __init__(self, upstream: str, max_body: int, timeout: float = 30.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.max_body = max_body
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, method: str, path: str, query: str, headers, body: bytes) -> Content:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout, auto_decompress=False)
        forward = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP and not k.upper().startswith("PAYMENT-"))
        url = self.upstream + path + (f"?{query}" if query else "")
        try:
            async with self._session.request(method, url, headers=forward, data=body or None, allow_redirects=False) as r:
                data = await r.content.read(self.max_body + 1)
                if len(data) > self.max_body:
                    return Content(502, CIMultiDict({"Content-Type": "text/plain"}), b"upstream response too large\n")
                relayed = CIMultiDict((k, v) for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP)
                if "Content-Encoding" in r.headers:
                    relayed["Content-Encoding"] = r.headers["Content-Encoding"]
                return Content(r.status, relayed, data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Content(502, CIMultiDict({"Content-Type": "text/plain"}), f"upstream unavailable: {type(exc).__name__}\n".encode())

    def mime_type(self, path: str) -> str:
        return mimetypes.guess_type(path)[0] or "text/html"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
