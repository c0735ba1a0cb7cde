"""Red-team variants against the reader's wallet (PayingSession, middleware, Wallet): hostile sites
on 127.0.0.1 in front of the real node, each trying to make the wallet sign, send or forget a
voucher it should not, or lock deposit after deposit (docs/security.md, "The wallet's exposure
bound")."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.client import OfferRejected, Policy, ServerMisbehaved, WalletError
from channel_node.wire.envelope import REQUIRED_HEADER, SIGNATURE_HEADER, decode_header, encode_header
from paywall_helpers import PRICE
from test_wallet_hostile import Hostile, make_wallet, node_state, paying, running, site, url_of  # noqa: F401


class Malformed(Hostile):
    """Answers every voucher with a 402 whose document is mangled by `self.mangle(document)`."""

    mangle = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        voucher = request.headers.get(SIGNATURE_HEADER)
        if voucher is None or self.mangle is None:
            return await super().handle(request)
        self.seen.append((request.path, voucher))
        _, headers, _ = await self.forward(request, with_voucher=False)
        document = decode_header(headers[REQUIRED_HEADER])
        document["resource"]["url"] = str(request.url)
        document["error"] = "insufficient_voucher"
        value = self.mangle(document)
        raw = value if isinstance(value, str) else encode_header(value)
        return web.Response(status=402, headers={REQUIRED_HEADER: raw}, text="{}")


def _extra_list(d):
    d["accepts"][0]["extra"] = [1, 2]
    return d


def _accepts_int(d):
    d["accepts"] = 5
    return d


def _channel_str(d):
    d["accepts"][0]["extra"]["channel"] = "x"
    return d


def _deep(d):
    import base64

    return base64.b64encode(b"[" * 2000 + b"]" * 2000).decode()


def _close_delay_str(d):
    d["accepts"][0]["extra"]["closeDelay"] = "3600"
    return d


MANGLES = [_extra_list, _accepts_int, _channel_str, _deep]


@pytest.mark.parametrize("mangle", MANGLES, ids=lambda f: f.__name__)
async def test_a_malformed_answer_to_a_voucher_never_leaves_its_price_reserved(running, make_wallet, mangle):
    wallet = make_wallet()
    async with Malformed(running) as hostile, paying(wallet) as session:
        assert (await session.get(hostile.url("/articles/a0.html"))).charged == PRICE
        hostile.mangle = staticmethod(mangle)
        for n in range(1, 4):
            try:
                await session.get(hostile.url(f"/articles/a{n}.html"))
            except Exception:  # whatever it raises, the reservation must not stay
                pass
        [record] = wallet.channels()
        assert wallet.ledger(record.channel_id).active == (), "no request stays in flight after its answer"
        hostile.mangle = None
        result = await session.get(hostile.url("/articles/a9.html"))
        assert result.charged == PRICE
    [record] = wallet.channels()
    assert record.signed == 2 * PRICE, "two articles delivered, two prices signed"


class SlowRefusal(Hostile):
    """Answers every voucher with `exceeds_deposit` (the wallet waits and resends)."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        voucher = request.headers.get(SIGNATURE_HEADER)
        if voucher is None or self.mode != "exceeds":
            return await super().handle(request)
        self.seen.append((request.path, voucher))
        _, headers, _ = await self.forward(request, with_voucher=False)
        document = decode_header(headers[REQUIRED_HEADER])
        document["resource"]["url"] = str(request.url)
        document["error"] = "exceeds_deposit"
        return web.Response(status=402, headers={REQUIRED_HEADER: encode_header(document)}, text="{}")


async def test_a_request_cancelled_while_it_waits_to_resend_leaves_nothing_reserved(running, make_wallet):
    """A caller's timeout (or Ctrl-C) while the wallet waits between attempts: the request's price
    must not stay reserved, or every later voucher of the process signs one more price."""
    wallet = make_wallet()
    async with SlowRefusal(running) as hostile, paying(wallet, retries=50, retry_delay=0.2) as session:
        assert (await session.get(hostile.url("/articles/a0.html"))).charged == PRICE
        hostile.mode = "exceeds"
        for n in range(1, 4):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(session.get(hostile.url(f"/articles/a{n}.html")), 0.3)
        [record] = wallet.channels()
        assert wallet.ledger(record.channel_id).active == ()
        hostile.mode = "honest"
        assert (await session.get(hostile.url("/articles/a9.html"))).charged == PRICE
    [record] = wallet.channels()
    assert record.signed == 2 * PRICE, "two articles delivered, two prices signed"


