"""The reader wallet end to end against a real node over the in-process chain: one channel for a
hundred articles with top-ups, free re-reads, concurrent API calls, limits, a wallet restored from
an old copy, an overcharging server, and getting the unspent deposit back."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat

import aiohttp
import pytest

import channel_node.server.app as paywall_app
from channel_node.chain.erc20 import Erc20Client
from channel_node.client import (
    InsufficientFunds,
    OfferRejected,
    PayingSession,
    Policy,
    ServerMisbehaved,
    SiteBlocked,
    SpendingLimitExceeded,
    UnsupportedAsset,
    Wallet,
    WalletError,
    WalletStore,
    payment_middleware,
)
from channel_node.client.store import BLOCKED, CLOSING, ORPHANED, SETTLED
from channel_node.server.protocol import payment_response
from channel_node.signing import to_compact
from channel_node.wire.envelope import decode_header
from contract_helpers import deploy_test_contract, deploy_test_token
from paywall_helpers import PRICE, async_web3, node_settings, start_node, write_site

GAS = 300_000
ARTICLE_COUNT = 100


@pytest.fixture
async def site(tmp_path):
    root = write_site(tmp_path / "site")
    for n in range(ARTICLE_COUNT):
        (root / "articles" / f"a{n}.html").write_text(f"<h1>Article a{n}</h1>")
    return root


@pytest.fixture
async def running(chain, deployed, parties, site, tmp_path):
    settings = node_settings(deployed.address, parties.receiver.address, tmp_path / "node.db", content_dir=site)
    node = await start_node(chain.tester, settings)
    yield node
    await node.stop()


@pytest.fixture
def make_wallet(chain, parties, tmp_path):
    stores = []

    def make(policy: Policy | None = None, name: str = "wallet.db", **kw) -> Wallet:
        store = WalletStore(tmp_path / name)
        stores.append(store)
        return Wallet(async_web3(chain.tester), parties.payer.private_key, store, policy or Policy(), gas=GAS, **kw)

    yield make
    for store in stores:
        store.close()


def url(running, path: str) -> str:
    return str(running.client.make_url(path))


def paying(wallet: Wallet) -> PayingSession:
    # The node re-reads a channel's deposit at most once a second, so right after a top-up a voucher
    # can meet `exceeds_deposit`; the session resends it a little later.
    return PayingSession(wallet, retries=5, retry_delay=0.4)


def tamper(wallet: Wallet, sql: str, *args) -> None:
    """Edits the wallet's database behind its back, as a crash or a restored backup would."""
    with sqlite3.connect(wallet.store.path) as db:
        db.execute(sql, args)


async def node_state(running, channel: bytes):
    return (await running.node.store.load_channel(channel)).state


async def test_a_reader_buys_a_hundred_articles_from_one_channel(running, make_wallet, tmp_path, chain):
    wallet = make_wallet(Policy(deposit_multiple=30))
    assert stat.S_IMODE(os.stat(tmp_path / "wallet.db").st_mode) == 0o600, "the database holds voucher keys"
    async with paying(wallet) as session:
        for n in range(ARTICLE_COUNT):
            result = await session.get(url(running, f"/articles/a{n}.html"))
            assert (result.status, result.charged, result.text()) == (200, PRICE, f"<h1>Article a{n}</h1>")
        [record] = wallet.channels()
        signed = record.signed
        for n in (0, 17, 99):  # bought once: reading again is free and signs nothing new
            again = await session.get(url(running, f"/articles/a{n}.html"))
            assert again.status == 200 and again.charged == 0 and again.receipt["chargedAmount"] == "0"

    [record] = wallet.channels()
    assert record.charged == record.signed == signed == ARTICLE_COUNT * PRICE
    assert record.deposited == 120 * PRICE, "opened with 30 prices, topped up three times by 30"
    charges = await running.node.store.charges(record.channel_id)
    assert len(charges) == ARTICLE_COUNT and sum(c.amount for c in charges) == ARTICLE_COUNT * PRICE
    state = await node_state(running, record.channel_id)
    assert state.charged == state.ceiling == ARTICLE_COUNT * PRICE
    assert chain.w3.eth.get_balance(running.node.paywall.offer.contract) >= record.deposited


