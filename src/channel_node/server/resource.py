"""The one canonical resource of a request, computed once at the edge (docs/protocol.md, "Canonical
resource"). Pure: no I/O.

The price table, the content source, the upstream, the insights record and the `once` unlock all
use the value computed here; nothing downstream reads `request.path` again. A target is decoded
once, its dot segments resolved and repeated slashes collapsed; anything another component could
read differently (an encoded slash, a backslash, a NUL or other control character, a space other
than U+0020 inside a segment, a second level of percent-encoding, invalid UTF-8, `;` path
parameters, an encoded `?` or `#`, an NTFS stream name, text that Unicode normalisation would
change, a segment ending in a dot or starting or ending with a space) is refused with a stable code instead of guessed at.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

MAX_TARGET = 4096  # bytes of request target; aiohttp's own request-line limit is 8190

# Stable codes (docs/protocol.md section 5): the request's form, its path, its percent-encoding.
BAD_TARGET = "bad_target"
BAD_PATH = "bad_path"
BAD_ENCODING = "bad_encoding"

# RFC 3986 pchar minus ";" (path parameters are refused), plus "/" and "%" (checked separately).
_RAW_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,=:@/%]*")
_RAW_QUERY = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ABSOLUTE = re.compile(r"(?i)https?://([^/?#]*)")
# What a segment is re-encoded with for the upstream: everything else becomes %XX of its UTF-8.
_SEGMENT_SAFE = "!$&'()*+,=:@-._~"
# Unicode categories refused in a path: controls, format characters (zero-width, bidi overrides),
# surrogates, private use, unassigned, and every kind of space or line separator.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


@dataclass(frozen=True)
class Resource:
    """A canonical request target. `path` is decoded text: it starts with "/", has no empty, "."
    or ".." segment, and ends with "/" only when the request named a folder. `query` is the raw
    query string (validated, not decoded), "" when there is none."""

    path: str
    query: str = ""

    @property
    def encoded_path(self) -> str:
        """The path percent-encoded unambiguously: decoding it once gives `path` back, and no
        origin that decodes once (or twice) and resolves dot segments reads anything else."""
        return "/".join(quote(segment, safe=_SEGMENT_SAFE) for segment in self.path.split("/"))

    @property
    def target(self) -> str:
        """The origin-form target sent to an upstream and shown in a 402's `resource.url`."""
        return self.encoded_path + (f"?{self.query}" if self.query else "")

    def key(self, with_query: bool) -> str:
        """What a purchase is recorded under: the path, plus the query when the content source
        answers differently per query (reverse-proxy mode)."""
        return self.path + (f"?{self.query}" if with_query and self.query else "")


@dataclass(frozen=True)
class RefusedPath:
    """A target refused with 400: `code` is stable, `detail` says why (never echoes the target)."""

    code: str
    detail: str


# Most targets are already canonical: segments of unreserved characters, none empty, "." or "..",
# none starting or ending with a dot, no escape, no query. Such a target is its own resource, so
# the paid and free paths skip the decoding below (tests/server/test_resource.py checks they agree).
_PLAIN = re.compile(r"(?:/[A-Za-z0-9_~-](?:[A-Za-z0-9_~.-]*[A-Za-z0-9_~-])?)*/?")


def canonical_resource(raw_target: str) -> Resource | RefusedPath:
    """The canonical resource of a raw request target (as on the request line), or why not."""
    if raw_target and len(raw_target) <= MAX_TARGET and _PLAIN.fullmatch(raw_target):
        return Resource(raw_target)
    return _canonical(raw_target)


