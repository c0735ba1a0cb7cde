"""The paywall's HTTP edge through real sockets: generated request targets against a static site and
a real upstream, methods, hop-by-hop headers, the log of malformed requests, public_url, and every
way a response can fail to deliver what would be charged for."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from channel_node import logs
from channel_node.config import load_settings
from channel_node.node.assembly import build_node
from channel_node.server.content import SMALL_FILE
from channel_node.server.resource import BAD_ENCODING, BAD_PATH, BAD_TARGET, Resource, canonical_resource
from channel_node.wire.envelope import decode_header
from paywall_helpers import PRICE, Payer, async_web3
from test_resource import origin_resolve, targets

EDGE_CODES = {BAD_TARGET, BAD_PATH, BAD_ENCODING}
SECRET = "SECRET-ARTICLE-TEXT"
PAGES = {  # what the static site and the upstream hold
    "/index.html": "<h1>Front</h1>",
    "/articles/1.html": f"<h1>One</h1><p>{SECRET} one, a long first paragraph of words and more words.</p>",
    "/articles/a.html": f"<h1>A</h1><p>{SECRET} a</p>",
    "/articles/index.html": "<h1>Article list</h1>",
    "/static/site.css": "body{}",
    "/free/page.html": "<p>free page</p>",
}
PRICES = [{"path": "/articles/*", "price": PRICE, "description": "an article"}, {"path": "/api/*", "price": PRICE, "once": False}]
FREE = ["/", "/static/*", "/free/*", "/articles/index.html"]
SUSPICIOUS = ["/static/../articles/1.html", "//articles/1.html", "/./articles/1.html", "/free/%2e%2e/articles/1.html",
              "/static/%2E%2e/articles/a.html", "/free/..%2farticles/1.html", "/free/%252e%252e/articles/1.html",
              "/static/%5c../articles/1.html", "/articles/1.html%00", "/ARTICLES/1.html", "/articles;x/1.html",
              "http://evil.example/articles/1.html", "/articles/1.html?x=1", "/free/%c0%ae%c0%ae/articles/1.html"]  # fmt: skip

# Targets that reach each outcome (refused, offered, missing, served) on both sources.
BRANCH_TARGETS = [*SUSPICIOUS, "/articles/1.html", "/articles/a.html", "/index.html", "/free/page.html",
                  "/static/site.css", "/articles/nope.html", "/free/nope.html", "/nope", "/static/nope.css",
                  "/nope/deeper", "/a%2Fb", "/a%00", "/%25", "/a;b", "/a%5Cb"]  # fmt: skip


async def raw_http(port: int, data: bytes, timeout: float = 10) -> tuple[int, CIMultiDict, bytes]:
    """One request as raw bytes (the target exactly as given); the first answer parsed by hand
    (read until its Content-Length is complete or the server closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = b""
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                raw += chunk
                head, found, body = raw.partition(b"\r\n\r\n")
                length = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
                if found and length and len(body) >= int(length[0]):
                    break
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = CIMultiDict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def request_bytes(method: str, target: str, headers: dict | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


class Origin:
    """A real upstream on 127.0.0.1 that records each target it receives and resolves it the way a
    typical origin does (decode, merge slashes, resolve dot segments), serving PAGES."""

    def __init__(self, decodes: int = 1):
        self.decodes = decodes
        self.received: list[tuple[str, str, CIMultiDict]] = []  # (method, raw target, headers)
        self.behaviour = None  # a coroutine (request) -> response overriding the pages

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append((request.method, request.raw_path, CIMultiDict(request.headers)))
        if self.behaviour is not None:
            return await self.behaviour(request)
        page = PAGES.get(origin_resolve(request.raw_path, self.decodes, backslash=True))
        if page is None:
            return web.Response(status=404, text="origin: not found")
        return web.Response(text=page, content_type="text/html")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


class Edge:
    """A node (static or reverse-proxy) on its own event loop, so hypothesis can drive it."""

    def __init__(self, chain, deployed, parties, channels, tmp_path, mode: str, **paywall):
        self.loop = asyncio.new_event_loop()
        self.channels = channels
        self.payer = Payer(channels, channels.open_eth(10**6 * PRICE, channels.config()))
        self.origin = Origin()
        site = tmp_path / "site"
        for path, text in PAGES.items():
            (site / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (site / path.lstrip("/")).write_text(text)
        (site / "api").mkdir()
        (site / "api" / "quote").write_text('{"q": 1}')
        os.symlink(site / "articles" / "1.html", site / "free" / "link.html")  # a free name for a priced file
        os.symlink(tmp_path / "outside.txt", site / "free" / "outside.txt")
        (tmp_path / "outside.txt").write_text("outside the content folder")
        paywall = {"prices": PRICES, "free": FREE, **paywall}
        self.run(self._start(chain, deployed, parties, tmp_path, mode, site, paywall))

    async def _start(self, chain, deployed, parties, tmp_path, mode, site, paywall):
        self.upstream = TestServer(self.origin.app())
        await self.upstream.start_server()
        source = {"content_dir": site} if mode == "static" else {"upstream": str(self.upstream.make_url("/"))}
        config = load_settings(
            contract=deployed.address, receiver=parties.receiver.address, database=tmp_path / "node.db",
            confirmations=1, paywall={**source, **paywall},
        )  # fmt: skip
        self.node = await build_node(config, async_web3(chain.tester))
        self.server = TestServer(self.node.app)
        await self.server.start_server()
        self.client = TestClient(self.server)
        await self.client.start_server()

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def send(self, method: str, target: str, headers: dict | None = None, body: bytes = b""):
        return self.run(raw_http(self.server.port, request_bytes(method, target, headers, body)))

    def voucher(self, amount: int | None = None) -> dict:
        return {"PAYMENT-SIGNATURE": self.payer.header(amount or 10**6 * PRICE)}

    def charged(self) -> int:
        stored = self.run(self.node.store.load_channel(self.payer.id))
        return 0 if stored is None else stored.state.charged

    def close(self):
        self.run(self.client.close())
        self.run(self.node.close())
        self.run(self.upstream.close())
        self.loop.close()


@pytest.fixture
def static_edge(chain, deployed, parties, channels, tmp_path):
    edge = Edge(chain, deployed, parties, channels, tmp_path, "static")
    yield edge
    edge.close()


@pytest.fixture
def proxy_edge(chain, deployed, parties, channels, tmp_path):
    edge = Edge(chain, deployed, parties, channels, tmp_path, "proxy", upstream_max_body=1_000_000, upstream_timeout=1.0)
    yield edge
    edge.close()


def _json_code(body: bytes) -> str:
    return json.loads(body)["error"]


def _refusal_code(body: bytes) -> str:
    """The paywall's code, or "parser" for the few targets aiohttp's own parser refuses first."""
    try:
        return json.loads(body)["error"]
    except ValueError:
        return "parser"


def node_price(edge: Edge, path: str):
    return edge.node.paywall.prices.match(path)


# Raw bytes outside printable ASCII never reach the paywall: aiohttp's parser answers 400 itself.
hostile_targets = st.one_of(targets().filter(lambda t: t.isascii() and t.isprintable() and " " not in t), st.sampled_from(SUSPICIOUS))


# ------------------------------------------------------------------ finding 1: one canonical resource


def test_static_targets_are_priced_as_the_file_they_read(static_edge):
    edge = static_edge
    seen = Counter()

    def check(target, pay):
        before = edge.charged()
        status, headers, body = edge.send("GET", target, edge.voucher() if pay else None)
        seen[status] += 1
        if status == 400:
            assert _refusal_code(body) in EDGE_CODES | {"parser"}, body
            assert edge.charged() == before
            return
        resource = canonical_resource(target)
        assert isinstance(resource, Resource), (target, status)
        read = origin_resolve(target, keep_slash=True)  # what the file system reads for the target
        assert read == resource.path
        file = read + "index.html" if read.endswith("/") else (read + "/index.html" if read + "/index.html" in PAGES else read)
        priced = node_price(edge, file) or node_price(edge, read)
        if not pay:
            assert SECRET.encode() not in body, (target, status)
            if file in PAGES and priced:
                assert status == 402, (target, status)
        if status == 200:
            assert body.decode() == PAGES[file], target
            charged = int(decode_header(headers["PAYMENT-RESPONSE"])["chargedAmount"]) if priced else 0
            assert charged in ((0, PRICE) if priced else (0,))
        else:
            assert status in (402, 404), (target, status, body[:200])
            assert edge.charged() == before

    settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))(
        given(hostile_targets, st.booleans())(check)
    )()
    for target in BRANCH_TARGETS:  # every branch is exercised whatever the random search drew
        for pay in (False, True):
            check(target, pay)
    assert min(seen[400], seen[402], seen[404], seen[200]) >= 5, seen


def test_symlinks_never_serve_a_priced_file_or_one_outside_the_folder(static_edge):
    for target in ["/free/link.html", "/free/outside.txt"]:
        status, _, body = static_edge.send("GET", target)
        assert status == 404 and SECRET.encode() not in body


def test_proxied_targets_are_priced_as_the_upstream_resolves_them(proxy_edge):
    edge = proxy_edge
    seen = Counter()

    def check(target, pay, decodes):
        edge.origin.decodes = decodes  # a typical origin, or a careless one that decodes twice
        edge.origin.received.clear()
        before = edge.charged()
        status, headers, body = edge.send("GET", target, edge.voucher() if pay else None)
        seen[status] += 1
        if status == 400:
            assert _refusal_code(body) in EDGE_CODES | {"parser"} and not edge.origin.received
            assert edge.charged() == before
            return
        resource = canonical_resource(target)
        assert isinstance(resource, Resource)
        price = node_price(edge, resource.path)
        # What the upstream would read from the request's own target is priced as the node priced it
        # (and an origin that ignores trailing slashes reads nothing priced that the node sold free).
        assert origin_resolve(target, decodes, backslash=True, keep_slash=True) == resource.path, target
        if node_price(edge, origin_resolve(target, decodes, backslash=True)) is not None:
            assert price is not None, target
        for _, received, _ in edge.origin.received:  # and so is what it read from the forwarded target
            assert received == resource.target
            assert origin_resolve(received, decodes, backslash=True, keep_slash=True) == resource.path
        if price is not None and not pay:
            assert status == 402 and not edge.origin.received
        if status == 200 and price is not None:
            assert decode_header(headers["PAYMENT-RESPONSE"])["chargedAmount"] in ("0", str(PRICE))
        if SECRET.encode() in body:
            assert pay and status == 200 and "PAYMENT-RESPONSE" in headers, target
            seen["sold"] += 1

    settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))(
        given(hostile_targets, st.booleans(), st.sampled_from([1, 2]))(check)
    )()
    for target in BRANCH_TARGETS:  # every branch is exercised whatever the random search drew
        for pay in (False, True):
            check(target, pay, 2)
    assert min(seen[400], seen[402], seen[404], seen["sold"]) >= 5, seen