async def test_twenty_concurrent_api_calls_never_sign_the_same_amount(running, make_wallet):
    wallet = make_wallet()
    amounts: list[int] = []
    pay_for = wallet.pay_for

    async def spy(*args, **kwargs):
        header = await pay_for(*args, **kwargs)
        amounts.append(header.amount)
        return header

    wallet.pay_for = spy  # type: ignore[method-assign]
    async with paying(wallet) as session:
        results = await asyncio.gather(*(session.get(url(running, f"/api/item-{i}")) for i in range(20)))
    assert all(r.status == 200 and r.charged == PRICE for r in results)
    assert sorted(amounts) == [PRICE * n for n in range(1, 21)], "one increment per request, none signed twice"
    [record] = wallet.channels()
    assert record.charged == record.signed == 20 * PRICE
    state = await node_state(running, record.channel_id)
    assert state.charged == 20 * PRICE
    assert len(await running.node.store.charges(record.channel_id)) == 20


async def test_spending_limits_refuse_before_anything_is_signed(running, make_wallet):
    strict = make_wallet(Policy(per_request_limit=PRICE - 1), name="strict.db")
    async with paying(strict) as session:
        with pytest.raises(SpendingLimitExceeded, match="per-request limit"):
            await session.get(url(running, "/articles/a1.html"))
    assert strict.channels() == [], "no channel is opened for a refused payment"

    wallet = make_wallet(Policy(per_site_daily_limit=3 * PRICE))
    async with paying(wallet) as session:
        for n in range(3):
            assert (await session.get(url(running, f"/articles/a{n}.html"))).charged == PRICE
        [before] = wallet.channels()
        with pytest.raises(SpendingLimitExceeded, match="per-site daily limit"):
            await session.get(url(running, "/articles/a3.html"))
    [after] = wallet.channels()
    assert after.signed == before.signed == 3 * PRICE and after.signature == before.signature
    assert (await node_state(running, after.channel_id)).charged == 3 * PRICE

    daily = make_wallet(Policy(daily_limit=PRICE), name="daily.db")
    async with paying(daily) as session:
        assert (await session.get(url(running, "/api/quote"))).charged == PRICE
        with pytest.raises(SpendingLimitExceeded, match="above the daily limit"):
            await session.get(url(running, "/api/quote"))
    assert daily.channels()[0].signed == PRICE


async def test_offers_the_wallet_must_not_pay(running, make_wallet, parties):
    wallet = make_wallet()
    async with aiohttp.ClientSession() as plain, plain.get(url(running, "/articles/a1.html")) as response:
        offer = decode_header(response.headers["PAYMENT-REQUIRED"])["accepts"][0]
    target = url(running, "/articles/a1.html")
    with pytest.raises(OfferRejected, match="network"):
        await wallet.pay_for({**offer, "network": "eip155:1"}, target)
    with pytest.raises(OfferRejected, match="not a ChannelDeposit"):
        await wallet.pay_for({**offer, "extra": {**offer["extra"], "contract": parties.other.address}}, target)
    with pytest.raises(UnsupportedAsset):
        await wallet.pay_for({**offer, "asset": parties.other.address}, target)
    with pytest.raises(OfferRejected, match="close delay"):
        await wallet.pay_for({**offer, "extra": {**offer["extra"], "closeDelay": {"min": 7200, "max": 9000}}}, target)
    assert wallet.channels() == []


