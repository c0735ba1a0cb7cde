"""The reader's wallet never overpays, end to end through PayingSession: against the real node in
process (a deposit not confirmed yet, then confirmed: finding 7(a)), and against hostile aiohttp
servers on 127.0.0.1 in front of it that lie (7(b): a corrective 402 presenting the voucher just
sent as charged; receipts claiming more; bodies cut short after the charge; server errors after the
charge; redirects to another origin or path; prices or terms changing between 402 and retry)."""

from __future__ import annotations

import asyncio
import sqlite3

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import channel_node.node.runtime as runtime_module
from channel_node.client import (
    MIDDLEWARE_SUPPORTED,
    OfferRejected,
    PayingSession,
    Policy,
    ServerMisbehaved,
    SiteBlocked,
    Wallet,
    WalletStore,
    payment_middleware,
    site_of,
)
from channel_node.client.store import BLOCKED, OPEN
from channel_node.config import load_settings
from channel_node.wire.envelope import REQUIRED_HEADER, RESPONSE_HEADER, SIGNATURE_HEADER, decode_header, encode_header
from paywall_helpers import PRICE, async_web3, node_settings, start_node, write_site

GAS = 300_000


@pytest.fixture
async def site(tmp_path):
    root = write_site(tmp_path / "site")
    for n in range(10):
        (root / "articles" / f"a{n}.html").write_text(f"<h1>Article a{n}</h1>")
    return root


@pytest.fixture
async def running(chain, deployed, parties, site, tmp_path):
    node = await start_node(chain.tester, node_settings(deployed.address, parties.receiver.address, tmp_path / "node.db", content_dir=site))
    yield node
    await node.stop()


@pytest.fixture
def make_wallet(chain, parties, tmp_path):
    stores = []

    def make(policy: Policy | None = None, name: str = "wallet.db") -> Wallet:
        store = WalletStore(tmp_path / name)
        stores.append(store)
        return Wallet(async_web3(chain.tester), parties.payer.private_key, store, policy or Policy(), gas=GAS)

    yield make
    for store in stores:
        store.close()


def url_of(server, path: str) -> str:
    return str(server.make_url(path)) if isinstance(server, TestServer) else str(server.client.make_url(path))


async def node_state(running, channel: bytes):
    return (await running.node.store.load_channel(channel)).state


def paying(wallet: Wallet, **kw) -> PayingSession:
    kw.setdefault("retries", 5)
    kw.setdefault("retry_delay", 0.2)
    return PayingSession(wallet, **kw)


# ------------------------------------------------------------------ 7(a) against the real node


async def test_7a_attempts_before_the_deposit_is_confirmed_cost_nothing_and_credit_is_spent_first(
    chain, deployed, parties, site, tmp_path, make_wallet, monkeypatch
):
    monkeypatch.setattr(runtime_module, "UNKNOWN_CHANNEL_TTL", 0.0)
    chain.tester.mine_blocks(5)  # the confirmation depth has blocks below it
    settings = load_settings(
        contract=deployed.address, receiver=parties.receiver.address, database=tmp_path / "node.db", confirmations=4,
        close_margin=60, paywall={"prices": [{"path": "/articles/*", "price": PRICE}], "content_dir": site},
    )  # fmt: skip
    node = await start_node(chain.tester, settings)
    try:
        wallet = make_wallet()
        async with paying(wallet, retries=1, retry_delay=0.01) as session:
            for _ in range(3):  # a new user's first tries: the deposit is not confirmed yet
                result = await session.get(url_of(node, "/articles/a0.html"))
                assert result.status == 402 and result.charged == 0
                assert decode_header(result.headers[REQUIRED_HEADER])["error"] == "channel_unknown"
                [record] = wallet.channels()
                assert record.signed == PRICE, "a refused voucher is resent, not topped by another price"
            chain.tester.mine_blocks(4)
            for n in range(4):
                result = await session.get(url_of(node, f"/articles/a{n}.html"))
                assert (result.status, result.charged) == (200, PRICE)
        [record] = wallet.channels()
        state = await node_state(node, record.channel_id)
        assert record.signed == state.ceiling == state.charged == 4 * PRICE, "4 articles, 4 prices signed"
        assert wallet.ledger(record.channel_id).received == 4 * PRICE
    finally:
        await node.stop()