def test_the_query_is_part_of_a_proxied_purchase(proxy_edge):
    edge = proxy_edge
    first = edge.send("GET", "/articles/1.html?page=1", edge.voucher())
    again = edge.send("GET", "/articles/1.html?page=1", edge.voucher())
    other = edge.send("GET", "/articles/1.html?page=2", edge.voucher())
    charged = [decode_header(r[1]["PAYMENT-RESPONSE"])["chargedAmount"] for r in (first, again, other)]
    assert charged == [str(PRICE), "0", str(PRICE)]
    assert [t for _, t, _ in edge.origin.received] == ["/articles/1.html?page=1"] * 2 + ["/articles/1.html?page=2"]


def test_the_query_is_not_part_of_a_static_purchase(static_edge):
    edge = static_edge
    charged = [decode_header(edge.send("GET", t, edge.voucher())[1]["PAYMENT-RESPONSE"])["chargedAmount"]
               for t in ("/articles/a.html", "/articles/a.html?x=1", "//articles/./a.html")]  # fmt: skip
    assert charged == [str(PRICE), "0", "0"]


def test_a_nul_is_a_coded_400_not_a_traceback(static_edge, capsys):
    logs.configure("json")
    capsys.readouterr()
    status, _, body = static_edge.send("GET", "/articles/a.html%00")
    assert status == 400 and _json_code(body) == BAD_PATH
    logs.flush()
    assert "Traceback" not in capsys.readouterr().out