async def test_a_wallet_behind_the_node_resyncs_without_paying_twice(running, make_wallet, parties, caplog):
    wallet = make_wallet()
    async with paying(wallet) as session:
        for n in range(3):
            await session.get(url(running, f"/articles/a{n}.html"))
    [record] = wallet.channels()

    # Lost only the charged total (a crash before receipts were recorded): a restarted wallet
    # still signs above what the node holds, and re-baselines from the next receipt.
    tamper(wallet, "UPDATE channels SET charged = '0'")
    restarted = Wallet(wallet.w3, parties.payer.private_key, wallet.store, Policy(), gas=GAS)
    async with paying(restarted) as session:
        result = await session.get(url(running, "/articles/a3.html"))
    assert result.status == 200 and result.charged == PRICE
    assert restarted.store.channel(record.channel_id).charged == 4 * PRICE

    # Restored from a copy taken before the first payment: signed and charged both behind the
    # node. The first voucher is stale; the corrective 402 proves the node holds our voucher for
    # 4 prices, and the retry pays exactly one more price.
    tamper(wallet, "UPDATE channels SET charged = '0', signed = '0', signature = NULL, acknowledged = 0")
    tamper(wallet, "DELETE FROM purchases")
    restored = Wallet(wallet.w3, parties.payer.private_key, wallet.store, Policy(), gas=GAS)
    with caplog.at_level(logging.WARNING, logger="channel_node.client"):
        async with paying(restored) as session:
            result = await session.get(url(running, "/articles/a4.html"))
    assert result.status == 200 and result.charged == PRICE
    assert "adopting it" in caplog.text
    now = restored.store.channel(record.channel_id)
    assert now.charged == now.signed == 5 * PRICE
    state = await node_state(running, record.channel_id)
    assert state.charged == 5 * PRICE and len(await running.node.store.charges(record.channel_id)) == 5


async def test_a_resync_with_a_voucher_we_never_signed_is_refused(running, make_wallet):
    wallet = make_wallet()
    async with paying(wallet) as session:
        await session.get(url(running, "/articles/a1.html"))
    [record] = wallet.channels()
    forged = {
        "channelId": record.hex_id, "deposited": str(record.deposited), "charged": str(10 * PRICE),
        "maxClaimableAmount": str(10 * PRICE), "signature": "0x" + "11" * 65,
    }  # fmt: skip
    with pytest.raises(ServerMisbehaved, match="did not sign"):
        await wallet.resync(forged)
    assert wallet.store.channel(record.channel_id).signed == PRICE
    assert wallet.store.channel(record.channel_id).status == BLOCKED


@pytest.mark.parametrize("lie", ["amount", "total", "voucher"])
async def test_an_overcharging_server_is_caught_and_blocked(running, make_wallet, monkeypatch, lie):
    def dishonest(offer, state, charged, payment_id, voucher_amount=None, *spending):
        document = payment_response(offer, state, charged, payment_id, voucher_amount, *spending)
        if lie == "amount":
            document["chargedAmount"] = str(2 * charged or PRICE)
        elif lie == "voucher":  # claims to hold a higher voucher than we signed, with a made-up signature
            document["lastVoucher"] = {"maxClaimableAmount": str(10 * PRICE), "signature": "0x" + "11" * 65}
        else:  # an honest-looking amount, but the total jumps by more than it
            document["chargedTotal"] = str(state.charged + PRICE)
        return document

    wallet = make_wallet()
    async with paying(wallet) as session:
        assert (await session.get(url(running, "/articles/a1.html"))).charged == PRICE
        monkeypatch.setattr(paywall_app, "payment_response", dishonest)
        if lie == "total":  # give the server room under `signed`: credit from a request it never charged
            [record] = wallet.channels()
            tamper(wallet, "UPDATE channels SET signed = ? WHERE channel_id = ?", str(5 * PRICE), record.hex_id)
        with pytest.raises(ServerMisbehaved):
            await session.get(url(running, "/articles/a2.html"))
        [record] = wallet.channels()
        signed = record.signed
        assert record.status == BLOCKED
        with pytest.raises(SiteBlocked):
            await session.get(url(running, "/articles/a3.html"))
    [record] = wallet.channels()
    assert record.signed == signed, "nothing signed for a blocked site"


async def test_client_middleware_pays_too(running, make_wallet):
    wallet = make_wallet()
    async with (
        aiohttp.ClientSession(middlewares=(payment_middleware(wallet),)) as session,
        session.get(url(running, "/api/quote")) as response,
    ):
        assert response.status == 200 and await response.json(content_type=None) == {"item": "quote"}
        assert decode_header(response.headers["PAYMENT-RESPONSE"])["chargedAmount"] == str(PRICE)
    [record] = wallet.channels()
    assert record.charged == record.signed == PRICE