# ------------------------------------------------------------------ hostile servers


class Hostile:
    """A site in front of the real node. `mode` picks the lie; every request's PAYMENT-SIGNATURE is
    recorded with its path. Offers carry the real node's terms for this server's own URLs."""

    def __init__(self, running, mode: str = "honest") -> None:
        self.running = running
        self.mode = mode
        self.seen: list[tuple[str, str | None]] = []  # (path, PAYMENT-SIGNATURE)
        self.other: TestServer | None = None  # a second origin, for redirects
        self.lie_channel: str | None = None  # closing_lie about this channel only (None: every one)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app)
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Hostile:
        await self.server.start_server()
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.http.close()
        await self.server.close()

    def url(self, path: str) -> str:
        return url_of(self.server, path)

    @property
    def site(self) -> str:
        return site_of(self.url("/"))

    async def forward(self, request: web.Request, with_voucher: bool = True) -> tuple[int, dict, bytes]:
        headers = {k: v for k, v in request.headers.items() if with_voucher and k.upper() == SIGNATURE_HEADER.upper()}
        async with self.http.get(url_of(self.running, request.path), headers=headers, allow_redirects=False) as r:
            body = await r.read()
            out = {k: v for k, v in r.headers.items() if k.upper() in (REQUIRED_HEADER, RESPONSE_HEADER, "CONTENT-TYPE")}
            if REQUIRED_HEADER in out:  # the offer names this server's URL, as a real proxy's would
                document = decode_header(out[REQUIRED_HEADER])
                document["resource"]["url"] = str(request.url)
                out[REQUIRED_HEADER] = encode_header(document)
            return r.status, out, body

    async def handle(self, request: web.Request) -> web.StreamResponse:
        voucher = request.headers.get(SIGNATURE_HEADER)
        self.seen.append((request.path, voucher))
        mode = self.mode
        if mode == "closing_lie" and voucher and self.lie_channel not in (None, decode_header(voucher)["payload"]["channelId"]):
            mode = "honest"  # only that channel is said to be closing
        if mode == "redirect_unpaid" or (mode == "redirect_paid" and voucher is not None):
            target = self.other.make_url("/steal") if self.other is not None else "/elsewhere.html"
            raise web.HTTPFound(str(target))
        if voucher is not None and mode in ("echo_charged", "reprice", "other_payee", "other_resource", "closing_lie"):
            # Refuses every voucher with a corrective 402; the real node never sees it.
            payload = decode_header(voucher)["payload"]
            _, headers, _ = await self.forward(request, with_voucher=False)
            offer = decode_header(headers[REQUIRED_HEADER])
            accepts = offer["accepts"][0]
            offer["error"] = "insufficient_voucher"
            if mode == "echo_charged":  # 7(b): the voucher just sent, presented as already charged
                accepts["extra"]["channel"] = {
                    "channelId": payload["channelId"], "deposited": str(10**18), "claimed": "0",
                    "charged": payload["maxClaimableAmount"], "maxClaimableAmount": payload["maxClaimableAmount"],
                    "signature": payload["signature"], "closeDeadline": None, "settled": False,
                }  # fmt: skip
            elif mode == "reprice":
                accepts["amount"] = str(2 * PRICE)
            elif mode == "closing_lie":
                offer["error"] = "channel_closing"
            elif mode == "other_resource":
                offer["resource"]["url"] = self.url("/articles/a9.html")
            else:
                accepts["payTo"] = "0x" + "77" * 20
            return web.json_response(offer, status=402, headers={REQUIRED_HEADER: encode_header(offer)})
        status, headers, body = await self.forward(request)
        if voucher is None or status == 402:
            return web.Response(status=status, headers=headers, body=body)
        if mode == "server_error_after_charge":
            return web.Response(status=500, text="oops")
        if RESPONSE_HEADER in headers:
            receipt = decode_header(headers[RESPONSE_HEADER])
            if mode == "receipt_total_up":
                receipt["chargedTotal"] = str(int(receipt["chargedTotal"]) + PRICE)
            elif mode == "receipt_other_channel":
                receipt["channelId"] = "0x" + "ab" * 32
            elif mode == "receipt_other_payment":
                receipt["paymentId"] = "someone-else"
            headers[RESPONSE_HEADER] = encode_header(receipt)
            if mode == "cut_body":
                response = web.StreamResponse(status=200, headers={**headers, "Content-Length": str(len(body) + 100)})
                await response.prepare(request)
                await response.write(body[:5])
                request.transport.close()
                return response
        if mode == "no_receipt":
            headers.pop(RESPONSE_HEADER, None)
        return web.Response(status=status, headers=headers, body=body)


