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
from typing import BinaryIO

import aiohttp
import orjson
from multidict import CIMultiDict, MultiMapping
from yarl import URL

from channel_node.server.resource import Resource

SMALL_FILE = 1 << 20  # files up to this size are read into memory; larger ones are streamed
CACHE_BYTES = 64 << 20  # small files kept in memory, revalidated by a stat every REVALIDATE seconds
REVALIDATE = 1.0
READ_CHUNK = 64 * 1024
# Hop-by-hop fields (RFC 9110 section 7.6.1), plus the ones a proxy recomputes or must not pass on:
# never forwarded in either direction, nor any field the message's own `Connection` names.
HOP_BY_HOP = frozenset({
    "connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "content-length", "host", "expect",
})  # fmt: skip
# Never forwarded: fields some origins and frameworks take as the request's real path or method
# (IIS, Symfony, Rails, Express middleware), which would let a free path read a priced one
# (docs/security.md, "One canonical resource").
OVERRIDES = frozenset({
    "x-original-url", "x-rewrite-url", "x-override-url", "x-forwarded-path", "x-forwarded-prefix",
    "x-http-method-override", "x-http-method", "x-method-override",
    "forwarded", "x-script-name", "x-matched-path", "x-host", "x-forwarded-server", "front-end-https",
})  # fmt: skip
# And every field of these families, whatever its suffix (X-Original-URI, X-Forwarded-Uri,
# X-Forwarded-Host, X-Envoy-Original-Path, X-Rewrite-URI...): they describe how a proxy routed the
# request, which only the node may say; a client's own would route a free path to a priced one.
OVERRIDE_PREFIXES = ("x-forwarded-", "x-original-", "x-rewrite-", "x-override-", "x-envoy-")
OVERRIDE_SUFFIXES = ("-method-override",)


def is_override(name: str) -> bool:
    """Whether a request field may rename the request's path, host, scheme or method at an origin."""
    low = name.lower()
    return low in OVERRIDES or low.startswith(OVERRIDE_PREFIXES) or low.endswith(OVERRIDE_SUFFIXES)
# Not forwarded on a priced request: the node sells the whole representation, once, as a 200, so
# the origin must not answer a part (206) or "unchanged" (304) (docs/security.md, "Partial and
# conditional answers").
PRICED_DROP = frozenset({"range", "if-range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since"})


def end_to_end(headers: MultiMapping[str], drop: frozenset[str] = frozenset()) -> CIMultiDict[str]:
    """`headers` without hop-by-hop fields, the fields its `Connection` names, the node's own
    payment fields (`PAYMENT-*`), and `drop`."""
    named = {
        token.strip().lower()
        for name in ("Connection", "Proxy-Connection")
        for value in headers.getall(name, ())
        for token in value.split(",")
    }
    return CIMultiDict(
        (k, v)
        for k, v in headers.items()
        if (low := k.lower()) not in HOP_BY_HOP and low not in named and low not in drop and not low.startswith("payment-")
    )


@dataclass
class Content:
    status: int
    headers: CIMultiDict[str]
    body: bytes | None = None
    file: Path | None = None  # streamed from disk when set
    opened: BinaryIO | None = None  # a priced large file, opened before the charge and streamed after
    length: int = 0
    from_origin: bool = False  # the upstream's own answer (not one the node made)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def sellable(self, method: str) -> bool:
        """Whether this is a whole answer worth the price: a GET sells only a 200 with a body (an
        origin whose worker died often answers an empty 200); another priced method (an API call)
        any 2xx except a part (206)."""
        if method == "GET":  # a 200 naming a Content-Range is a part all the same
            return self.status == 200 and not self.empty and "Content-Range" not in self.headers
        return self.ok and self.status != 206

    @property
    def empty(self) -> bool:
        if self.opened is not None:
            return self.length == 0
        if self.file is not None:
            return False  # only free files are served this way
        return not self.body