OFFER = {
    "scheme": "channel", "network": "eip155:31337", "amount": "1000", "asset": "0x" + "00" * 20,
    "payTo": "0x" + "11" * 20, "maxTimeoutSeconds": 60,
    "extra": {"contract": "0x" + "22" * 20, "receiverAuthorizer": "0x" + "00" * 20, "minDeposit": "1000",
              "closeDelay": {"min": 900, "max": 86400}, "once": True},
}  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**260), 2**260) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
FIELDS = ["amount", "network", "asset", "payTo", "extra", "scheme", "extra.contract", "extra.closeDelay",
          "extra.minDeposit", "extra.receiverAuthorizer", "extra.once", "extra.closeDelay.min", "extra.closeDelay.max"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(FIELDS), value=JSON)
def test_any_json_in_any_field_of_an_offer_is_parsed_or_refused_with_offer_rejected(field, value):
    import copy

    from channel_node.client.wallet import _parse_offer

    offer = copy.deepcopy(OFFER)
    *path, last = field.split(".")
    target = offer
    for part in path:
        target = target[part]
    target[last] = value
    try:
        terms = _parse_offer(offer, 31337)
    except OfferRejected:
        return
    assert isinstance(terms.price, int) and 0 < terms.price < 2**128
    assert terms.delay_min is None or type(terms.delay_min) is int


class Redirecting(Hostile):
    """Answers a voucher with a redirect to `self.target` (a URL of this or another site)."""

    target: str | None = None
    status = 302

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get(SIGNATURE_HEADER) is not None and self.target is not None:
            self.seen.append((request.path, request.headers[SIGNATURE_HEADER]))
            return web.Response(status=self.status, headers={"Location": self.target})
        return await super().handle(request)


def _vouchers(*sites) -> list[str]:
    return [v for s in sites for _, v in s.seen if v]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("where", ["same_site_other_path", "other_site"])
async def test_a_redirect_answering_a_voucher_never_makes_the_request_pay_again(running, make_wallet, status, where):
    """One request, one voucher: the page a paid request is redirected to (another article of the
    same site, or a priced page of another site) is not paid for by that request."""
    wallet = make_wallet()
    async with Redirecting(running) as site_a, Hostile(running) as site_b, paying(wallet) as session:
        site_a.status = status
        site_a.target = site_b.url("/articles/a5.html") if where == "other_site" else site_a.url("/articles/a5.html")
        result = await session.get(site_a.url("/articles/a1.html"))
        assert result.status == status and result.charged == 0
        assert len(_vouchers(site_a, site_b)) == 1, "one voucher for one request"
        assert len(wallet.channels()) == 1, "no channel opened for the page redirected to"


@pytest.mark.skipif(not __import__("channel_node.client", fromlist=["x"]).MIDDLEWARE_SUPPORTED, reason="aiohttp < 3.12")
@pytest.mark.parametrize("where", ["same_site_other_path", "other_site"])
async def test_the_middleware_never_pays_the_page_a_paid_request_is_redirected_to(running, make_wallet, where):
    from channel_node.client import payment_middleware

    wallet = make_wallet()
    async with Redirecting(running) as site_a, Hostile(running) as site_b:
        site_a.target = site_b.url("/articles/a5.html") if where == "other_site" else site_a.url("/articles/a5.html")
        async with aiohttp.ClientSession(middlewares=(payment_middleware(wallet, retry_delay=0.05),)) as session:
            async with session.get(site_a.url("/articles/a1.html")) as response:
                assert response.status == 402  # the page redirected to, unpaid
            assert len(_vouchers(site_a, site_b)) == 1, "one voucher for one request"
            site_a.target = None  # an honest answer afterwards is paid as usual
            async with session.get(site_a.url("/articles/a2.html")) as response:
                assert response.status == 200
    assert len(wallet.channels()) == 1


class Rotating(Hostile):
    """Every fresh 402 names new terms: a fresh receiver (`payTo`) or receiver authorizer."""

    field = "payTo"
    count = 0

    async def forward(self, request, with_voucher=True):
        status, headers, body = await super().forward(request, with_voucher)
        if REQUIRED_HEADER in headers and SIGNATURE_HEADER not in request.headers:  # each fresh offer
            document = decode_header(headers[REQUIRED_HEADER])
            Rotating.count += 1
            fresh = "0x" + f"{Rotating.count:040x}"
            accepts = document["accepts"][0]
            if self.field == "payTo":
                accepts["payTo"] = fresh
            else:
                accepts["extra"]["receiverAuthorizer"] = fresh
            headers[REQUIRED_HEADER] = encode_header(document)
        return status, headers, body