async def test_closing_returns_exactly_the_unspent_deposit(running, make_wallet, chain, deployed, parties):
    wallet = make_wallet()
    async with paying(wallet) as session:
        for n in range(3):
            await session.get(url(running, f"/articles/a{n}.html"))
    [record] = wallet.channels()
    assert record.deposited == 50 * PRICE
    # The publisher claims what it was paid with the best voucher the node holds.
    state = await node_state(running, record.channel_id)
    r, vs = to_compact(state.signature)
    claim = deployed.functions.claim(record.config.as_abi_tuple(), state.ceiling, state.charged, r, vs)
    assert chain.transact(claim, parties.receiver.address)["status"] == 1

    balance = lambda: chain.w3.eth.get_balance(parties.payer.address)  # noqa: E731
    before = balance()
    ticket = await wallet.request_close(record.channel_id)
    assert balance() == before - ticket.tx.fee
    assert ticket.locked == 47 * PRICE and "3600 s" in ticket.warning and "`channel-node wallet finalize 0x" in ticket.warning
    assert wallet.store.channel(record.channel_id).status == CLOSING
    before = balance()
    with pytest.raises(WalletError, match="not over"):
        await wallet.finalize(record.channel_id)
    assert balance() == before, "finalize is simulated first: an early call costs no gas"
    async with paying(wallet) as session:  # a closing channel is not paid from: a new one is opened
        assert (await session.get(url(running, "/articles/a3.html"))).charged == PRICE
    assert len(wallet.channels()) == 2

    chain.time_travel(3600 + 1)
    before = balance()
    done = await wallet.finalize(record.channel_id)
    assert (done.refunded, done.claimed) == (47 * PRICE, 3 * PRICE), "exactly the unspent deposit"
    assert balance() == before + done.refunded - done.tx.fee
    assert wallet.store.channel(record.channel_id).status == SETTLED


async def token_node(chain, deployed, parties, site, tmp_path, token):
    """A node whose prices are in `token`, holding the receiver's key (it co-signs closes)."""
    assert chain.transact(token.functions.mint(parties.payer.address, 10**6), parties.deployer.address)["status"] == 1
    # A stale non-zero allowance: USDT-style tokens refuse to change it to another non-zero value.
    assert chain.transact(token.functions.approve(deployed.address, 7), parties.payer.address)["status"] == 1
    settings = node_settings(
        deployed.address, parties.receiver.address, tmp_path / "node.db", token=token.address,
        claim_key=parties.receiver.private_key.hex(), content_dir=site,
    )  # fmt: skip
    return await start_node(chain.tester, settings)


async def test_a_wallet_that_pays_in_a_token(chain, deployed, parties, site, tmp_path, make_wallet):
    """A publisher pricing in an ERC-20 (a stablecoin, say): each deposit of the reader's wallet is
    one transaction carrying an EIP-2612 permit for exactly its amount; it pays per article, tops up,
    and a cooperative close returns the unspent tokens."""
    token = deploy_test_token(chain)
    payer, receiver = parties.payer.address, parties.receiver.address
    node = await token_node(chain, deployed, parties, site, tmp_path, token)
    try:
        eth_wallet = make_wallet(name="eth.db")
        with pytest.raises(UnsupportedAsset, match=f"token {token.address}.*pays in native ETH"):
            await eth_wallet.pay_for(await offer_of(node, "/articles/a0.html"), url(node, "/articles/a0.html"))
        assert eth_wallet.channels() == []

        wallet = make_wallet(Policy(asset=token.address, deposit_multiple=5, topup_below=2), name="token.db")
        sent_before = chain.w3.eth.get_transaction_count(payer)
        async with paying(wallet) as session:
            for n in range(8):
                assert (await session.get(url(node, f"/articles/a{n}.html"))).charged == PRICE
            assert (await session.get(url(node, "/articles/a0.html"))).charged == 0, "re-read, not paid again"
        [record] = wallet.channels()
        assert record.config.token == bytes.fromhex(token.address[2:]) and record.charged == 8 * PRICE
        assert record.deposited >= 10 * PRICE, "topped up in tokens"
        deposits = record.deposited // (5 * PRICE)
        assert chain.w3.eth.get_transaction_count(payer) - sent_before == deposits, "one transaction per deposit"
        assert token.functions.allowance(payer, deployed.address).call() == 0, "each permit was exact"
        assert token.functions.balanceOf(payer).call() == 10**6 - record.deposited

        done = await wallet.close_via_node(record.channel_id, url(node, "/"))
        assert (done.claimed, done.refunded) == (8 * PRICE, record.deposited - 8 * PRICE)
        assert token.functions.balanceOf(payer).call() == 10**6 - 8 * PRICE, "every unspent token came back"
        owed = token.functions.balanceOf(receiver).call() + deployed.functions.pendingPayouts(token.address, receiver).call()
        assert owed == 8 * PRICE
        with pytest.raises(ValueError, match="asset must be a token address"):
            Policy(asset="USDC")
    finally:
        await node.stop()