def failure(status: int, code: str, message: str) -> Content:
    """An answer the node makes itself when content cannot be delivered (never charged)."""
    body = orjson.dumps({"error": code, "message": message})
    return Content(status, CIMultiDict({"Content-Type": "application/json"}), body)


# What is kept of an origin's answer that is not sold on a priced path (docs/security.md, "An
# unsold answer shows nothing of the origin's"): its status and where it points, never its body.
WITHHELD_KEEP = ("Location", "Retry-After", "Allow")


def withheld(content: Content) -> Content:
    """An origin's unsellable answer to a priced request (an error page, a redirect, a part) as the
    node relays it: the origin's status and a few pointing fields, the node's own body. An error
    page may carry the very content it was asked for (a soft 404, a debugging 500, a redirect with
    the page in its body), and no voucher paid for it."""
    if not 300 <= content.status < 600:
        return failure(502, "upstream_unsellable", "the origin did not answer with the whole resource")
    if content.status == 304:
        return Content(304, CIMultiDict(), b"")
    kept = failure(content.status, "upstream_status", f"the origin answered {content.status}; nothing was charged")
    for name in WITHHELD_KEEP:
        for value in content.headers.getall(name, ()):
            kept.headers.add(name, value)
    return kept


def not_found() -> Content:
    return Content(404, CIMultiDict({"Content-Type": "text/plain"}), b"not found\n")


@dataclass
class _Cached:
    file: Path
    body: bytes
    mime: str
    signature: tuple[int, int, int, int]  # (mtime_ns, size, inode, links) when read
    checked: float


