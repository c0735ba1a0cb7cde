"""New variants of the reported classes, tried against the running node (docs/security.md, "The
node, attacked again")."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.wire.envelope import decode_header
from paywall_helpers import PRICE, Payer
from test_edge import PRICES, SECRET, Edge, proxy_edge, request_bytes, static_edge  # noqa: F401 (fixtures)

PREMIUM = f"<h1>Premium</h1><p>{SECRET} premium index</p>"


@pytest.fixture
def folder_edge(chain, deployed, parties, channels, tmp_path):
    """A static site with a priced section whose folder has an index file."""
    prices = [*PRICES, {"path": "/premium/*", "price": PRICE, "description": "premium"}]
    edge = Edge(chain, deployed, parties, channels, tmp_path, "static", prices=prices)
    (tmp_path / "site" / "premium").mkdir()
    (tmp_path / "site" / "premium" / "index.html").write_text(PREMIUM)
    yield edge
    edge.close()


@pytest.mark.parametrize("folder", ["/premium", "/premium/", "/premium/index.html"])
@pytest.mark.parametrize("later", ["/premium", "/premium/", "/premium/index.html", "//premium/./"])
def test_a_folder_read_once_stays_priced_under_every_name(folder_edge, folder, later):
    """A paid read of a priced folder's index must not make any of its names free afterwards."""
    edge = folder_edge
    status, headers, body = edge.send("GET", folder, edge.voucher())
    assert status == 200 and SECRET.encode() in body
    assert decode_header(headers["PAYMENT-RESPONSE"])["chargedAmount"] == str(PRICE)
    status, _, body = edge.send("GET", later)
    assert status == 402 and SECRET.encode() not in body, (folder, later)
    status, headers, _ = edge.send("GET", later, edge.voucher())
    assert status == 200 and decode_header(headers["PAYMENT-RESPONSE"])["chargedAmount"] == "0", "one purchase"


@pytest.mark.parametrize("mode", ["static", "proxy"])
@pytest.mark.parametrize("rule", ["/premium", "/premium/", "/reports/*/"])
def test_an_index_file_named_directly_costs_what_its_folder_costs(chain, deployed, parties, channels, tmp_path, mode, rule):
    folder = "/reports/x/" if rule.startswith("/reports") else "/premium/"
    prices = [*PRICES, {"path": rule, "price": PRICE, "description": "a folder"}]
    edge = Edge(chain, deployed, parties, channels, tmp_path, mode, prices=prices)
    try:
        (tmp_path / "site" / folder.strip("/")).mkdir(parents=True)
        (tmp_path / "site" / folder.strip("/") / "index.html").write_text(PREMIUM)
        edge.origin.behaviour = _serve_folder(folder)
        for target in (folder, folder + "index.html", folder + "INDEX.HTML", folder + "index.htm"):
            status, _, body = edge.send("GET", target)
            assert status in (402, 404) and SECRET.encode() not in body, (target, status)
        # an exact free entry for the index itself still wins (the sample sites list their index free)
        status, _, body = edge.send("GET", "/articles/index.html")
        assert status == 200
    finally:
        edge.close()


def _serve_folder(folder: str):
    from aiohttp import web

    async def behaviour(request):
        path = request.path.lower()
        if path in (folder, folder.rstrip("/"), folder + "index.html", folder + "index.htm"):
            return web.Response(text=PREMIUM, content_type="text/html")
        if path == "/articles/index.html":
            return web.Response(text="<h1>Article list</h1>", content_type="text/html")
        return web.Response(status=404, text="origin: not found")

    return behaviour


def _error_page(code: int, **headers):
    from aiohttp import web

    async def answer(request):  # a soft 404, a debugging 500, a redirect whose body is the page
        return web.Response(status=code, text=f"origin {code}: {SECRET} the whole article", headers=headers)

    return answer