async def test_7b_a_corrective_402_presenting_the_voucher_just_sent_costs_one_price_then_blocks(running, make_wallet):
    wallet = make_wallet()
    async with Hostile(running, "echo_charged") as hostile, paying(wallet) as session:
        with pytest.raises(ServerMisbehaved, match="never|delivered"):
            await session.get(hostile.url("/articles/a0.html"))
        for n in (1, 2):
            with pytest.raises(SiteBlocked):
                await session.get(hostile.url(f"/articles/a{n}.html"))
    [record] = wallet.channels()
    assert record.status == BLOCKED and record.signed == PRICE, "one price, not six for three articles"
    assert sum(1 for _, v in hostile.seen if v) == 1, "one voucher sent, no retry above it"


@pytest.mark.parametrize("lie", ["receipt_total_up", "receipt_other_channel", "receipt_other_payment"])
async def test_receipts_that_claim_more_or_name_another_channel_or_payment_block(running, make_wallet, lie):
    wallet = make_wallet()
    async with Hostile(running) as hostile, paying(wallet) as session:
        assert (await session.get(hostile.url("/articles/a0.html"))).charged == PRICE
        hostile.mode = lie
        with pytest.raises(ServerMisbehaved):
            await session.get(hostile.url("/articles/a1.html"))
        with pytest.raises(SiteBlocked):
            await session.get(hostile.url("/articles/a2.html"))
    [record] = wallet.channels()
    assert record.signed == 2 * PRICE and record.status == BLOCKED
    assert wallet.ledger(record.channel_id).received == PRICE, "the lying response is not counted as received"


async def test_a_body_cut_short_after_the_charge_is_not_received_and_blocks_until_trusted(running, make_wallet):
    wallet = make_wallet()
    async with Hostile(running, "cut_body") as hostile:
        async with paying(wallet) as session:
            with pytest.raises(ServerMisbehaved, match="cut short"):
                await session.get(hostile.url("/articles/a0.html"))
            with pytest.raises(SiteBlocked):
                await session.get(hostile.url("/articles/a1.html"))
        [record] = wallet.channels()
        ledger = wallet.ledger(record.channel_id)
        assert (ledger.signed, ledger.received, ledger.lost) == (PRICE, 0, PRICE)
        assert (await node_state(running, record.channel_id)).charged == PRICE

        # The reader decides to trust it again: its channel is reopened, the loss accepted.
        assert wallet.trust(hostile.site) == [record.channel_id]
        hostile.mode = "honest"
        async with paying(wallet) as session:
            assert (await session.get(hostile.url("/articles/a1.html"))).charged == PRICE
    [record] = wallet.channels()
    assert record.status == OPEN and record.signed == 2 * PRICE
    assert (await node_state(running, record.channel_id)).charged == 2 * PRICE


async def test_a_server_error_after_the_charge_costs_at_most_one_price(running, make_wallet):
    wallet = make_wallet()
    async with Hostile(running, "server_error_after_charge") as hostile, paying(wallet) as session:
        assert (await session.get(hostile.url("/api/quote"))).status == 500
        hostile.mode = "honest"
        with pytest.raises(ServerMisbehaved):  # the node charged the 500: that voucher is stale now
            await session.get(hostile.url("/api/quote"))
    [record] = wallet.channels()
    assert record.signed == PRICE and (await node_state(running, record.channel_id)).charged == PRICE