# ------------------------------------------------------------------ finding 2: methods


@pytest.mark.parametrize("mode", ["static", "proxy"])
def test_methods_that_are_not_sold_never_spend_a_voucher_nor_return_the_body(chain, deployed, parties, channels, tmp_path, mode):
    edge = Edge(chain, deployed, parties, channels, tmp_path, mode)
    try:
        methods = st.one_of(st.sampled_from(["HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE", "FOO"]),
                            st.text(st.characters(min_codepoint=65, max_codepoint=90), min_size=1, max_size=8))  # fmt: skip

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(methods, st.sampled_from(["/articles/1.html", "/articles/a.html", "/api/quote"]))
        def attempt(method, target):
            edge.origin.received.clear()
            before = edge.charged()
            status, headers, body = edge.send(method, target, edge.voucher(), b"x=1" if method not in ("HEAD", "GET") else b"")
            sold = mode == "proxy" and target.startswith("/api/") and method in ("POST", "PUT", "PATCH", "DELETE")
            if method == "GET":
                return
            assert SECRET.encode() not in body
            if sold:  # an API call in proxy mode: charged per request like GET
                assert edge.charged() in (before, before + PRICE)
                return
            assert edge.charged() == before, (method, target)
            assert "PAYMENT-RESPONSE" not in headers
            if method == "HEAD":
                assert status == 402 and body == b"" and "PAYMENT-REQUIRED" in headers
            elif method == "OPTIONS":
                assert status == 204 and "GET" in headers["Allow"]
            elif status == 400:  # a method llhttp does not know: refused by aiohttp's parser
                assert _refusal_code(body) == "parser"
            else:
                assert status == 405 and _json_code(body) == "method_not_allowed" and "GET" in headers["Allow"]
            assert not edge.origin.received, "an unsold method on a priced path never reaches the origin"

        attempt()
    finally:
        edge.close()