@pytest.mark.parametrize("code", [301, 302, 400, 403, 404, 410, 451, 500, 503])
def test_an_origin_error_page_on_a_priced_path_shows_nothing_of_it(proxy_edge, code):
    """Whatever the origin answers besides a whole 200 is relayed as its status, never its body
    (it may be the article), and costs nothing."""
    edge = proxy_edge
    edge.origin.behaviour = _error_page(code, Location="/elsewhere")
    status, headers, body = edge.send("GET", "/articles/1.html", edge.voucher())
    assert status == code and SECRET.encode() not in body and "PAYMENT-RESPONSE" not in headers
    assert json.loads(body)["error"] == "upstream_status" and edge.charged() == 0
    if code in (301, 302):
        assert headers["Location"] == "/elsewhere"


def test_a_voucher_that_cannot_pay_never_reaches_the_origin(proxy_edge, channels):
    """Forged, unknown-channel, too-low or stale vouchers are refused before the origin does any
    work (a priced POST would otherwise run for free) or shows any answer."""
    edge = proxy_edge
    edge.origin.behaviour = _error_page(404)
    forged = {"PAYMENT-SIGNATURE": edge.payer.header(10**6 * PRICE, key=b"\x11" * 32)}
    low = {"PAYMENT-SIGNATURE": edge.payer.header(PRICE - 1)}
    stranger = Payer(channels, channels.config(salt=987))  # a channel never opened
    unknown = {"PAYMENT-SIGNATURE": stranger.header(PRICE)}
    for headers in (forged, low, unknown):
        for method, target in (("GET", "/articles/1.html"), ("POST", "/api/order")):
            status, _, body = edge.send(method, target, headers, b"{}" if method == "POST" else b"")
            assert status == 402 and SECRET.encode() not in body, (method, status)
    assert edge.origin.received == [] and edge.charged() == 0
    edge.origin.behaviour = None
    assert edge.send("GET", "/articles/1.html", {"PAYMENT-SIGNATURE": edge.payer.header(PRICE)})[0] == 200
    assert edge.send("GET", "/articles/a.html", {"PAYMENT-SIGNATURE": edge.payer.header(PRICE)})[0] == 402  # stale
    assert len(edge.origin.received) == 1 and edge.charged() == PRICE


FAMILY = ["X-Original-URI", "X-Original-Path", "X-Forwarded-Uri", "X-Forwarded-Url", "X-Forwarded-Host", "X-Forwarded-Proto",
          "X-Forwarded-Script-Name", "X-Envoy-Original-Path", "X-Rewrite-URI", "X-Override-Path", "X-Script-Name", "Forwarded",
          "X-Matched-Path", "X-Host", "X-Foo-Method-Override", "x-forwarded-prefix"]  # fmt: skip


@pytest.mark.parametrize("target", ["/free/page.html", "/articles/1.html"])
def test_no_routing_field_of_the_client_reaches_the_origin(proxy_edge, target):
    """Routing fields beyond the reported ones (nginx's X-Original-URI, Traefik's X-Forwarded-Uri,
    Envoy's X-Envoy-Original-Path, Werkzeug's X-Script-Name, RFC 7239 Forwarded...) are dropped by
    family, never passed on for an origin to take as the real path or host."""
    edge = proxy_edge
    extra = edge.voucher() if target.startswith("/articles") else {}
    fields = {name: "/articles/1.html" if "method" not in name.lower() else "GET" for name in FAMILY}
    fields["Forwarded"] = "host=premium.example;proto=https"
    fields["X-Forwarded-For"] = "10.0.0.1"
    assert edge.send("GET", target, {**fields, "X-Request-Id": "kept", **extra})[0] == 200
    (_, _, forwarded), = edge.origin.received
    assert not {name.lower() for name in FAMILY} & {name.lower() for name in forwarded}
    assert forwarded["X-Request-Id"] == "kept", "other end-to-end fields still pass"
    assert forwarded.getall("X-Forwarded-For") == ["127.0.0.1"], "the node says who asked; the client cannot"