async def test_a_token_without_permit_is_approved_exactly(chain, deployed, parties, site, tmp_path, make_wallet):
    token = deploy_test_contract(chain, "NoReturnToken")  # USDT-style: no permit, approve returns nothing
    payer = parties.payer.address
    node = await token_node(chain, deployed, parties, site, tmp_path, token)
    try:
        wallet = make_wallet(Policy(asset=token.address), name="token.db")
        sent_before = chain.w3.eth.get_transaction_count(payer)
        async with paying(wallet) as session:
            for n in range(3):
                assert (await session.get(url(node, f"/articles/a{n}.html"))).charged == PRICE
        [record] = wallet.channels()
        assert record.deposited == 50 * PRICE and token.functions.balanceOf(payer).call() == 10**6 - 50 * PRICE
        # The stale allowance of 7 is zeroed, then exactly the deposit approved and spent.
        assert chain.w3.eth.get_transaction_count(payer) - sent_before == 3
        assert token.functions.allowance(payer, deployed.address).call() == 0
        with pytest.raises(InsufficientFunds, match="more of token .* than this account holds"):
            await wallet.top_up(record.channel_id, 10**6)
    finally:
        await node.stop()


async def test_a_wallet_out_of_tokens_pays_from_what_is_left_then_says_so(chain, deployed, parties, site, tmp_path, make_wallet):
    token = deploy_test_token(chain)
    payer = parties.payer.address
    node = await token_node(chain, deployed, parties, site, tmp_path, token)
    try:  # the reader keeps exactly one deposit's worth
        assert chain.transact(token.functions.transfer(parties.other.address, 10**6 - 5 * PRICE), payer)["status"] == 1
        wallet = make_wallet(Policy(asset=token.address, deposit_multiple=5, topup_below=3), name="token.db")
        async with paying(wallet) as session:
            for n in range(5):  # top-ups fail from the 3rd article on; the deposit still covers these
                assert (await session.get(url(node, f"/articles/a{n}.html"))).charged == PRICE
            with pytest.raises(InsufficientFunds, match=r"more of token .* than this account holds \(0 base units\)"):
                await session.get(url(node, "/articles/a5.html"))
        [record] = wallet.channels()
        assert (record.deposited, record.signed, record.charged) == (5 * PRICE, 5 * PRICE, 5 * PRICE)
    finally:
        await node.stop()


async def test_a_permit_the_token_does_not_honour_falls_back_to_approve(
    chain, deployed, parties, site, tmp_path, make_wallet, monkeypatch
):
    async def unusable_permit(self, owner, spender, value, deadline):
        return b"\x11" * 32, b"\x22" * 32  # as from a token whose permit is not EIP-2612's

    monkeypatch.setattr(Erc20Client, "permit_signature", unusable_permit)
    token = deploy_test_token(chain)
    payer = parties.payer.address
    node = await token_node(chain, deployed, parties, site, tmp_path, token)
    try:
        wallet = make_wallet(Policy(asset=token.address), name="token.db")
        async with paying(wallet) as session:
            assert (await session.get(url(node, "/articles/a0.html"))).charged == PRICE
        [record] = wallet.channels()
        assert record.deposited == 50 * PRICE and token.functions.allowance(payer, deployed.address).call() == 0
        sent_before = chain.w3.eth.get_transaction_count(payer)
        assert (await wallet.top_up(record.channel_id, 1000)).deposited == 50 * PRICE + 1000
        assert chain.w3.eth.get_transaction_count(payer) - sent_before == 2, "approve + deposit: no second permit try"
    finally:
        await node.stop()