def _canonical(raw_target: str) -> Resource | RefusedPath:
    if len(raw_target) > MAX_TARGET:
        return RefusedPath(BAD_TARGET, f"the request target is longer than {MAX_TARGET} bytes")
    target = raw_target
    absolute = _ABSOLUTE.match(target)
    if absolute is not None:  # absolute-form (RFC 9112 section 3.2.2): the authority is not used
        if "@" in absolute.group(1):
            return RefusedPath(BAD_TARGET, "userinfo in the request target")
        target = target[absolute.end() :] or "/"
        if target.startswith("?"):
            target = "/" + target
    if not target.startswith("/"):
        return RefusedPath(BAD_TARGET, "the request target must be a path starting with /")
    if "#" in target:
        return RefusedPath(BAD_TARGET, "a fragment in the request target")
    raw_path, _, query = target.partition("?")
    if not _RAW_QUERY.fullmatch(query):
        return RefusedPath(BAD_TARGET, "the query holds a character that must be percent-encoded")
    if _BAD_ESCAPE.search(query):
        return RefusedPath(BAD_ENCODING, "the query holds a malformed percent escape")
    if "\\" in raw_path:
        return RefusedPath(BAD_PATH, "a backslash in the path")
    if ";" in raw_path:
        return RefusedPath(BAD_PATH, "path parameters (;) are not accepted")
    if not _RAW_PATH.fullmatch(raw_path):
        return RefusedPath(BAD_PATH, "the path holds a character that must be percent-encoded")
    if _BAD_ESCAPE.search(raw_path):
        return RefusedPath(BAD_ENCODING, "the path holds a malformed percent escape")

    segments: list[str] = []
    trailing = False  # the last segment is empty, "." or "..": the target names a folder
    for raw in raw_path.split("/")[1:]:
        try:
            segment = unquote_to_bytes(raw).decode("utf-8", "strict")  # decoded once, strictly
        except UnicodeDecodeError:
            return RefusedPath(BAD_ENCODING, "the path is not valid UTF-8 once decoded")
        refused = _segment_problem(segment)
        if refused is not None:
            return refused
        trailing = segment in ("", ".", "..")
        if segment == "..":
            if segments:
                segments.pop()  # above the root stays at the root (RFC 3986 section 5.2.4)
        elif segment not in ("", "."):
            segments.append(segment)
    path = "/" + "/".join(segments) + ("/" if trailing and segments else "")
    return Resource(path, query)


def _segment_problem(segment: str) -> RefusedPath | None:
    if "/" in segment:
        return RefusedPath(BAD_PATH, "an encoded slash (%2F) in the path")
    if "\\" in segment:
        return RefusedPath(BAD_PATH, "an encoded backslash (%5C) in the path")
    if "%" in segment:
        return RefusedPath(BAD_ENCODING, "a percent sign after decoding (double encoding, %25)")
    if ";" in segment:
        return RefusedPath(BAD_PATH, "an encoded path parameter (%3B) in the path")
    if "?" in segment or "#" in segment:  # an origin that decodes before it splits reads a query there
        return RefusedPath(BAD_PATH, "an encoded query or fragment mark (%3F, %23) in the path")
    for char in segment:
        if unicodedata.category(char) in _REFUSED_CATEGORIES and char != " ":
            return RefusedPath(BAD_PATH, f"a control, format or space character (U+{ord(char):04X}) in the path")
    if segment != segment.strip(" "):
        return RefusedPath(BAD_PATH, "a path segment starting or ending with a space")
    if not segment.isascii() and unicodedata.normalize("NFKC", segment) != segment:
        return RefusedPath(BAD_PATH, "a path that Unicode normalisation (NFKC) would change")
    if segment not in (".", "..") and segment.endswith("."):
        return RefusedPath(BAD_PATH, "a path segment ending in a dot")
    if ":$" in segment:  # `a.html::$DATA`: an NTFS stream name, which Windows origins read as the file
        return RefusedPath(BAD_PATH, "an NTFS stream name (:$) in the path")
    return None


__all__ = ["BAD_ENCODING", "BAD_PATH", "BAD_TARGET", "MAX_TARGET", "RefusedPath", "Resource", "canonical_resource"]