# ------------------------------------------------------------------ finding 3: hop-by-hop headers


def test_hop_by_hop_fields_are_stripped_both_ways(proxy_edge):
    edge = proxy_edge

    async def answer(request):
        response = web.Response(text="free page", headers={
            "Connection": "X-Origin-Hop, keep-alive", "X-Origin-Hop": "secret", "Keep-Alive": "timeout=5",
            "Proxy-Authenticate": "Basic", "Upgrade": "h2c", "Trailer": "X-T", "Proxy-Connection": "keep-alive",
            "PAYMENT-RESPONSE": "forged", "X-End-To-End": "kept",
        })  # fmt: skip
        return response

    edge.origin.behaviour = answer
    sent = {
        "Connection": "close, X-Client-Hop", "X-Client-Hop": "1", "Proxy-Connection": "keep-alive",
        "Proxy-Authorization": "Basic c2VjcmV0", "TE": "trailers", "Keep-Alive": "300", "Upgrade": "websocket",
        "Trailer": "X-T", "X-Kept": "yes",
    }  # fmt: skip
    for target, headers in [("/free/page.html", sent), ("/articles/1.html", {**sent, **edge.voucher()})]:
        edge.origin.received.clear()
        status, response_headers, _ = edge.run(raw_http(edge.server.port, request_bytes("GET", target, headers).replace(
            b"Connection: close\r\n", b"", 1)))  # fmt: skip
        assert status == 200
        (_, _, forwarded), = edge.origin.received
        for name in ["X-Client-Hop", "Proxy-Connection", "Proxy-Authorization", "TE", "Keep-Alive", "Upgrade", "Trailer",
                     "PAYMENT-SIGNATURE"]:  # fmt: skip
            assert name not in forwarded, name
        assert forwarded["X-Kept"] == "yes"
        for name in ["X-Origin-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade", "Trailer", "Proxy-Connection"]:
            assert name not in response_headers, name
        assert response_headers["X-End-To-End"] == "kept"
        assert response_headers.get("PAYMENT-RESPONSE") != "forged"