class RawOrigin:
    """An origin written by hand: answers every request with `answer` bytes, then closes."""

    def __init__(self, answer: bytes):
        self.answer = answer
        self.requests = 0

    async def start(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader, writer):
        self.requests += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(self.answer)
        await writer.drain()
        writer.close()


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_a_priced_answer_ended_by_closing_the_connection_is_never_sold(proxy_edge, version):
    """Without Content-Length or chunked framing the origin's body ends when it closes the
    connection, so a page cut short looks whole: it is a 502 and costs nothing."""
    edge = proxy_edge
    origin = RawOrigin(f"HTTP/{version} 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<h1>One</h1><p>{SECRET} half of".encode())
    edge.node.paywall.source.upstream = edge.run(origin.start())
    status, headers, body = edge.send("GET", "/articles/1.html", edge.voucher())
    assert status == 502 and json.loads(body)["error"] == "upstream_unframed" and SECRET.encode() not in body
    assert "PAYMENT-RESPONSE" not in headers and edge.charged() == 0 and origin.requests == 1
    status, _, body = edge.send("GET", "/free/page.html")
    assert status == 200 and SECRET.encode() in body, "a free answer is relayed however it ends"
    framed = f"<h1>One</h1><p>{SECRET}</p>".encode()
    origin.answer = f"HTTP/{version} 200 OK\r\nContent-Length: {len(framed)}\r\n\r\n".encode() + framed
    status, headers, body = edge.send("GET", "/articles/1.html", edge.voucher())
    assert status == 200 and body == framed and edge.charged() == PRICE
    edge.run(_close(origin.server))


async def _close(server):
    server.close()
    await server.wait_closed()


def test_a_hard_link_never_serves_a_priced_file_under_a_free_name(static_edge, tmp_path):
    """A hard link is the same file under a second name (a deploy with `cp -l` or rsync
    --link-dest): a free name must not read a priced file, even one created after the node started
    or after the file was cached."""
    edge = static_edge
    site = tmp_path / "site"
    assert edge.send("GET", "/articles/1.html", edge.voucher())[0] == 200  # cached under its own name
    os.link(site / "articles" / "1.html", site / "free" / "hard.html")
    for target in ("/free/hard.html", "/free/../free/hard.html"):
        status, _, body = edge.send("GET", target)
        assert status == 404 and SECRET.encode() not in body, target
    time.sleep(1.1)  # the cache's revalidation: the priced file now has two names and is served under neither
    status, _, body = edge.send("GET", "/articles/1.html", edge.voucher())
    assert status == 404 and SECRET.encode() not in body
    os.unlink(site / "free" / "hard.html")
    assert edge.send("GET", "/articles/1.html", edge.voucher())[0] == 200
    assert edge.send("GET", "/free/page.html")[0] == 200, "a file with one name is served"


PAYMENT_IDS = itertools.count()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(first=st.tuples(st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]), st.binary(min_size=1, max_size=40)),
       other=st.tuples(st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]), st.binary(min_size=1, max_size=40)))  # fmt: skip
def test_a_payment_id_retries_only_the_request_it_paid_for(proxy_edge, first, other):
    """A retry (the same payment id) of a per-request priced call is free only for that very call:
    another method or body on the same path under the same id is another call, refused
    `payment_id_reused`, and never reaches the origin."""
    edge = proxy_edge
    edge.origin.behaviour = _echo
    edge.origin.received.clear()
    before = edge.charged()
    pid = f"p{next(PAYMENT_IDS)}"
    header = {"PAYMENT-SIGNATURE": edge.payer.header(before + PRICE, payment_id=pid)}
    status, headers, _ = edge.send(first[0], "/api/order", header, first[1])
    assert status == 200 and edge.charged() == before + PRICE
    status, headers, body = edge.send(other[0], "/api/order", header, other[1])
    if other == first:
        assert status == 200 and decode_header(headers["PAYMENT-RESPONSE"])["chargedAmount"] == "0", "a retry is free"
        assert len(edge.origin.received) == 2
    else:
        assert status == 402 and json.loads(body)["error"] == "payment_id_reused", (first, other)
        assert len(edge.origin.received) == 1, "the other call never reached the origin"
    assert edge.charged() == before + PRICE


async def _echo(request):
    from aiohttp import web

    return web.Response(body=await request.read() or b"-", content_type="application/octet-stream")