async def offer_of(running, path: str) -> dict:
    async with aiohttp.ClientSession() as plain, plain.get(url(running, path)) as response:
        return decode_header(response.headers["PAYMENT-REQUIRED"])["accepts"][0]


async def test_after_losing_the_database_the_wallet_rebuilds_its_channel_and_keeps_paying(
    running, make_wallet, parties, deployed
):
    wallet = make_wallet()
    async with paying(wallet) as session:
        for n in (1, 2, 3):
            assert (await session.get(url(running, f"/articles/a{n}.html"))).charged == PRICE
    [record] = wallet.channels()

    fresh = make_wallet(name="new-laptop.db", contracts=[deployed.address])  # same main key, empty database
    [found] = await fresh.channels_on_chain(parties.receiver.address)
    assert found.channel_id == record.channel_id and found.deposited == 50 * PRICE
    assert [i.channel_id for i in await fresh.recover_from_chain()] == [record.channel_id]
    rebuilt = fresh.store.channel(record.channel_id)
    assert rebuilt.has_key and rebuilt.status == record.status, "the voucher key derives from the main key again"
    assert await fresh.recover_from_chain() == [], "already known"
    async with paying(fresh) as session:
        again = await session.get(url(running, "/articles/a2.html"))  # bought before the loss: free
        assert again.status == 200 and again.charged == 0
        assert (await session.get(url(running, "/articles/a4.html"))).charged == PRICE
    assert len(fresh.channels()) == 1, "the same channel, not a new one"
    node_state = (await running.node.store.load_channel(record.channel_id)).state
    assert node_state.charged == 4 * PRICE, "nothing paid twice across the loss"
    assert fresh.store.channel(record.channel_id).signed >= record.signed, "never signs below what it signed"


async def test_a_channel_whose_key_this_wallet_cannot_derive_is_only_closed(running, make_wallet, parties, deployed, channels):
    config = channels.open_eth(10 * PRICE, channels.config())  # the payer's account, but a foreign voucher key
    fresh = make_wallet(name="other.db", contracts=[deployed.address])
    assert channels.id(config) in [i.channel_id for i in await fresh.recover_from_chain(parties.receiver.address)]
    assert fresh.store.channel(channels.id(config)).status == ORPHANED
    ticket = await fresh.request_close(channels.id(config))
    assert ticket.locked == 10 * PRICE


async def test_repeat_requests_pay_up_front_and_follow_a_price_change(running, make_wallet):
    from channel_node.server.prices import Price, PriceTable

    wallet = make_wallet()
    async with paying(wallet) as session:
        for _ in range(3):
            assert (await session.get(url(running, "/api/quote"))).charged == PRICE
        offers = []

        class CountOffers:  # the paywall reports every 402 offer it shows to its insights recorder
            def offer(self, *args):
                offers.append(args)

            def unlock(self, *args):
                pass

        running.node.paywall.insights = CountOffers()
        assert (await session.get(url(running, "/api/quote"))).charged == PRICE
        assert offers == [], "a repeat request is paid up front, without a 402 first"
        running.node.paywall.prices = PriceTable([Price("/api/*", 2 * PRICE, once=False)], [])
        assert (await session.get(url(running, "/api/quote"))).charged == 2 * PRICE
        assert (await session.get(url(running, "/api/quote"))).charged == 2 * PRICE
    state = (await running.node.store.load_channel(wallet.channels()[0].channel_id)).state
    assert state.charged == 8 * PRICE


