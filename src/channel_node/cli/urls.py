"""URLs the user types on the command line, and what to say when one does not work: one line that
names the URL, what is wrong and what to do (docs/operations.md, "When something goes wrong").

Pure helpers for the command modules; of ours they import only `errors` and `config` (its
`public_endpoint`, which hides an RPC URL's API key)."""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit

from channel_node.config import public_endpoint
from channel_node.errors import UsageError

__all__ = ["check_url", "unreachable"]


def check_url(url: str, what: str, schemes: tuple[str, ...] = ("http", "https"), *, secret: bool = False) -> str:
    """`url` if it is an absolute URL with one of `schemes` and a host; else a UsageError saying how
    to write it. `what` names the argument ("the URL", "--rpc-url"); `secret`: the URL may carry a
    key (a JSON-RPC endpoint), so the message shows no more than its scheme, host and port."""
    if secret:
        try:
            check_url(url, what, schemes)
        except UsageError:
            raise UsageError(f"{what} must be an absolute URL starting with " + " or ".join(f"{s}://" for s in schemes)
                             + f" and naming a host (e.g. {schemes[0]}://127.0.0.1:8545)") from None  # fmt: skip
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError as exc:
        raise UsageError(f"{what} {url!r} is not a valid URL ({exc}): write it as {schemes[0]}://host[:port]/path") from None
    if not parts.scheme or (parts.scheme not in schemes and not host):
        raise UsageError(f"{what} {url!r} has no scheme: write {schemes[0]}://{url.lstrip('/')}")
    if parts.scheme not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise UsageError(f"{what} {url!r} starts with {parts.scheme}://, which is not supported: use {allowed}")
    if not host:
        raise UsageError(f"{what} {url!r} has no host: write {schemes[0]}://host[:port]/path")
    return url


def unreachable(exc: BaseException, url: str, what: str, fix: str, *, secret: bool = False) -> str:
    """The one line for a connection that failed: `cannot reach <what> <url>: ` and whether the host
    does not exist, nobody listens, or it did not answer in time; `fix` says what to check (a running
    site, a chain, a flag). `secret`: show only the URL's scheme, host and port (an RPC endpoint)."""
    parts = urlsplit(url)
    host = parts.hostname or url
    where = f"{host}:{parts.port}" if parts.port else host
    head = f"cannot reach {what} {public_endpoint(url) if secret else url}"
    cause = _os_error(exc)
    if isinstance(cause, socket.gaierror) or type(exc).__name__ == "ClientConnectorDNSError":
        return f"{head}: unknown host {host!r} (the name does not resolve): check the URL's spelling"
    if isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError):
        return f"{head}: {where} did not answer in time; {fix}"
    if isinstance(cause, ConnectionRefusedError) or (cause is not None and cause.errno == errno.ECONNREFUSED):
        return f"{head}: nothing is listening at {where} (connection refused); {fix}"
    detail = cause.strerror if cause is not None and cause.strerror else type(exc).__name__
    return f"{head}: cannot connect to {where} ({detail}); {fix}"


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError under an aiohttp or web3 connection error, if any."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, OSError) and not type(seen).__module__.startswith("aiohttp"):
            return seen
        inner = getattr(seen, "os_error", None)
        if isinstance(inner, OSError):
            return inner
        seen = seen.__cause__ or seen.__context__
    return None