async def test_a_success_without_receipt_then_honest_receipts(running, make_wallet):
    """A 200 without a receipt may have been charged: the next request resends the same voucher, and
    the honest node's answer shows it was (blocked) or the next quiet receipt settles it."""
    wallet = make_wallet()
    async with Hostile(running) as hostile, paying(wallet) as session:
        assert (await session.get(hostile.url("/articles/a0.html"))).charged == PRICE
        hostile.mode = "no_receipt"
        assert (await session.get(hostile.url("/articles/a1.html"))).status == 200  # charged, no receipt
        hostile.mode = "honest"
        # A free re-read of that article: the node served it as bought, so the charge was delivered.
        again = await session.get(hostile.url("/articles/a1.html"))
        assert again.status == 200 and again.charged == 0
        assert (await session.get(hostile.url("/articles/a2.html"))).charged == PRICE
    [record] = wallet.channels()
    ledger = wallet.ledger(record.channel_id)
    assert ledger.misbehaved is None and ledger.signed == ledger.received == 3 * PRICE and ledger.unsure == ()


async def test_redirects_never_carry_the_voucher(running, make_wallet):
    wallet = make_wallet()
    async with Hostile(running) as site_a, Hostile(running) as site_b, paying(wallet) as session:
        site_a.other = site_b.server
        site_b.mode = "honest"
        # Paid once: the session remembers the offer and pays the next request up front.
        assert (await session.get(site_a.url("/api/quote"))).charged == PRICE
        site_a.mode = "redirect_paid"  # answers a voucher with 302 to site B
        result = await session.get(site_a.url("/api/quote"))
        assert result.charged == 0
        site_a.mode = "redirect_unpaid"
        await session.get(site_a.url("/api/other"))
        # Same origin, another path: not sent there either.
        site_a.other = None
        site_a.mode = "redirect_paid"
        await session.get(site_a.url("/api/quote"))
    assert [p for p, v in site_b.seen if v] == [], "site A's voucher never reached site B"
    assert all(v is None for p, v in site_a.seen if p == "/elsewhere.html")
    assert site_b.seen, "the redirect was followed, without the header"


@pytest.mark.skipif(not MIDDLEWARE_SUPPORTED, reason="aiohttp < 3.12 has no client middlewares")
async def test_the_middleware_does_not_carry_the_voucher_across_a_redirect(running, make_wallet):
    wallet = make_wallet()
    async with Hostile(running) as site_a, Hostile(running) as site_b:
        site_a.other = site_b.server
        async with aiohttp.ClientSession(middlewares=(payment_middleware(wallet),)) as session:
            async with session.get(site_a.url("/api/quote")) as response:
                assert response.status == 200
            site_a.mode = "redirect_paid"
            async with session.get(site_a.url("/api/quote")) as response:
                await response.read()
    assert [p for p, v in site_b.seen if v] == []


async def test_a_price_or_payee_that_changes_between_the_402_and_the_retry_is_not_paid(running, make_wallet):
    wallet = make_wallet()
    async with Hostile(running) as hostile:
        for mode in ("reprice", "other_payee", "other_resource"):
            hostile.mode = mode
            async with paying(wallet) as session:
                with pytest.raises(OfferRejected):
                    await session.get(hostile.url("/articles/a0.html"))
    [record] = wallet.channels()
    assert record.signed == PRICE, "the first voucher is resent, nothing signed for the changed terms"


