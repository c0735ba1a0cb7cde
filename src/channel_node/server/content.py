"""Where content comes from: a local folder, or an existing origin server behind the paywall.

Priced content is fetched *before* the voucher is committed, so a missing file or a failing origin
never costs the reader anything; it is sent only after the commit.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from multidict import CIMultiDict

SMALL_FILE = 1 << 20  # files up to this size are read into memory; larger ones are streamed
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


class StaticSource:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise ValueError(f"content directory {root} does not exist")

    def locate(self, path: str) -> Path | None:
        candidate = (self.root / path.lstrip("/")).resolve()
        if candidate != self.root and not candidate.is_relative_to(self.root):
            return None  # ../ escapes are simply not found
        if candidate.is_dir():
            candidate = candidate / "index.html"
        return candidate if candidate.is_file() else None

    async def fetch(self, method: str, path: str, query: str, headers, body: bytes) -> Content:
        file = self.locate(path)
        if file is None:
            return not_found()
        mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        response_headers = CIMultiDict({"Content-Type": mime})
        if file.stat().st_size <= SMALL_FILE:
            return Content(200, response_headers, file.read_bytes())
        return Content(200, response_headers, file=file)

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
