"""Who may use the admin listener (server/admin/auth.py): only the exact bearer token opens the API,
the dashboard's cookie opens only the dashboard's reads, nothing a client sends makes the check
raise (a 500), and the token is never in the cookie or a repr. Plus the operator client's refusal
of answers that are not the JSON it expects (cli/channels.py)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from channel_node.cli.channels import AdminApi as AdminClient
from channel_node.cli.channels import OperatorError
from channel_node.server.admin import (
    DASHBOARD_COOKIE,
    DASHBOARD_LOGIN,
    DASHBOARD_PREFIX,
    AdminAuth,
    Admission,
    create_admin_app,
)

TOKEN = "admin-auth-test-token-0123456789"
tokens = st.text(min_size=1, max_size=40).filter(lambda t: t.strip() == t and " " not in t)
headers = st.one_of(st.none(), st.text(max_size=80))
cookies = st.one_of(st.none(), st.text(max_size=80))
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
paths = st.sampled_from([
    "/admin/status", "/admin/channels", "/admin/claim", "/admin/close", DASHBOARD_PREFIX,
    f"{DASHBOARD_PREFIX}/data.json", f"{DASHBOARD_PREFIX}/export.csv", DASHBOARD_LOGIN, "/admin/insightsX",
])  # fmt: skip


def _session(token: str) -> str:
    return hmac.new(token.encode(), b"channel-node dashboard session", hashlib.sha256).hexdigest()


@settings(max_examples=200, deadline=None)
@given(token=tokens, header=headers, cookie=cookies, method=methods, path=paths)
def test_anything_but_the_token_or_the_dashboard_cookie_is_denied(token, header, cookie, method, path):
    """Whatever header and cookie a client sends (non-ASCII included), the check answers and never
    raises; it admits only the login form, the exact bearer token, or the exact cookie on a
    dashboard read."""
    admission = AdminAuth(SecretStr(token)).admit(method, path, header, cookie)
    scheme, _, credentials = (header or "").strip().partition(" ")
    bearer = scheme.lower() == "bearer" and credentials.strip() == token
    by_cookie = cookie == _session(token) and method in ("GET", "HEAD") and path.startswith(DASHBOARD_PREFIX)
    expected = path == DASHBOARD_LOGIN or bearer or by_cookie
    assert admission is (Admission.ADMITTED if expected else Admission.DENIED)


@settings(max_examples=100, deadline=None)
@given(token=tokens, scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR"]),
       before=st.sampled_from(["", " ", "\t"]), after=st.sampled_from(["", " ", "  "]),
       method=methods, path=paths)  # fmt: skip
def test_the_bearer_token_opens_every_path(token, scheme, before, after, method, path):
    auth = AdminAuth(SecretStr(token))
    assert auth.admit(method, path, f"{before}{scheme} {token}{after}", None) is Admission.ADMITTED
    assert auth.admit(method, path, f"{scheme} {token}x", None) is (
        Admission.ADMITTED if path == DASHBOARD_LOGIN else Admission.DENIED
    )


@settings(max_examples=100, deadline=None)
@given(header=headers, cookie=cookies, method=methods, path=paths)
def test_without_a_token_everything_is_disabled(header, cookie, method, path):
    for secret in (None, SecretStr("")):
        auth = AdminAuth(secret)
        assert not auth.enabled
        assert auth.admit(method, path, header, cookie) is Admission.DISABLED
        assert not auth.token_matches(header or "")


@settings(max_examples=100, deadline=None)
@given(first=tokens.filter(lambda t: len(t) >= 8), second=tokens)
def test_the_cookie_is_derived_from_the_token_and_never_shows_it(first, second):
    one, two = AdminAuth(SecretStr(first)), AdminAuth(SecretStr(second))
    assert first not in one.dashboard_session()
    assert repr(one) == "AdminAuth(enabled=True)"
    assert (one.dashboard_session() == two.dashboard_session()) == (first == second), "rotating the token logs out"
    assert one.dashboard_cookie_ok("GET", DASHBOARD_PREFIX, one.dashboard_session())
    assert one.token_matches(first) and one.token_matches(second) == (first == second)


async def _raw_get(server: TestServer, path: str, header: bytes) -> tuple[int, bytes]:
    """A request with a header aiohttp's client would not send (raw UTF-8 bytes)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: admin\r\n" + header + b"\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("value", ["é" * 64, "☃", "0" * 63 + "é", "\u00ff" * 3])
async def test_a_non_ascii_cookie_or_token_is_refused_401_not_500(value):
    """hmac.compare_digest raises TypeError on non-ASCII str: the dashboard cookie was compared as
    str, so such a cookie answered 500 internal_error. Both checks compare bytes."""
    app = create_admin_app(SimpleNamespace(settings=SimpleNamespace(admin_token=SecretStr(TOKEN))))
    server = TestServer(app)
    await server.start_server()
    try:
        for path, header in (
            (DASHBOARD_PREFIX, f"Cookie: {DASHBOARD_COOKIE}={value}"),
            (f"{DASHBOARD_PREFIX}/data.json", f"Cookie: {DASHBOARD_COOKIE}={value}"),
            ("/admin/status", f"Authorization: Bearer {value}"),
        ):
            status, body = await _raw_get(server, path, header.encode("utf-8"))
            assert (status, body) == (
                401, b'{"error": "unauthorized", "message": "send Authorization: Bearer <admin_token>"}'
            ), path
    finally:
        await server.close()


async def test_the_operator_client_refuses_answers_that_are_not_the_json_it_expects():
    """A proxy or another service on the admin port answering odd JSON is an OperatorError (one
    line, exit code 2), not an AttributeError traceback."""
    answers = {"/admin/status": [1, 2], "/admin/channels": {"not": "a list"}, "/admin/outbox": [3],
               "/admin/claim": "nope"}  # fmt: skip

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(answers[request.path], status=418 if request.path == "/admin/claim" else 200)

    app = web.Application()
    for path in answers:
        app.router.add_route("*", path, answer)
    server = TestServer(app)
    await server.start_server()
    client = AdminClient(str(server.make_url("")), TOKEN)
    try:
        for call in (client.status(), client.list_channels(), client.outbox()):
            with pytest.raises(OperatorError, match="something other than"):
                await call
        with pytest.raises(OperatorError, match="answered POST /claim with HTTP 418"):
            await client.claim_all(1)
    finally:
        await client.close()
        await server.close()