# ------------------------------------------------------------------ finding 4: malformed requests in the log

MARKER = "ATTACKER" * 4
MALFORMED = [
    f"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: {MARKER}{'A' * 20000}\r\n\r\n".encode(),
    f"GET /{MARKER}{'A' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    f"POST /api/quote HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nX: {MARKER}\r\n\r\n0\r\n\r\n".encode(),
    f"POST /api/quote HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ{MARKER}\r\n".encode(),
    f"POST /api/quote HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\nX: {MARKER}\r\n\r\nab".encode(),
    f"POST /api/quote HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {MARKER}, chunked\r\n\r\n0\r\n\r\n".encode(),
    f"G\x00T /{MARKER} HTTP/1.1\r\n\r\n".encode(),
    f"GET /{MARKER}\x00 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    f"GET /articles/a.html%00{MARKER} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    f"GET / HTTP/1.1\r\nHost: x\r\n {MARKER}: folded\r\n\r\n".encode(),
    f"GET / HTTP/1.1\r\nHo\x01st: {MARKER}\r\n\r\n".encode(),
    f"GET / HTTP/9.9\r\nHost: {MARKER}\r\n\r\n".encode(),
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + MARKER.encode() * 20,  # TLS to a plain port
]


def test_malformed_requests_are_one_bounded_line_each_without_traceback(chain, deployed, parties, channels, tmp_path, capsys):
    logs.configure("json")  # before the node binds its loggers
    edge = Edge(chain, deployed, parties, channels, tmp_path, "static")
    try:
        _malformed(edge, capsys)
    finally:
        edge.close()


def _malformed(edge, capsys):

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(MALFORMED), st.binary(max_size=64).filter(lambda b: b"\r\n\r\n" not in b))
    def attempt(raw, junk):
        capsys.readouterr()
        try:
            status, _, _ = edge.run(raw_http(edge.server.port, raw.replace(MARKER.encode(), MARKER.encode() + junk, 1), 5))
        except (ConnectionError, IndexError, ValueError):
            status = None
        assert status in (None, 400, 405, 413, 431, 505, 501), status
        logs.flush()
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) <= 1, lines
        for line in lines:
            assert "Traceback" not in line and MARKER not in line and len(line) < 400, line
            event = json.loads(line)
            assert event["event"] in ("bad_request", "request_refused")

    attempt()
    capsys.readouterr()
    assert edge.send("GET", "/index.html")[0] == 200, "the node still serves"


# ------------------------------------------------------------------ finding 5: the resource url


def test_the_402_names_the_public_url_never_the_host(chain, deployed, parties, channels, tmp_path):
    edge = Edge(chain, deployed, parties, channels, tmp_path, "static")
    try:
        for headers in ({"X-Forwarded-Host": "evil.example"}, {}):
            status, response_headers, body = edge.send("GET", "//articles/./1.html", headers)
            assert status == 402 and json.loads(body)["resource"]["url"] == "/articles/1.html"
        edge.node.paywall.public_url = "https://news.example"
        raw = request_bytes("GET", "/articles/1.html?x=1").replace(b"Host: 127.0.0.1", b"Host: evil.example")
        status, headers, body = edge.run(raw_http(edge.server.port, raw))
        document = json.loads(body)
        assert status == 402 and document["resource"]["url"] == "https://news.example/articles/1.html?x=1"
        assert "evil" not in decode_header(headers["PAYMENT-REQUIRED"])["resource"]["url"]
    finally:
        edge.close()