@given(st.sampled_from([".gz", ".br", ".zst", ".GZ", ".gz.br"]), st.sampled_from(["/premium.html", "/premium/", "/reports/x/index.html"]))
@settings(max_examples=40, deadline=None)
def test_a_compressed_copy_costs_what_its_file_costs(suffix, priced):
    """gzip_static-style siblings (`a.html.gz` beside `a.html`) are the same content under another
    name: they cost what the file costs, through an exact rule, a folder's rule or a pattern."""
    from channel_node.server.prices import Price, PriceTable

    table = PriceTable([Price("/premium.html", 5), Price("/premium/", 7), Price("/reports/*/", 9)], free=["/", "/free/*", "/free.html.gz"])
    file = priced + "index.html" if priced.endswith("/") else priced
    expected = table.price_of(priced, file)
    assert expected is not None
    assert table.price_of(file + suffix, file + suffix) == expected
    assert table.price_of("/free.html" + suffix, "/free.html" + suffix) is None or suffix != ".gz"
    assert table.price_of("/free/a.html" + suffix, "/free/a.html" + suffix) is None, "free stays free"
    assert table.price_of("/.gz", "/.gz") is None


def test_a_compressed_copy_is_priced_over_http(chain, deployed, parties, channels, tmp_path):
    import gzip

    prices = [*PRICES, {"path": "/premium.html", "price": PRICE, "description": "one page"}]
    edge = Edge(chain, deployed, parties, channels, tmp_path, "static", prices=prices)
    try:
        (tmp_path / "site" / "premium.html").write_text(PREMIUM)
        (tmp_path / "site" / "premium.html.gz").write_bytes(gzip.compress(PREMIUM.encode()))
        status, _, body = edge.send("GET", "/premium.html.gz", {"Accept-Encoding": "gzip"})
        assert status == 402 and PREMIUM.encode() not in body and gzip.compress(PREMIUM.encode()) not in body
        status, headers, body = edge.send("GET", "/premium.html.gz", edge.voucher())
        assert status == 200 and gzip.decompress(body) == PREMIUM.encode() and edge.charged() == PRICE
    finally:
        edge.close()


def test_a_page_turned_into_a_priced_folder_while_running_is_never_read_free(folder_edge, tmp_path):
    """A free file read (and cached) under a name that the publisher then turns into a folder whose
    index is priced: no request reads the index under the file's old, free price."""
    import shutil

    edge = folder_edge
    site = tmp_path / "site"
    shutil.rmtree(site / "premium")
    (site / "premium").write_text("<p>a free page, for now</p>")
    assert edge.send("GET", "/premium")[0] == 200  # free and cached
    (site / "premium").unlink()
    (site / "premium").mkdir()
    (site / "premium" / "index.html").write_text(PREMIUM)
    time.sleep(1.1)  # past the cache's revalidation
    for _ in range(3):
        status, _, body = edge.send("GET", "/premium")
        assert status in (402, 404) and SECRET.encode() not in body, status
    assert edge.send("GET", "/premium")[0] == 402


def test_credit_the_receiver_already_claimed_never_pays_a_second_time(static_edge, channels, parties):
    """The receiver's other node (or this node before its database was restored from an older
    backup) sold on the channel and claimed it: a voucher under the claimed total buys nothing here,
    and a sale is charged on top of it, so the next claim collects it."""
    edge = static_edge
    config = edge.payer.config
    header = lambda amount: {"PAYMENT-SIGNATURE": edge.payer.header(amount)}  # noqa: E731
    assert edge.send("GET", "/articles/1.html", header(PRICE))[0] == 200 and edge.charged() == PRICE
    claim = channels.contract.functions.claim(config.as_abi_tuple(), 5 * PRICE, 5 * PRICE, *channels.voucher(config, 5 * PRICE))
    channels.chain.transact(claim, parties.receiver.address)  # another node's five sales, claimed

    edge.run(edge.node.watcher.poll())
    for amount in (2 * PRICE, 5 * PRICE):
        status, _, body = edge.send("GET", "/articles/a.html", header(amount))
        assert status == 402 and SECRET.encode() not in body, amount
    assert edge.send("GET", "/articles/1.html", header(2 * PRICE))[0] == 402, "a re-read needs a current voucher too"
    status, headers, _ = edge.send("GET", "/articles/a.html", header(6 * PRICE))
    assert status == 200 and decode_header(headers["PAYMENT-RESPONSE"])["chargedAmount"] == str(PRICE)
    assert edge.charged() == 6 * PRICE


