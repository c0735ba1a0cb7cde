"""Who may use the admin listener: the bearer token, the dashboard's login cookie, and the
constant-time checks of both.

Pure and synchronous: `AdminAuth.admit` takes the request's method, path, `Authorization` header
and dashboard cookie as plain values and answers an `Admission`; the middleware in `api.py` turns
that into a response, and the dashboard's login form (`dashboard.py`) trades a typed token for the
cookie. The token is never logged, never answered, never in a repr; the cookie is derived from it,
so rotating the token logs every browser out (docs/insights.md, "Opening the dashboard in a
browser").
"""

from __future__ import annotations

import enum
import hmac

from pydantic import SecretStr

DASHBOARD_PREFIX = "/admin/insights"
DASHBOARD_LOGIN = "/admin/insights/login"
DASHBOARD_COOKIE = "channel_node_dashboard"
_SESSION_LABEL = b"channel-node dashboard session"
_READS = ("GET", "HEAD")


class Admission(enum.Enum):
    DISABLED = "disabled"  # no admin_token configured: every request is refused 503
    ADMITTED = "admitted"
    DENIED = "denied"  # no or wrong bearer token: 401


def _utf8(text: str) -> bytes:
    """Text a client sent, as bytes for `hmac.compare_digest` (which refuses non-ASCII str)."""
    return text.encode("utf-8", "surrogateescape")


def bearer_matches(header: str | None, token: bytes) -> bool:
    """`Authorization: Bearer <token>` (scheme case-insensitive), compared in constant time."""
    if not header:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(_utf8(credentials.strip()), token)


class AdminAuth:
    """The admin token (None: the admin API is disabled) and the checks made with it."""

    def __init__(self, secret: SecretStr | None) -> None:
        value = secret.get_secret_value() if secret is not None else ""
        self._token: bytes | None = value.encode("utf-8") if value else None  # never logged, never answered

    def __repr__(self) -> str:  # never the token
        return f"AdminAuth(enabled={self.enabled})"

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def token_matches(self, text: str) -> bool:
        """Constant-time check of a token typed into the dashboard's login form."""
        return self._token is not None and hmac.compare_digest(_utf8(text), self._token)

    def dashboard_session(self) -> str:
        """The dashboard's cookie value: derived from the token (so rotating the token logs every
        browser out), never the token itself."""
        return hmac.new(self._token or b"", _SESSION_LABEL, "sha256").hexdigest()

    def dashboard_cookie_ok(self, method: str, path: str, cookie: str | None) -> bool:
        # A browser cannot send a bearer header: the dashboard's pages (reads only, never a
        # mutation, so a forged cross-site request gains nothing) also accept the login cookie.
        if method not in _READS or not path.startswith(DASHBOARD_PREFIX):
            return False
        # Bytes, not str: compare_digest raises TypeError on a non-ASCII str, which a cookie may hold.
        return bool(cookie) and self._token is not None and hmac.compare_digest(
            _utf8(cookie or ""), self.dashboard_session().encode("ascii")
        )

    def admit(self, method: str, path: str, authorization: str | None, cookie: str | None) -> Admission:
        """The guard's decision for one request. The login form is open to anyone (it checks the
        token itself); the dashboard's reads also take the cookie; everything else the bearer token."""
        if self._token is None:
            return Admission.DISABLED
        if path == DASHBOARD_LOGIN or self.dashboard_cookie_ok(method, path, cookie):
            return Admission.ADMITTED
        if bearer_matches(authorization, self._token):
            return Admission.ADMITTED
        return Admission.DENIED


__all__ = ["DASHBOARD_COOKIE", "DASHBOARD_LOGIN", "DASHBOARD_PREFIX", "AdminAuth", "Admission", "bearer_matches"]