def test_public_url_is_validated():
    from channel_node.config import SettingsError

    site = {"content_dir": "/tmp"}
    assert load_settings(public_url="https://news.example/base/", paywall=site).public_url == "https://news.example/base"
    for bad in ["news.example", "ftp://x", "https://u@x", "https://x/?q", "https://x/#f", "https://x y", "javascript:alert(1)"]:
        with pytest.raises(SettingsError):
            load_settings(public_url=bad, paywall=site)


# ------------------------------------------------------------------ findings 11 and the delivery classes


def test_a_large_page_arrives_whole_and_is_charged_once(proxy_edge):
    edge = proxy_edge
    page = bytes(range(256)) * (500_000 // 256) + b"end"

    async def slow_large(request):
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(page)
        await response.prepare(request)
        for at in range(0, len(page), 37_000):
            await response.write(page[at : at + 37_000])
            await asyncio.sleep(0.001)
        return response

    edge.origin.behaviour = slow_large
    status, headers, body = edge.send("GET", "/articles/1.html", edge.voucher())
    assert status == 200 and body == page and decode_header(headers["PAYMENT-RESPONSE"])["chargedAmount"] == str(PRICE)


async def _cut_short(request):
    response = web.StreamResponse(headers={"Content-Length": "10000", "Content-Type": "text/html"})
    await response.prepare(request)
    await response.write(f"<p>{SECRET}".encode() + b"x" * 3000)
    request.transport.close()  # connection reset mid-body
    return response


async def _late(request):
    response = web.StreamResponse(headers={"Content-Type": "text/html"})
    await response.prepare(request)
    await response.write(f"<p>{SECRET} start".encode())
    await asyncio.sleep(3)  # past the node's upstream_timeout of 1 s
    return response


async def _too_large(request):
    return web.Response(body=b"x" * 1_000_001)


async def _too_large_chunked(request):
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(20):
        await response.write(b"y" * 100_000)  # chunked, no Content-Length
    return response


def _status(code: int, **headers):
    async def answer(request):
        return web.Response(status=code, text=f"origin {code} {SECRET}" if code not in (204, 304) else None, headers=headers)

    return answer


@pytest.mark.parametrize(
    "behaviour, expected",
    [
        (_cut_short, 502), (_late, 504), (_too_large, 502), (_too_large_chunked, 502),
        (_status(404), 404), (_status(500), 500), (_status(503), 503), (_status(302, Location="/elsewhere"), 302),
        (_status(301, Location="http://origin/x"), 301), (_status(206, **{"Content-Range": "bytes 0-5/100"}), 502),
        (_status(204), 502), (_status(304), 304),
    ],
)  # fmt: skip
def test_what_is_not_delivered_whole_is_not_charged(proxy_edge, behaviour, expected):
    edge = proxy_edge
    edge.origin.behaviour = behaviour
    status, headers, body = edge.send("GET", "/articles/1.html", edge.voucher())
    assert status == expected, (status, body[:200])
    assert "PAYMENT-RESPONSE" not in headers and edge.charged() == 0
    if status in (502, 504):
        assert _json_code(body).startswith("upstream_")
        assert SECRET.encode() not in body


def test_range_and_conditionals_are_not_forwarded_on_a_priced_request(proxy_edge):
    edge = proxy_edge
    conditional = {"Range": "bytes=0-3", "If-Range": '"x"', "If-None-Match": "*", "If-Modified-Since": "Tue, 01 Dec 2026 00:00:00 GMT",
                   "If-Match": "*", "If-Unmodified-Since": "Tue, 01 Dec 2026 00:00:00 GMT"}  # fmt: skip
    status, headers, body = edge.send("GET", "/articles/1.html", {**conditional, **edge.voucher()})
    assert status == 200 and body.decode() == PAGES["/articles/1.html"]
    (_, _, forwarded), = edge.origin.received
    assert not set(conditional) & set(forwarded)
    edge.origin.received.clear()
    assert edge.send("GET", "/free/page.html", {"If-None-Match": '"abc"'})[0] == 200
    assert edge.origin.received[0][2]["If-None-Match"] == '"abc"', "free paths keep their conditionals"


def test_a_gzip_answer_is_relayed_as_sent_and_charged_once(proxy_edge):
    import gzip

    edge = proxy_edge
    packed = gzip.compress(PAGES["/articles/1.html"].encode())

    async def gzipped(request):
        return web.Response(body=packed, headers={"Content-Encoding": "gzip", "Content-Type": "text/html"})

    edge.origin.behaviour = gzipped
    status, headers, body = edge.send("GET", "/articles/1.html", {"Accept-Encoding": "gzip", **edge.voucher()})
    assert status == 200 and headers["Content-Encoding"] == "gzip" and body == packed
    assert int(headers["Content-Length"]) == len(packed) and edge.charged() == PRICE


def test_a_static_file_that_is_missing_or_unreadable_costs_nothing(static_edge, tmp_path, monkeypatch):
    import pathlib

    edge = static_edge
    status, headers, _ = edge.send("GET", "/articles/missing.html", edge.voucher())
    assert status == 404 and "PAYMENT-RESPONSE" not in headers
    locked = tmp_path / "site" / "articles" / "locked.html"
    locked.write_text(SECRET)
    real_read = pathlib.Path.read_bytes

    def unreadable(path):  # as a file the node's user may not read (tests may run as root)
        if path.name == "locked.html":
            raise PermissionError(13, "Permission denied")
        return real_read(path)

    monkeypatch.setattr(pathlib.Path, "read_bytes", unreadable)
    status, headers, body = edge.send("GET", "/articles/locked.html", edge.voucher())
    assert status == 503 and _json_code(body) == "content_unavailable" and "PAYMENT-RESPONSE" not in headers
    assert SECRET.encode() not in body and edge.charged() == 0


def test_a_large_priced_file_ignores_range_and_conditionals(static_edge, tmp_path):
    edge = static_edge
    data = os.urandom(SMALL_FILE + 12345)
    (tmp_path / "site" / "articles" / "big.bin").write_bytes(data)
    for headers in ({"Range": "bytes=0-99"}, {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, {"Range": "bytes=100-"}):
        status, response_headers, body = edge.send("GET", "/articles/big.bin", {**headers, **edge.voucher()})
        assert status == 200 and body == data, (headers, status, len(body))
    assert edge.charged() == PRICE, "bought once, re-read whole for free"
    status, _, body = edge.send("HEAD", "/articles/big.bin", edge.voucher())
    assert status == 402 and body == b""


def test_path_and_method_override_fields_never_reach_the_origin(proxy_edge):
    """Some origins take X-Original-URL (and kin) as the real path: a free path would read a priced one."""
    edge = proxy_edge
    overrides = {"X-Original-URL": "/articles/1.html", "X-Rewrite-URL": "/articles/1.html", "X-Override-URL": "/articles/1.html",
                 "X-Forwarded-Path": "/articles/1.html", "X-Forwarded-Prefix": "/articles", "X-HTTP-Method-Override": "GET",
                 "X-HTTP-Method": "GET", "X-Method-Override": "GET"}  # fmt: skip
    for target, extra in [("/free/page.html", {}), ("/articles/1.html", edge.voucher())]:
        edge.origin.received.clear()
        assert edge.send("GET", target, {**overrides, **extra})[0] == 200
        (_, _, forwarded), = edge.origin.received
        assert not set(overrides) & set(forwarded)


@pytest.mark.parametrize("mode", ["static", "proxy"])
def test_a_sold_answer_is_never_kept_by_a_shared_cache(chain, deployed, parties, channels, tmp_path, mode):
    edge = Edge(chain, deployed, parties, channels, tmp_path, mode)
    try:
        async def cacheable(request):
            return web.Response(text=PAGES["/articles/1.html"], headers={
                "Cache-Control": "public, max-age=86400", "Expires": "Fri, 01 Jan 2100 00:00:00 GMT",
                "Surrogate-Control": "max-age=86400", "CDN-Cache-Control": "max-age=86400"})  # fmt: skip

        edge.origin.behaviour = cacheable
        offer = edge.send("GET", "/articles/1.html")
        assert offer[0] == 402 and "no-store" in offer[1]["Cache-Control"]
        status, headers, body = edge.send("GET", "/articles/1.html", edge.voucher())
        assert status == 200 and SECRET.encode() in body
        assert headers.getall("Cache-Control") == ["private, no-store"]
        assert not {"Expires", "Surrogate-Control", "CDN-Cache-Control"} & set(headers)
    finally:
        edge.close()


def test_aiohttp_records_carry_no_traceback_whoever_handles_them(static_edge, caplog):
    """An embedded node (no logs.configure): the records reach the root logger's handlers, bounded."""
    import logging

    loggers = [logging.getLogger(name) for name in logs.AIOHTTP_LOGGERS]
    saved = [(logger.propagate, list(logger.handlers), logger.level) for logger in loggers]
    for logger in loggers:
        logger.propagate = True
        logger.handlers = [h for h in logger.handlers if not isinstance(h, logs._AiohttpLines)]
    try:
        with caplog.at_level(logging.DEBUG):
            for raw in MALFORMED:
                try:
                    static_edge.run(raw_http(static_edge.server.port, raw, 5))
                except (ConnectionError, IndexError, ValueError):
                    pass
        # (aiohttp.access is the test server's access log; the node runs without one: cli/main.py)
        records = [r for r in caplog.records if r.name.startswith("aiohttp") and r.name != "aiohttp.access"]
        assert len(records) >= 5
        for record in records:
            assert record.exc_info is None and MARKER not in record.getMessage() and len(record.getMessage()) < 300
        assert "Traceback" not in caplog.text
    finally:
        for logger, (propagate, handlers, level) in zip(loggers, saved, strict=True):
            logger.propagate, logger.handlers = propagate, handlers
            logger.setLevel(level)


REPORTED = {  # finding 1's examples: each is the article (402) or refused (400), never free
    "//articles/a.html": 402, "/./articles/a.html": 402, "/static/../articles/a.html": 402,
    "/static/%2e%2e/articles/a.html": 402, "/static/..%2farticles/a.html": 400, "/free/%252e%252e/articles/a.html": 400,
    "/articles/a.html%00": 400, "/static/%5c../articles/a.html": 400, "http://127.0.0.1/articles/a.html": 402,
}  # fmt: skip


@pytest.mark.parametrize("mode", ["static", "proxy"])
def test_the_reported_paths_are_the_article_or_refused(chain, deployed, parties, channels, tmp_path, mode):
    edge = Edge(chain, deployed, parties, channels, tmp_path, mode)
    try:
        for target, expected in REPORTED.items():
            status, headers, body = edge.send("GET", target)
            assert status == expected and SECRET.encode() not in body, (target, status)
            if status == 400:
                assert _json_code(body) in EDGE_CODES
            before = edge.charged()
            status, headers, body = edge.send("GET", target, edge.voucher())
            if expected == 400:
                assert status == 400 and edge.charged() == before
            else:
                assert status == 200 and body.decode() == PAGES["/articles/a.html"]
                assert decode_header(headers["PAYMENT-RESPONSE"])["chargedTotal"] == str(PRICE), "one purchase for every spelling"
        assert {t for _, t, _ in edge.origin.received} <= {"/articles/a.html"}
    finally:
        edge.close()