@pytest.mark.parametrize("field", ["payTo", "receiverAuthorizer"])
async def test_a_site_naming_new_terms_on_every_request_gets_one_channel(running, make_wallet, field):
    wallet = make_wallet()
    async with Rotating(running) as hostile, paying(wallet, retries=0) as session:
        hostile.field = field
        second = 0
        for n in range(4):
            try:
                await session.get(hostile.url(f"/articles/a{n}.html"))
            except OfferRejected as exc:  # the first: the node's refusal names its real terms
                second += "not opening a second channel" in str(exc)
        assert second == 3
    [record] = wallet.channels()
    assert record.signed <= PRICE


SPELLINGS = [
    "http://news.example/articles/a.html", "http://NEWS.Example/articles/a.html", "http://news.example./articles/a.html",
    "http://news.example:80/articles/a.html", "https://news.example:443/articles/a.html", "https://news.example/x",
    "http://news.example.:80/x", "https://NEWS.EXAMPLE.:443/x?y=1#z",
]  # fmt: skip


def test_every_spelling_of_one_host_is_one_site():
    """Blocks, per-site daily limits and the one-channel-per-site rule count by site: a site must not
    escape them by spelling its own host another way (case, a trailing dot, the default port, IDNA)."""
    from channel_node.client import site_of

    assert {site_of(u) for u in SPELLINGS} == {"news.example"}
    assert site_of("http://news.example:8402/a") == site_of("http://NEWS.example.:8402/b") == "news.example:8402"
    assert site_of("http://news.example:443/a") == "news.example:443", "443 is not http's default port"
    assert site_of("http://bücher.example/a") == site_of("http://xn--bcher-kva.example/a") == site_of("http://BÜCHER.example./")
    assert site_of("http://[::1]:8080/a") == site_of("http://[::1]:8080/b")


async def test_a_site_spelled_another_way_shares_the_per_site_daily_limit(running, make_wallet):
    from channel_node.client import SpendingLimitExceeded
    from test_wallet import offer_of

    wallet = make_wallet(Policy(per_site_daily_limit=PRICE))
    offer = await offer_of(running, "/articles/a0.html")
    await wallet.pay_for(offer, "http://news.example/articles/a0.html")
    for spelling in ("http://news.example./articles/a1.html", "http://NEWS.example:80/articles/a1.html"):
        with pytest.raises(SpendingLimitExceeded):
            await wallet.pay_for(offer, spelling)
    [record] = wallet.channels()
    assert record.signed == PRICE