def _windows_variants(path: str):
    """How a case-insensitive Windows origin (NTFS, IIS, .NET's invariant upper-casing) may spell a
    path: any letter in either case, `i` as the dotless `ı` (which upper-cases to `I`)."""
    choices = [st.sampled_from(sorted({c, c.upper(), c.lower()} | ({"ı"} if c.lower() == "i" else set()))) for c in path]
    return st.tuples(*choices).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["/articles/1.html", "/premium.html", "/api/quote", "/articles/deep/x"]).flatmap(_windows_variants))
def test_every_spelling_a_case_insensitive_origin_reads_is_priced(path):
    from channel_node.server.prices import Price, PriceTable
    from channel_node.server.resource import Resource, canonical_resource

    table = PriceTable([Price("/articles/*", 10), Price("/premium.html", 99), Price("/api/*", 3)], ["/", "/static/*"])
    from urllib.parse import quote

    resource = canonical_resource(quote(path))  # as sent: UTF-8, percent-encoded
    assert isinstance(resource, Resource) and resource.path == path
    assert table.match(resource.path) == table.match(path.lower().replace("ı", "i")), path


@pytest.mark.parametrize("target", ["/premium.html::$DATA", "/premium.html:x:$DATA", "/premium.html%3A%3A$DATA", "/premium.html::%24data"])
def test_an_ntfs_stream_name_is_refused(target):
    from channel_node.server.resource import BAD_PATH, RefusedPath, canonical_resource

    refused = canonical_resource(target)
    assert isinstance(refused, RefusedPath) and refused.code == BAD_PATH
    assert not isinstance(canonical_resource("/wiki/Talk:Page"), RefusedPath), "a colon alone is still a path"


def test_no_cache_in_front_of_the_node_is_told_to_keep_a_sold_answer(proxy_edge):
    """nginx's proxy cache obeys X-Accel-Expires before Cache-Control, Akamai obeys Edge-Control:
    an origin's fields of that kind never reach the front of a sold answer."""
    from aiohttp import web

    edge = proxy_edge

    async def cacheable(request):
        return web.Response(text=f"<p>{SECRET}</p>", headers={
            "X-Accel-Expires": "86400", "Edge-Control": "cache-maxage=1d", "Fastly-Surrogate-Control": "max-age=86400"})  # fmt: skip

    edge.origin.behaviour = cacheable
    status, headers, body = edge.send("GET", "/articles/1.html", edge.voucher())
    assert status == 200 and SECRET.encode() in body and headers["Cache-Control"] == "private, no-store"
    assert not {"X-Accel-Expires", "Edge-Control", "Fastly-Surrogate-Control"} & set(headers)


@pytest.mark.parametrize("delay", [900, 3599, 3600, 7200])
def test_a_channel_whose_close_delay_is_below_the_offer_is_never_sold_on(chain, deployed, parties, channels, tmp_path, delay):
    """The offer says closeDelay.min = 3600 (the operator's node may be down for up to that long):
    a channel opened with a shorter delay (the contract's own minimum is 15 minutes) could be closed
    and finalized before the node's defence lands, so it is refused before anything is charged."""
    from test_edge import PRICES as prices

    edge = Edge(chain, deployed, parties, channels, tmp_path, "static", prices=prices)
    try:
        edge.node.runtime.close_delay_min = 3600  # as `close_delay_min = 3600` in the config sets it
        assert edge.node.paywall.offer is not None
        payer = Payer(channels, channels.open_eth(10 * PRICE, channels.config(close_delay=delay)))
        status, _, body = edge.send("GET", "/articles/1.html", {"PAYMENT-SIGNATURE": payer.header(PRICE)})
        if delay < 3600:
            assert status == 402 and json.loads(body)["error"] == "close_delay_too_short" and SECRET.encode() not in body
            assert edge.run(edge.node.store.load_channel(payer.id)) is None, "nothing recorded"
        else:
            assert status == 200
    finally:
        edge.close()