class StaticSource:
    """Files under `root`. Small files are served from memory: resolving and reading a file per
    request costs more than the whole payment check, and a stat per second keeps edits visible.

    Paths are canonical (server/resource.py). A folder is served as its `index.html`, and priced as
    that file (`served_path`). Symbolic links are not followed: a path whose real location differs
    from `root` + path is not found, so a link cannot serve a priced file under a free name or a
    file outside `root` (docs/security.md, "One canonical resource"). Nor are hard links: a file
    with more than one name is not found under any of them (docs/security.md, "Hard links")."""

    uses_query = False  # the same file whatever the query: purchases are keyed by path alone

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise ValueError(f"content directory {root} does not exist")
        self._cache: dict[str, _Cached] = {}
        self._cached_bytes = 0

    def served_path(self, path: str) -> str:
        """The path of the file a request for `path` reads: a folder's `index.html`."""
        if path.endswith("/"):
            return path + "index.html"
        if path in self._cache:  # a file read lately: no stat on the hot path
            return path
        try:
            if (self.root / path.lstrip("/")).is_dir():
                return path + "/index.html"
        except (OSError, ValueError):
            pass
        return path

    def locate(self, path: str) -> Path | None:
        return self._file(self.served_path(path))

    def _file(self, served: str) -> Path | None:
        """The regular file at the served path `served` itself (never a folder's index in its place)."""
        relative = served.lstrip("/")
        if "\0" in relative or any(part in ("", ".", "..") for part in relative.split("/")):
            return None  # not canonical: never guessed at
        candidate = self.root / relative
        try:
            real = candidate.resolve(strict=True)
            if real != candidate or not real.is_file():
                return None  # missing, a folder, or reached through a symbolic link
            if real.stat().st_nlink != 1:
                return None  # a hard link: the same file has another name, which may be priced
        except (OSError, ValueError, RuntimeError):
            return None
        return real

    def exists(self, path: str) -> bool:
        return path in self._cache or self.locate(path) is not None

    async def fetch(
        self,
        method: str,
        resource: Resource,
        headers: MultiMapping[str] | None = None,
        body: bytes = b"",
        priced: bool = False,
        client: str | None = None,
    ) -> Content:
        # The cache is keyed by the file's own path, never the name it was asked by: `served_path`
        # trusts a cached key to be a file, so a folder's name cached there would later be priced
        # as itself rather than as its index file.
        # The file read is the one the served path names when the request was priced (the cache's
        # answer, or a stat): if that name has since become a folder, it is not found this once,
        # never read as the folder's index under the name's old price.
        path = self.served_path(resource.path)
        cached = self._fresh(path)
        if cached is not None:
            return Content(200, CIMultiDict({"Content-Type": cached.mime}), cached.body)
        file = self._file(path)
        if file is None:
            return not_found()
        mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        try:
            stat = file.stat()
            if stat.st_size > SMALL_FILE:
                if not priced:
                    return Content(200, CIMultiDict({"Content-Type": mime}), file=file)
                # Opened before the charge (what is sold exists and is readable) and handed on: the paywall
                # (server/app.py) streams and closes it. A local open is one syscall; a thread hop costs more.
                opened = open(file, "rb")  # noqa: SIM115, ASYNC230 (see above)
                return Content(200, CIMultiDict({"Content-Type": mime}), opened=opened, length=os.fstat(opened.fileno()).st_size)
            data = file.read_bytes()
        except OSError:
            return failure(503, "content_unavailable", "the file could not be read")
        if self._cached_bytes + len(data) <= CACHE_BYTES:
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_nlink)
            self._cache[path] = _Cached(file, data, mime, signature, time.monotonic())
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
            stat = os.stat(cached.file, follow_symlinks=False)  # replaced by a link: read again
            unchanged = (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_nlink) == cached.signature
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
    """Reverse-proxy mode: forwards to `upstream` and relays its answer.

    The upstream receives the canonical resource re-encoded unambiguously (server/resource.py),
    with the query as the client sent it; hop-by-hop fields are stripped both ways. The answer is
    read whole (up to `max_body`) before anything is charged: a body cut short, over the limit,
    late or of the wrong length is a 502/504 that costs nothing (docs/security.md, "Charging only
    for delivered content")."""

    uses_query = True  # an origin may answer per query: purchases are keyed by path and query

    def __init__(self, upstream: str, max_body: int, timeout: float = 30.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.max_body = max_body
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def served_path(self, path: str) -> str:
        return path

    async def fetch(
        self,
        method: str,
        resource: Resource,
        headers: MultiMapping[str],
        body: bytes = b"",
        priced: bool = False,
        client: str | None = None,
    ) -> Content:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout, auto_decompress=False)
        forward = end_to_end(headers, PRICED_DROP if priced else frozenset())
        for name in [name for name in forward if is_override(name)]:
            forward.popall(name, None)
        if client:  # the node's own word for who asked, in place of the client's (dropped above)
            forward["X-Forwarded-For"] = client
        url = URL(self.upstream + resource.target, encoded=True)
        try:
            async with self._session.request(method, url, headers=forward, data=body or None, allow_redirects=False) as r:
                declared = r.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                    return failure(502, "upstream_too_large", "the origin's answer is over the node's limit")
                data = bytearray()
                async for chunk in r.content.iter_chunked(READ_CHUNK):
                    data += chunk
                    if len(data) > self.max_body:
                        return failure(502, "upstream_too_large", "the origin's answer is over the node's limit")
                bodiless = method == "HEAD" or r.status in (204, 304) or r.status < 200
                if not bodiless and declared is not None and (not declared.isdigit() or int(declared) != len(data)):
                    return failure(502, "upstream_incomplete", "the origin's answer does not match its Content-Length")
                chunked = "chunked" in r.headers.get("Transfer-Encoding", "").lower()
                if priced and not bodiless and declared is None and not chunked:
                    # Ended by closing the connection: a cut is indistinguishable from the end, so
                    # it is never sold (docs/security.md, "A priced answer must say where it ends").
                    return failure(502, "upstream_unframed", "the origin's answer has neither Content-Length nor chunked framing")
                return Content(r.status, end_to_end(r.headers), bytes(data), from_origin=True)
        except TimeoutError:
            return failure(504, "upstream_timeout", "the origin did not answer in time")
        except (aiohttp.ClientError, ValueError) as exc:
            return failure(502, "upstream_unavailable", f"the origin failed: {type(exc).__name__}")

    def mime_type(self, path: str) -> str:
        return mimetypes.guess_type(path)[0] or "text/html"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