class CloseDelimited:
    """A raw HTTP/1.1 site in front of the node: forwards each request, and answers a paid page
    without Content-Length or chunking (the body ends when the connection closes), cut after 5 bytes."""

    def __init__(self, running) -> None:
        self.running = running
        self.server: asyncio.base_events.Server | None = None
        self.cut = True

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc):
        await self.http.close()
        self.server.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        fields = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
        sent = {k: v for k, v in fields.items() if k.upper() == SIGNATURE_HEADER.upper()}
        async with self.http.get(url_of(self.running, path), headers=sent) as r:
            body = await r.read()
            keep = {k: v for k, v in r.headers.items() if k.upper().startswith("PAYMENT-") or k.upper() == "CONTENT-TYPE"}
            status = r.status
        if REQUIRED_HEADER in keep:
            document = decode_header(keep[REQUIRED_HEADER])
            document["resource"]["url"] = self.url(path)
            keep[REQUIRED_HEADER] = encode_header(document)
        if status == 200 and self.cut:
            body = body[:5]
        lines = [f"HTTP/1.1 {status} X", "Connection: close", *(f"{k}: {v}" for k, v in keep.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        writer.close()


async def test_a_charged_body_whose_end_cannot_be_checked_is_not_received(running, make_wallet):
    """Without Content-Length or chunking a body cut short looks whole: a charge for it is not
    counted as received (as a body cut short), so a site cannot make the wallet pay for fragments."""
    wallet = make_wallet()
    async with CloseDelimited(running) as hostile, paying(wallet) as session:
        with pytest.raises(ServerMisbehaved, match="cut short|whole"):
            await session.get(hostile.url("/articles/a0.html"))
    [record] = wallet.channels()
    ledger = wallet.ledger(record.channel_id)
    assert (ledger.received, ledger.lost) == (0, PRICE)


async def test_the_real_node_frames_every_paid_answer(running, make_wallet):
    """The honest node's paid answers carry Content-Length, so the rule above costs it nothing."""
    wallet = make_wallet()
    async with paying(wallet) as session:
        for path in ("/articles/a0.html", "/api/quote", "/articles/a0.html"):
            result = await session.get(url_of(running, path))
            assert result.status == 200 and "Content-Length" in result.headers
    [record] = wallet.channels()
    assert wallet.ledger(record.channel_id).received == 2 * PRICE


@pytest.fixture
def tls_context(tmp_path):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_a_redirect_from_https_to_http_is_never_paid_in_clear(running, make_wallet, tls_context):
    """A reader who asked for https is not made to send a voucher in clear text by a redirect to http
    (where anyone on the path could take it and spend it first)."""
    wallet = make_wallet()
    async with Hostile(running) as plain:
        app = web.Application()
        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(plain.url(request.path))

        app.router.add_get("/{tail:.*}", redirect)
        runner = web.AppRunner(app)
        await runner.setup()
        tls = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_context)
        await tls.start()
        port = tls._server.sockets[0].getsockname()[1]
        try:
            async with paying(wallet, connector=aiohttp.TCPConnector(ssl=False)) as session:
                result = await session.get(f"https://127.0.0.1:{port}/articles/a1.html")
                assert result.status == 402 and result.charged == 0
                # Asked for in clear text by the reader, the same page is paid as usual.
                assert (await session.get(plain.url("/articles/a1.html"))).charged == PRICE
        finally:
            await runner.cleanup()
    assert sum(1 for _, v in plain.seen if v) == 1, "the only voucher is the one the reader asked for over http"


async def test_a_proxied_page_with_another_query_is_bought_not_resent_as_a_re_read(chain, deployed, parties, tmp_path, make_wallet):
    """Behind a reverse proxy the query is part of a purchase (docs/protocol.md): the wallet must not
    take /articles/a.html?page=2 for the /articles/a.html?page=1 it bought, or it sends the old
    voucher as a free re-read, can never buy the page, and with credit left blocks the honest node."""
    from paywall_helpers import node_settings, start_node

    async def origin(request: web.Request) -> web.Response:
        return web.Response(text=f"<h1>{request.path_qs}</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", origin)
    upstream = TestServer(app)
    await upstream.start_server()
    node = await start_node(chain.tester, node_settings(deployed.address, parties.receiver.address, tmp_path / "proxy.db",
                                                        upstream=str(upstream.make_url("/"))))  # fmt: skip
    try:
        wallet = make_wallet()
        async with paying(wallet) as session:
            for page in (1, 2, 3):
                result = await session.get(url_of(node, f"/articles/a.html?page={page}"))
                assert (result.status, result.charged) == (200, PRICE) and f"page={page}" in result.text()
            again = await session.get(url_of(node, "/articles/a.html?page=2"))
            assert (again.status, again.charged) == (200, 0), "a page bought is read again for free"
        [record] = wallet.channels()
        assert record.signed == 3 * PRICE and wallet.ledger(record.channel_id).misbehaved is None
    finally:
        await node.stop()
        await upstream.close()


async def test_a_static_page_with_another_query_costs_nothing_more(running, make_wallet):
    """A static node ignores the query: the second spelling is a free re-read, and its voucher is
    credit the next article spends before anything new is signed."""
    wallet = make_wallet()
    async with paying(wallet) as session:
        assert (await session.get(url_of(running, "/articles/a0.html?x=1"))).charged == PRICE
        assert (await session.get(url_of(running, "/articles/a0.html?x=2"))).charged == 0
        assert (await session.get(url_of(running, "/articles/a1.html"))).charged == PRICE
    [record] = wallet.channels()
    assert record.signed == 2 * PRICE == (await node_state(running, record.channel_id)).charged


async def test_redirects_keep_the_callers_credentials_at_home_and_refuse_bad_locations(running, make_wallet):
    """PayingSession follows redirects itself, so it must do what aiohttp does: no Authorization to
    another origin; and a Location that is not a URL is a client error, not a traceback."""
    seen: list[tuple[str, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.host, request.headers.get("Authorization")))
        if request.path == "/to-other":
            raise web.HTTPFound(str(other.make_url("/landing")))
        if request.path == "/bad":
            return web.Response(status=302, headers={"Location": "http://[::1"})
        return web.Response(text="ok")

    app_a, app_b = web.Application(), web.Application()
    app_a.router.add_get("/{tail:.*}", handler)
    app_b.router.add_get("/{tail:.*}", handler)
    home, other = TestServer(app_a), TestServer(app_b)
    await home.start_server()
    await other.start_server()
    elsewhere = f"127.0.0.1:{other.make_url('/').port}"
    try:
        async with paying(make_wallet()) as session:
            result = await session.get(str(home.make_url("/to-other")), headers={"Authorization": "Bearer secret"})
            assert result.status == 200
            with pytest.raises(aiohttp.ClientError):
                await session.get(str(home.make_url("/bad")))
    finally:
        await home.close()
        await other.close()
    assert seen[0][1] == "Bearer secret" and seen[1] == (elsewhere, None)


@pytest.mark.parametrize("command", [["finalize", "0x" + "ab" * 32], ["topup", "0x" + "ab" * 32, "5"], ["channels"]])
def test_every_wallet_command_refuses_in_one_line(monkeypatch, capsys, tmp_path, command):
    """A refusal of finalize (the close delay is not over), topup or any other command is one
    `error:` line and exit 2, never a traceback."""
    from channel_node.cli import wallet as wallet_cli
    from channel_node.cli.main import main

    async def refusing(args, action, waiting=None):
        raise WalletError("the close delay of 0xab… is not over yet (about 60 s left)")

    monkeypatch.setattr(wallet_cli, "_with_wallet", refusing)
    code = main(["wallet", *command, "--wallet", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]


class Shifty(Hostile):
    """One site whose answer to each voucher is picked by `mode`: the variants above, mixed."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        voucher = request.headers.get(SIGNATURE_HEADER)
        mode = self.mode
        if voucher is None or mode in ("honest", "no_receipt", "server_error_after_charge", "echo_charged", "receipt_total_up"):
            return await super().handle(request)
        self.seen.append((request.path, voucher))
        if mode == "redirect_same":
            return web.Response(status=302, headers={"Location": self.url("/api/item-49")})
        if mode in ("malformed", "exceeds"):
            _, headers, _ = await self.forward(request, with_voucher=False)
            document = decode_header(headers[REQUIRED_HEADER])
            document["resource"]["url"] = str(request.url)
            document["error"] = "exceeds_deposit" if mode == "exceeds" else "insufficient_voucher"
            if mode == "malformed":
                document["accepts"] = 5
            return web.Response(status=402, headers={REQUIRED_HEADER: encode_header(document)}, text="{}")
        return await super().handle(request)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(script=st.lists(st.sampled_from(["honest", "honest", "redirect_same", "malformed", "exceeds", "no_receipt",
                                         "echo_charged", "server_error_after_charge"]), min_size=1, max_size=5))  # fmt: skip
def test_any_mix_of_the_new_variants_keeps_the_bound(chain, deployed, parties, site, tmp_path, script):
    """What a site mixing these answers can claim beyond the content delivered stays one price, no
    request stays reserved, and the wallet holds one channel for it."""
    from channel_node.client import Wallet, WalletStore
    from paywall_helpers import async_web3, node_settings, start_node
    from test_wallet_hostile import GAS

    async def run() -> None:
        name = f"mix-{len(list(tmp_path.iterdir()))}"
        node = await start_node(chain.tester, node_settings(deployed.address, parties.receiver.address, tmp_path / f"{name}.db", content_dir=site))
        store = WalletStore(tmp_path / f"{name}-wallet.db")
        wallet = Wallet(async_web3(chain.tester), parties.payer.private_key, store, Policy(), gas=GAS)
        delivered = 0
        try:
            async with Shifty(node) as hostile, paying(wallet, retries=1, retry_delay=0.01) as session:
                for n, mode in enumerate(script):
                    hostile.mode = mode
                    try:
                        result = await session.get(hostile.url(f"/api/item-{n}"))
                    except (WalletError, aiohttp.ClientError):
                        continue
                    if result.status == 200 and result.receipt is not None:
                        delivered += PRICE
            [record] = wallet.channels()
            assert record.signed - delivered <= PRICE, f"{script}: signed {record.signed} for {delivered}"
            assert wallet.ledger(record.channel_id).active == ()
        finally:
            store.close()
            await node.stop()

    asyncio.run(run())


async def test_a_lying_corrective_402_triggers_no_top_up(running, make_wallet):
    """A corrective 402 the wallet cannot account for blocks the site: it must not first make the
    wallet deposit more into the channel it is about to stop paying from."""
    wallet = make_wallet(Policy(deposit_multiple=2, topup_below=10))  # every payment finds the channel low
    async with Hostile(running) as hostile, paying(wallet) as session:
        assert (await session.get(hostile.url("/articles/a0.html"))).charged == PRICE
        [before] = wallet.channels()
        hostile.mode = "echo_charged"
        with pytest.raises(ServerMisbehaved):
            await session.get(hostile.url("/articles/a1.html"))
    [after] = wallet.channels()
    assert after.deposited - before.deposited <= 2 * PRICE, "the one top-up before the voucher, none for the lie"