def test_the_configured_close_delay_minimum_is_the_runtime_rule(tmp_path, deployed, parties, chain):
    from channel_node.config import load_settings
    from channel_node.node.assembly import build_node
    from paywall_helpers import async_web3

    settings = load_settings(contract=deployed.address, receiver=parties.receiver.address, database=tmp_path / "n.db",
                             confirmations=1, close_delay_min=5400, paywall={"content_dir": tmp_path})  # fmt: skip

    async def build():
        node = await build_node(settings, async_web3(chain.tester))
        try:
            return node.runtime.close_delay_min, node.paywall.offer.close_delay_min
        finally:
            await node.close()

    assert asyncio.run(build()) == (5400, 5400)


@pytest.mark.parametrize("mode", ["static", "proxy"])
def test_an_empty_answer_to_a_priced_get_is_never_sold(chain, deployed, parties, channels, tmp_path, mode):
    """A 200 with nothing in it (a PHP worker that died, a file being rewritten) delivers nothing:
    a 502 that costs nothing, for a GET. The same page with its text is sold once."""
    from aiohttp import web

    edge = Edge(chain, deployed, parties, channels, tmp_path, mode)
    try:
        page = tmp_path / "site" / "articles" / "empty.html"
        page.write_text("")
        body = b""

        async def answer(request):
            return web.Response(body=body, content_type="text/html")

        edge.origin.behaviour = answer
        status, headers, reply = edge.send("GET", "/articles/empty.html", edge.voucher())
        assert status == 502 and json.loads(reply)["error"] == "upstream_unsellable"
        assert "PAYMENT-RESPONSE" not in headers and edge.charged() == 0
        page.write_text(PREMIUM)
        body = PREMIUM.encode()
        time.sleep(1.1) if mode == "static" else None
        status, headers, reply = edge.send("GET", "/articles/empty.html", edge.voucher())
        assert status == 200 and reply == PREMIUM.encode() and edge.charged() == PRICE
    finally:
        edge.close()


def _decode_then_split(target: str) -> str:
    """A careless origin (or a proxy before it) that percent-decodes the whole target, then splits
    off the query and fragment: `%3F` and `%23` end its path."""
    from urllib.parse import unquote

    return unquote(target).split("?", 1)[0].split("#", 1)[0]


@given(st.sampled_from(["/premium.html", "/articles/1.html"]), st.sampled_from(["%3F", "%3f", "%23", "%3Fx=1", "%23top", "%3F.css"]))
@settings(max_examples=40, deadline=None)
def test_an_encoded_query_or_fragment_mark_is_refused(path, suffix):
    from channel_node.server.prices import Price, PriceTable
    from channel_node.server.resource import BAD_PATH, RefusedPath, canonical_resource

    table = PriceTable([Price("/premium.html", 5), Price("/articles/*", 3)], ["/"])
    target = path + suffix
    result = canonical_resource(target)
    if not isinstance(result, RefusedPath):  # whatever is accepted is priced as the careless origin reads it
        assert table.match(result.path) == table.match(_decode_then_split(target)), target
    assert isinstance(result, RefusedPath) and result.code == BAD_PATH


@given(st.sampled_from(["/premium.php", "/articles/1.html", "/report.pdf"]),
       st.lists(st.sampled_from(["x.css", "free", "a.js", "", "index.html"]), min_size=1, max_size=3).map("/".join))  # fmt: skip
@settings(max_examples=60, deadline=None)
def test_a_path_below_a_priced_file_costs_what_the_file_costs(file, rest):
    """PATH_INFO: an origin runs `premium.php` for `/premium.php/x.css` (the classic cache-deception
    path); the node prices it as `premium.php`, through an exact rule or a pattern."""
    from channel_node.server.prices import Price, PriceTable
    from channel_node.server.resource import Resource, canonical_resource

    table = PriceTable([Price("/premium.php", 5), Price("/articles/*", 3), Price("/*.pdf", 7)], ["/", "/static/*", "/free/*"])
    resource = canonical_resource(file + "/" + rest)
    assert isinstance(resource, Resource)
    assert table.price_of(resource.path, resource.path) == table.match(file), resource.path
    assert table.price_of("/static/app.js/x.css", "/static/app.js/x.css") is None, "below a free file stays free"
    assert table.price_of("/free/v1.2/page", "/free/v1.2/page") is None