async def test_a_node_whose_claim_key_is_not_the_receiver_settles_and_consents(chain, deployed, parties, site, tmp_path, make_wallet, channels):
    """The receiver's key stays cold: the node holds only a hot claim key, which its offer names as
    receiverAuthorizer. The wallet opens its channel with it, and a cooperative close through the
    node returns the unspent credit at once. A channel naming no authorizer cannot be settled by
    this node: it sells nothing on it and cannot consent to its close."""
    from paywall_helpers import Payer, refusal

    hot = parties.other  # the node's claim key; the receiver (parties.receiver) signs nothing here
    settings = node_settings(deployed.address, parties.receiver.address, tmp_path / "hot.db",
                             claim_key=hot.private_key.hex(), content_dir=site)  # fmt: skip
    node = await start_node(chain.tester, settings)
    try:
        offer = await offer_of(node, "/articles/a0.html")
        assert offer["extra"]["receiverAuthorizer"] == hot.address and offer["payTo"] == parties.receiver.address
        wallet = make_wallet(name="reader.db")
        async with paying(wallet) as session:
            for n in range(3):
                assert (await session.get(url(node, f"/articles/a{n}.html"))).charged == PRICE
        [record] = wallet.channels()
        assert record.config.receiver_authorizer == bytes.fromhex(hot.address[2:])
        receiver_before = chain.w3.eth.get_balance(parties.receiver.address)
        payer_before = chain.w3.eth.get_balance(parties.payer.address)
        done = await wallet.close_via_node(record.channel_id, url(node, "/"))
        assert (done.claimed, done.refunded) == (3 * PRICE, record.deposited - 3 * PRICE), "the unspent credit came back"
        assert chain.w3.eth.get_balance(parties.receiver.address) - receiver_before == 3 * PRICE
        assert chain.w3.eth.get_balance(parties.payer.address) - payer_before == done.refunded - done.tx.fee

        # A channel opened without the node's authorizer: refused before anything is charged ...
        alone = Payer(channels, channels.open_eth(10 * PRICE, channels.config()))
        response = await node.client.get("/articles/a1.html", headers={"PAYMENT-SIGNATURE": alone.header(PRICE)})
        assert (await refusal(response))[:2] == (402, "wrong_authorizer")
        # ... and the node, which learns it from the chain, cannot consent to its close; the wallet says so
        await node.node.watcher.poll()
        stored = wallet.store.insert_channel(alone.id, chain.chain_id, deployed.address, alone.config, None, "open", 10 * PRICE)
        with pytest.raises(WalletError, match="cannot_consent.*close unilaterally"):
            await wallet.close_via_node(stored.channel_id, url(node, "/"))
    finally:
        await node.stop()


def test_wallet_close_prints_one_line_when_the_node_refuses(monkeypatch, capsys):
    import argparse

    from channel_node.cli import wallet as wallet_cli

    async def refused(args, action, waiting=None):
        raise WalletError("the node refused to co-sign the close: cannot_consent: no key; close unilaterally instead")

    monkeypatch.setattr(wallet_cli, "_with_wallet", refused)
    args = argparse.Namespace(channel="0x" + "11" * 32, node="http://127.0.0.1:9", json=False)
    assert wallet_cli._handler("close")(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "cannot_consent" in err and "Traceback" not in err


@pytest.mark.parametrize("recorded", [2, 4], ids=["wallet-behind-node", "wallet-ahead-of-node"])
async def test_a_cooperative_close_agrees_to_the_nodes_figure_only_within_what_was_signed(
    chain, deployed, parties, site, tmp_path, make_wallet, recorded
):
    """The node consents only at exactly its charged total. A wallet whose own figure is off (a lost
    receipt behind, a miscount ahead) agrees to the node's figure once: a lower one always, a higher
    one only up to what it signed. A node naming more than was signed gets no close."""
    import sqlite3

    hot = parties.other
    settings = node_settings(deployed.address, parties.receiver.address, tmp_path / "n.db",
                             claim_key=hot.private_key.hex(), content_dir=site)  # fmt: skip
    node = await start_node(chain.tester, settings)
    try:
        wallet = make_wallet(name="reader.db")
        async with paying(wallet) as session:
            for n in range(3):
                assert (await session.get(url(node, f"/articles/a{n}.html"))).charged == PRICE
        [record] = wallet.channels()
        assert record.signed == record.charged == 3 * PRICE
        with sqlite3.connect(tmp_path / "reader.db") as db:  # the wallet's figure drifts from the node's
            db.execute("UPDATE channels SET charged = ?", (str(recorded * PRICE),))
        done = await wallet.close_via_node(record.channel_id, url(node, "/"))
        assert (done.claimed, done.refunded) == (3 * PRICE, record.deposited - 3 * PRICE)
    finally:
        await node.stop()