async def test_an_offer_for_another_resource_is_not_paid(running, make_wallet):
    wallet = make_wallet()

    async def lying_offer(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as http, http.get(url_of(running, "/articles/a0.html")) as r:
            document = decode_header(r.headers[REQUIRED_HEADER])
        document["resource"]["url"] = url_of(running, "/articles/a9.html")
        return web.json_response(document, status=402, headers={REQUIRED_HEADER: encode_header(document)})

    app = web.Application()
    app.router.add_get("/{tail:.*}", lying_offer)
    server = TestServer(app)
    await server.start_server()
    try:
        async with paying(wallet) as session:
            with pytest.raises(OfferRejected, match="another resource"):
                await session.get(url_of(server, "/articles/a0.html"))
    finally:
        await server.close()
    assert wallet.channels() == [], "no channel opened, nothing signed"


async def test_the_signed_total_and_the_pending_request_are_durable_before_the_voucher_leaves(running, make_wallet, parties):
    wallet = make_wallet()
    seen_in_db = []
    second_seen = asyncio.Event()

    class Spy(Hostile):
        async def handle(self, request):
            voucher = request.headers.get(SIGNATURE_HEADER)
            if voucher is not None:
                amount = int(decode_header(voucher)["payload"]["maxClaimableAmount"])
                with sqlite3.connect(wallet.store.path) as db:  # another connection: only committed data
                    signed, pending = db.execute("SELECT signed, pending FROM channels").fetchone()
                seen_in_db.append((amount, int(signed), pending, voucher))
                if len(seen_in_db) >= 2:
                    second_seen.set()
                if self.mode == "hang":
                    await asyncio.sleep(1.5)
                    return web.Response(status=504)  # never reached the node
            return await super().handle(request)

    async with Spy(running) as spy:
        async with paying(wallet) as session:
            assert (await session.get(spy.url("/articles/a0.html"))).charged == PRICE
            spy.mode = "hang"
            task = asyncio.create_task(session.get(spy.url("/articles/a1.html")))
            await second_seen.wait()
            task.cancel()  # the wallet process "dies" with the request in flight
            with pytest.raises(asyncio.CancelledError):
                await task
        assert [(a, s) for a, s, _, _ in seen_in_db] == [(PRICE, PRICE), (2 * PRICE, 2 * PRICE)]
        assert all(p != "[]" for _, _, p, _ in seen_in_db), "the request is pending in the database"
        sent_second = seen_in_db[1][3]

        restarted = Wallet(wallet.w3, parties.payer.private_key, wallet.store, Policy(), gas=GAS)
        spy.mode = "honest"
        async with paying(restarted) as session:
            result = await session.get(spy.url("/articles/a1.html"))
            assert result.status == 200
        again = [v for p, v in spy.seen if v][-1]
        first, second = decode_header(sent_second)["payload"], decode_header(again)["payload"]
        assert (second["maxClaimableAmount"], second["signature"]) == (first["maxClaimableAmount"], first["signature"]), (
            "the same total, the same voucher: nothing re-signed after the restart"
        )
    [record] = restarted.channels()
    assert record.signed == 2 * PRICE and (await node_state(running, record.channel_id)).charged == 2 * PRICE


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(script=st.lists(st.sampled_from(["honest", "honest", "no_receipt", "server_error_after_charge", "echo_charged",
                                         "receipt_total_up", "cut_body"]), min_size=1, max_size=4))  # fmt: skip
def test_any_sequence_of_hostile_answers_keeps_the_bound(chain, deployed, parties, site, tmp_path, script):
    """Random sequences of honest and lying answers from one site: what it can claim beyond the
    content delivered stays at most one price, and a blocked site gets no further voucher."""

    async def run() -> None:
        name = f"node-{abs(hash(tuple(script)))}-{len(list(tmp_path.iterdir()))}"
        node = await start_node(chain.tester, node_settings(deployed.address, parties.receiver.address, tmp_path / f"{name}.db", content_dir=site))
        store = WalletStore(tmp_path / f"{name}-wallet.db")
        wallet = Wallet(async_web3(chain.tester), parties.payer.private_key, store, Policy(), gas=GAS)
        delivered = 0
        try:
            async with Hostile(node) as hostile, paying(wallet) as session:
                for n, mode in enumerate(script):
                    hostile.mode = mode
                    try:
                        result = await session.get(hostile.url(f"/api/item-{n}"))
                    except ServerMisbehaved:
                        continue
                    if result.status == 200 and result.receipt is not None:
                        delivered += PRICE
            record = wallet.channels()[0]
            stored = await node.node.store.load_channel(record.channel_id)  # None: it never saw a voucher
            assert record.signed - delivered <= PRICE, f"{script}: signed {record.signed} for {delivered}"
            assert stored is None or stored.state.ceiling <= record.signed
        finally:
            store.close()
            await node.stop()

    asyncio.run(run())


async def test_the_cli_says_so_in_one_line_and_trust_lets_the_reader_pay_again(running, make_wallet, parties, tmp_path, capsys):
    from channel_node.cli import wallet as wallet_cli
    from channel_node.cli.main import main

    wallet = make_wallet()  # its database is tmp_path / "wallet.db", the CLI's --wallet folder
    async with Hostile(running, "echo_charged") as hostile:
        async with paying(wallet) as session:
            with pytest.raises(ServerMisbehaved):
                await session.get(hostile.url("/articles/a0.html"))

        async def blocked(args, action, waiting=None):
            async with paying(wallet) as session:
                return await session.get(args.url)

        original = wallet_cli._with_wallet
        wallet_cli._with_wallet = blocked
        try:
            capsys.readouterr()
            code = await asyncio.to_thread(main, ["wallet", "get", hostile.url("/articles/a1.html"), "--wallet", str(tmp_path)])
        finally:
            wallet_cli._with_wallet = original
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
        assert f"channel-node wallet trust {hostile.site}" in err[0] and "Traceback" not in err[0]

        code = await asyncio.to_thread(main, ["wallet", "trust", hostile.site, "--wallet", str(tmp_path)])
        out = capsys.readouterr().out
        [record] = wallet.channels()
        assert code == 0 and record.hex_id in out and record.status == OPEN
        hostile.mode = "honest"
        again = Wallet(wallet.w3, parties.payer.private_key, wallet.store, Policy(), gas=GAS)  # a new process
        async with paying(again) as session:
            assert (await session.get(hostile.url("/articles/a1.html"))).charged == PRICE
    [record] = again.channels()
    assert record.signed == 2 * PRICE and (await node_state(running, record.channel_id)).charged == PRICE


async def test_a_site_claiming_the_channel_is_closing_while_the_chain_shows_it_open_gets_no_new_channel(
    running, make_wallet
):
    wallet = make_wallet()
    async with Hostile(running, "closing_lie") as hostile, paying(wallet) as session:
        for n in range(3):
            result = await session.get(hostile.url(f"/articles/a{n}.html"))
            assert result.status == 402 and result.charged == 0
    [record] = wallet.channels()
    assert record.status == OPEN and record.signed == PRICE, "one channel, one voucher resent"


async def test_a_channel_really_closing_on_chain_is_left_for_a_new_one(running, make_wallet):
    wallet = make_wallet()
    async with Hostile(running) as hostile, paying(wallet) as session:
        assert (await session.get(hostile.url("/articles/a0.html"))).charged == PRICE
        [old] = wallet.channels()
        await wallet.request_close(old.channel_id)
        wallet.store.update_channel(old.channel_id, status=OPEN)  # as if the wallet had not recorded it
        hostile.mode, hostile.lie_channel = "closing_lie", old.hex_id  # the node says so (within its margin)
        result = await session.get(hostile.url("/articles/a1.html"))
        assert (result.status, result.charged) == (200, PRICE)
    old_now, new = wallet.channels()
    assert old_now.status == "closing" and old_now.signed == 2 * PRICE, "the refused voucher, nothing more"
    assert new.signed == PRICE and new.channel_id != old.channel_id


async def test_a_site_naming_another_sites_receiver_never_gets_that_sites_vouchers(running, make_wallet):
    """Site A's 402 names the receiver the reader already pays on site B: A gets a channel of its own,
    so B's vouchers (and B's credit) never reach A."""
    wallet = make_wallet()
    async with Hostile(running) as site_b, Hostile(running) as site_a, paying(wallet) as session:
        assert (await session.get(site_b.url("/articles/a0.html"))).charged == PRICE
        [b_channel] = wallet.channels()
        assert (await session.get(site_a.url("/articles/a1.html"))).charged == PRICE
        assert (await session.get(site_b.url("/articles/a2.html"))).charged == PRICE
    ids_seen_by_a = {decode_header(v)["payload"]["channelId"] for _, v in site_a.seen if v}
    assert b_channel.hex_id not in ids_seen_by_a and len(ids_seen_by_a) == 1
    assert len(wallet.channels()) == 2
    assert wallet.store.channel(b_channel.channel_id).signed == 2 * PRICE


@pytest.mark.parametrize(
    ("named", "ok"),
    [
        ("/articles/a.html", True),  # a node without public_url names the path alone
        ("https://news.example/articles/a.html", True),  # scheme and port may differ behind TLS
        ("/articles/b.html", False),
        ("//evil.example/articles/a.html", False),
        ("https://evil.example/articles/a.html", False),
        ("articles/a.html", False),
        (None, False),
    ],
)
def test_the_offer_must_name_the_resource_requested(named, ok):
    from channel_node.client.session import _check_resource
    from channel_node.client.wallet import OfferRejected

    document = {"resource": {"url": named}}
    if ok:
        _check_resource(document, "http://news.example:8402/articles/a.html")
    else:
        with pytest.raises(OfferRejected):
            _check_resource(document, "http://news.example:8402/articles/a.html")