def test_a_path_info_origin_never_serves_a_priced_script_free(chain, deployed, parties, channels, tmp_path):
    from aiohttp import web

    prices = [*PRICES, {"path": "/premium.php", "price": PRICE, "description": "a script"}]
    edge = Edge(chain, deployed, parties, channels, tmp_path, "proxy", prices=prices)
    try:
        async def path_info(request):  # Apache + PHP: /premium.php/anything runs premium.php
            if request.path.startswith("/premium.php"):
                return web.Response(text=PREMIUM, content_type="text/html")
            return web.Response(status=404, text="origin: not found")

        edge.origin.behaviour = path_info
        for target in ("/premium.php/x.css", "/premium.php/", "/premium.php/a/b.js", "/Premium.PHP/x.css"):
            status, _, body = edge.send("GET", target)
            assert status == 402 and SECRET.encode() not in body, target
        assert edge.origin.received == []
    finally:
        edge.close()


def test_a_top_up_is_noticed_in_reverse_proxy_mode_too(proxy_edge, channels, parties):
    """The check before the origin is asked reads a top-up the node has not seen; the payment after
    the fetch must see it too (the check must not use up the per-channel refresh)."""
    edge = proxy_edge
    payer = Payer(channels, channels.open_eth(PRICE, channels.config()))
    assert edge.send("GET", "/articles/1.html", {"PAYMENT-SIGNATURE": payer.header(PRICE)})[0] == 200
    channels.chain.transact(channels.contract.functions.depositEth(payer.config.as_abi_tuple()), parties.payer.address, value=PRICE)
    time.sleep(1.05)  # deposit refreshes are rate-limited per channel
    status, headers, body = edge.send("GET", "/articles/a.html", {"PAYMENT-SIGNATURE": payer.header(2 * PRICE)})
    assert status == 200, body[:200]
    assert decode_header(headers["PAYMENT-RESPONSE"])["deposited"] == str(2 * PRICE)
    # and after a restart of the process's memory (no refresh seen yet for the channel)
    channels.chain.transact(channels.contract.functions.depositEth(payer.config.as_abi_tuple()), parties.payer.address, value=PRICE)
    edge.node.runtime._last_refresh.clear()
    edge.node.runtime._cache.clear()
    status, headers, body = edge.send("GET", "/articles/1.html?again", {"PAYMENT-SIGNATURE": payer.header(3 * PRICE)})
    assert status == 200 and decode_header(headers["PAYMENT-RESPONSE"])["deposited"] == str(3 * PRICE), body[:200]


def test_a_reader_who_left_before_the_answer_was_ready_is_not_charged(proxy_edge):
    """The origin is slow and the reader's client gives up (its own timeout, a closed tab): the
    answer can no longer be delivered, so nothing is charged for it."""
    from aiohttp import web

    edge = proxy_edge
    arrived = asyncio.Event()

    async def slow(request):
        arrived.set()
        await asyncio.sleep(0.5)
        return web.Response(text=f"<p>{SECRET}</p>", content_type="text/html")

    edge.origin.behaviour = slow

    async def leave_early():
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.server.port)
        writer.write(request_bytes("GET", "/articles/1.html", edge.voucher()))
        await writer.drain()
        await asyncio.wait_for(arrived.wait(), 5)
        writer.close()  # gone before the origin answers
        await asyncio.sleep(1.0)

    edge.run(leave_early())
    assert edge.charged() == 0
    status, headers, body = edge.send("GET", "/articles/1.html", edge.voucher())
    assert status == 200 and SECRET.encode() in body and edge.charged() == PRICE, "a reader who waits pays once"


def test_a_large_file_that_grows_while_sold_is_sent_as_it_was_priced(static_edge, tmp_path, monkeypatch):
    """A large priced file appended to between the charge and the end of the stream: the reader
    gets exactly the announced length (the connection stays well framed), never a longer body."""
    from channel_node.server import content as content_module

    edge = static_edge
    big = tmp_path / "site" / "articles" / "big.bin"
    big.write_bytes(b"a" * (content_module.SMALL_FILE + 10))
    real_fstat = os.fstat

    def fstat_then_grow(fd):
        result = real_fstat(fd)
        with open(big, "ab") as more:
            more.write(b"b" * 100_000)  # written after the node read the size it sells
        return result

    monkeypatch.setattr(content_module.os, "fstat", fstat_then_grow)
    status, headers, body = edge.send("GET", "/articles/big.bin", edge.voucher())
    assert status == 200 and int(headers["Content-Length"]) == len(body) == content_module.SMALL_FILE + 10
    assert body == b"a" * len(body) and edge.charged() == PRICE


@pytest.mark.parametrize("content_range", ["bytes 0-9/5000", "bytes */5000"])
def test_a_200_that_names_a_content_range_is_a_part_and_never_sold(proxy_edge, content_range):
    from aiohttp import web

    edge = proxy_edge

    async def part(request):
        return web.Response(text=f"<p>{SECRET[:10]}", headers={"Content-Range": content_range})

    edge.origin.behaviour = part
    status, headers, body = edge.send("GET", "/articles/1.html", edge.voucher())
    assert status == 502 and json.loads(body)["error"] == "upstream_unsellable" and edge.charged() == 0


_word = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=9)
_boiler = st.sampled_from(["nav", "header", "footer", "aside", "noscript", "template", 'div hidden', 'div aria-hidden="true"'])


@settings(max_examples=200, deadline=None)
@given(title=st.lists(_word, max_size=6).map(" ".join), article=st.lists(st.lists(_word, min_size=1, max_size=30).map(" ".join), min_size=1, max_size=3),
       boiler=st.lists(st.tuples(_boiler, st.lists(_word, min_size=1, max_size=200).map(" ".join)), max_size=4))  # fmt: skip
def test_a_short_article_among_menus_and_footers_keeps_its_text(title, article, boiler):
    """Menus, headers, footers and hidden copies can hold far more text than a short article: the
    teaser is measured against the article, never more than half its first paragraph nor a
    quarter of its text, whatever surrounds it."""
    from channel_node.server.browser import TEASER_FRACTION, teaser_from_html

    chrome = "".join(f"<{tag}>{text}</{tag.split()[0]}>" for tag, text in boiler)
    body = "".join(f"<p>{text}</p>" for text in article)
    page = f"<html><head><title>{title}</title></head><body>{chrome}<h1>{title}</h1>{body}{chrome}</body></html>"
    teaser = teaser_from_html(page)
    shown = teaser.removesuffix(" ...")
    words = shown[len(title):].removeprefix(". ") if title and shown.startswith(title) else shown
    article_text = len(" ".join(" ".join([title, title, *article]).split()))
    assert len(shown) <= article_text * TEASER_FRACTION[0] // TEASER_FRACTION[1] + 2
    assert len(words) <= len(article[0]) // 2, (teaser, article[0])
    for later in article[1:]:
        assert later not in words or later in article[0]


@pytest.mark.parametrize("rule", ["/premium/", "/premium/*"])
def test_a_folder_named_without_its_slash_costs_what_the_folder_costs(chain, deployed, parties, channels, tmp_path, rule):
    """An origin that answers `/premium` with the folder's index (no redirect to `/premium/`)."""
    prices = [*PRICES, {"path": rule, "price": PRICE, "description": "a folder"}]
    edge = Edge(chain, deployed, parties, channels, tmp_path, "proxy", prices=prices)
    try:
        edge.origin.behaviour = _serve_folder("/premium/")
        for target in ("/premium", "/PREMIUM", "/premium/", "/premium/index.html"):
            status, _, body = edge.send("GET", target)
            assert status == 402 and SECRET.encode() not in body, (target, status)
        assert edge.origin.received == []
    finally:
        edge.close()
