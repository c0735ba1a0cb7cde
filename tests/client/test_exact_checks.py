"""The wallet's `exact` rules (client/exact.py; docs/protocol.md, "The wallet and `exact`"): the
offer's checks, the signature it makes, the limits counted at signing, the record written before
the header leaves, the receipt's checks, reconciliation by `authorizationState`, and the choice
between schemes inside PayingSession. The chain is a stub here (its answers are what the test
says); tests/client/test_exact_sdk.py runs the same code against the official SDK's site on anvil."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any
from unittest.mock import patch

import pytest
from aiohttp import web
from eth_abi.abi import encode
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import channel_node.client.exact as exact
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
    WalletStore,
)
from channel_node.client.exact import (
    ExactHeader,
    check_offer,
    exact_payer,
    parse_offer,
    read_receipt,
    valid_before,
)
from channel_node.client.store import EXACT_PAID, EXACT_REFUSED, EXACT_SIGNED, EXACT_UNUSED, EXACT_USED
from channel_node.client.wallet import _today
from channel_node.signing.eip3009 import TokenDomain, recover_authorizer, transfer_authorization_digest
from channel_node.wire.exact import parse_exact

CHAIN = 31337
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_TOKEN = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
PAY_TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
KEY = bytes.fromhex("6b" * 32)
READER = Account.from_key(KEY).address
NAME, VERSION = "Demo Dollar", "1"
SITE = "http://news.example/articles/a"


def entry(**changes: Any) -> dict[str, Any]:
    offer = {"scheme": "exact", "network": f"eip155:{CHAIN}", "amount": "1000", "asset": TOKEN,
             "payTo": PAY_TO.lower(), "maxTimeoutSeconds": 120, "extra": {"name": NAME, "version": VERSION, "odd": [1]}}  # fmt: skip
    offer.update(changes)
    return offer


def document(offer: dict[str, Any] | None = None, url: str = SITE) -> dict[str, Any]:
    return {"x402Version": 2, "error": "payment_required",
            "resource": {"url": url, "description": "a post", "mimeType": "text/plain"},
            "accepts": [offer or entry()]}  # fmt: skip


class StubEth:
    """What the wallet asks the chain for `exact`, answered from fields."""

    def __init__(self) -> None:
        self.balance = 10**9
        self.name, self.version = NAME, VERSION
        self.used: set[bytes] = set()
        self.head = 0
        self.receipts: dict[bytes, dict[str, Any]] = {}
        self.calls = 0
        self.targets: set[str] = set()

    @property
    def chain_id(self) -> Any:
        async def value() -> int:
            return CHAIN

        return value()

    async def call(self, tx: dict[str, Any]) -> bytes:
        self.calls += 1
        self.targets.add(tx["to"])
        data = bytes(tx["data"])
        if data[:4] == bytes.fromhex("06fdde03"):
            return encode(["string"], [self.name])
        if data[:4] == bytes.fromhex("54fd4d50"):
            return encode(["string"], [self.version])
        if data[:4] == exact._AUTHORIZATION_STATE:
            return (1 if data[36:68] in self.used else 0).to_bytes(32, "big")
        raise AssertionError(f"unexpected call {data[:4].hex()}")

    async def get_block(self, _: str) -> dict[str, int]:
        return {"timestamp": self.head}

    async def get_transaction_receipt(self, tx: bytes) -> dict[str, Any]:
        return self.receipts[bytes(tx)]


class StubW3:
    def __init__(self) -> None:
        self.eth = StubEth()


class FakeErc20:
    def __init__(self, w3: StubW3, address: str) -> None:
        self.w3 = w3

    async def balance_of(self, owner: str) -> int:
        return self.w3.eth.balance


def make_wallet(tmp_path, name: str = "w.db", **policy: Any) -> Wallet:
    return Wallet(StubW3(), KEY, WalletStore(tmp_path / name), Policy(asset=TOKEN, **policy))  # type: ignore[arg-type]


def pay(wallet: Wallet, offer: dict[str, Any] | None = None, url: str = SITE) -> ExactHeader:
    async def run() -> ExactHeader:
        with patch.object(exact, "Erc20Client", FakeErc20):
            return await exact_payer(wallet).pay(offer or entry(), document(offer, url), url)

    return asyncio.run(run())


# ------------------------------------------------------------------ the offer


MUTATIONS = [
    ("network", "eip155:1"), ("network", "eip155:031337"), ("network", None), ("amount", "0"), ("amount", "-1"),
    ("amount", "1.5"), ("amount", 1000), ("amount", "0x10"), ("amount", str(2**256)), ("asset", "0x1234"),
    ("asset", "0x" + "00" * 20), ("payTo", "not an address"), ("payTo", "0x" + "00" * 20), ("payTo", None),
    ("maxTimeoutSeconds", 0), ("maxTimeoutSeconds", True), ("maxTimeoutSeconds", "120"), ("maxTimeoutSeconds", 2**32),
    ("extra", {"name": NAME}), ("extra", {"version": VERSION}), ("extra", {"name": "", "version": "1"}),
    ("extra", {"name": NAME, "version": 1}), ("extra", None), ("scheme", "channel"),
]  # fmt: skip


def test_a_well_formed_offer_is_read_and_kept_verbatim():
    offer = entry()
    terms = parse_offer(offer, CHAIN)
    assert (terms.amount, terms.pay_to, terms.asset, terms.max_timeout_seconds) == (1000, PAY_TO, TOKEN, 120)
    assert terms.accepted == offer and terms.accepted["payTo"] == PAY_TO.lower()  # echoed as received


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(MUTATIONS))
def test_every_malformed_field_refuses_the_offer(mutation):
    field, value = mutation
    with pytest.raises(OfferRejected):
        parse_offer(entry(**{field: value}), CHAIN)


@settings(max_examples=200, deadline=None)
@given(amount=st.integers(1, 10**30), per_request=st.none() | st.integers(0, 10**30), cap=st.none() | st.integers(0, 10**30))
def test_the_caps_bound_the_amount_exactly(amount, per_request, cap):
    terms = parse_offer(entry(amount=str(amount)), CHAIN)
    over = (per_request is not None and amount > per_request) or (cap is not None and amount > cap)
    if over:
        with pytest.raises(SpendingLimitExceeded):
            check_offer(terms, TOKEN, (NAME, VERSION), per_request_limit=per_request, exact_max_amount=cap)
    else:
        check_offer(terms, TOKEN, (NAME, VERSION), per_request_limit=per_request, exact_max_amount=cap)


@settings(max_examples=100, deadline=None)
@given(name=st.text(min_size=1, max_size=12), version=st.text(min_size=1, max_size=4))
def test_the_domain_must_be_the_tokens_own(name, version):
    terms = parse_offer(entry(extra={"name": name, "version": version}), CHAIN)
    if (name, version) == (NAME, VERSION):
        check_offer(terms, TOKEN, (NAME, VERSION), per_request_limit=None, exact_max_amount=None)
    else:
        with pytest.raises(OfferRejected):
            check_offer(terms, TOKEN, (NAME, VERSION), per_request_limit=None, exact_max_amount=None)


def test_a_site_naming_another_token_gets_no_call_to_it_and_nothing_signed(tmp_path):
    wallet = make_wallet(tmp_path)
    with pytest.raises(UnsupportedAsset):
        pay(wallet, entry(asset=OTHER_TOKEN))
    assert wallet.w3.eth.targets == {TOKEN}  # the policy's token's name() and version(), nothing of OTHER_TOKEN's
    assert wallet.store.exact_payments() == []


def test_only_the_policys_asset_is_paid():
    terms = parse_offer(entry(asset=OTHER_TOKEN), CHAIN)
    for asset in (TOKEN, None):
        with pytest.raises(UnsupportedAsset):
            check_offer(terms, asset, (NAME, VERSION), per_request_limit=None, exact_max_amount=None)


@given(now=st.integers(0, 2**40), timeout=st.integers(1, 2**32 - 1), cap=st.integers(1, 10**6))
def test_valid_before_is_now_plus_the_shorter_window(now, timeout, cap):
    assert valid_before(now, timeout, cap) == now + min(timeout, cap)


# ------------------------------------------------------------------ signing and recording


def test_the_authorization_is_the_tokens_typed_data_for_exactly_the_amount(tmp_path):
    wallet = make_wallet(tmp_path, exact_max_validity=60)
    offer = entry()
    header = pay(wallet, offer)
    sent = json.loads(base64.b64decode(header.value))
    assert sent["accepted"] == offer  # verbatim, the lower-case payTo and the unknown extra key included
    assert sent["resource"] == document()["resource"]
    payment = parse_exact(header.value)
    auth = payment.authorization
    assert (auth.value, auth.valid_after, auth.to.hex()) == (1000, 0, PAY_TO[2:].lower())
    assert 0 < auth.valid_before - __import__("time").time() <= 60  # min(120, the policy's 60)
    digest = transfer_authorization_digest(TokenDomain(NAME, VERSION, CHAIN, TOKEN), auth)
    assert "0x" + recover_authorizer(digest, payment.signature).hex() == READER.lower()
    # Recorded, and counted as spent, before it was handed back: a new process sees it.
    wallet.store.close()
    with WalletStore(tmp_path / "w.db") as store:
        (record,) = store.exact_payments()
        assert (record.nonce, record.status, record.header, record.value) == (auth.nonce, EXACT_SIGNED, header.value, 1000)
        assert store.spent(_today(), "news.example") == 1000


def test_nonces_are_fresh_and_the_token_domain_is_read_once(tmp_path):
    wallet = make_wallet(tmp_path)
    headers = [pay(wallet) for _ in range(5)]
    assert len({h.nonce for h in headers}) == 5
    assert wallet.w3.eth.calls == 2  # name() and version(), cached afterwards


def test_a_site_naming_another_domain_gets_nothing_signed(tmp_path):
    wallet = make_wallet(tmp_path)
    wallet.w3.eth.version = "2"
    with pytest.raises(OfferRejected):
        pay(wallet)
    assert wallet.store.exact_payments() == []


def test_the_balance_less_what_is_still_authorized_must_cover_the_amount(tmp_path):
    wallet = make_wallet(tmp_path)
    wallet.w3.eth.balance = 2500
    pay(wallet)
    pay(wallet)
    with pytest.raises(InsufficientFunds):
        pay(wallet)  # 2000 authorized and still valid: 500 left
    assert len(wallet.store.exact_payments()) == 2


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prices=st.lists(st.integers(1, 5000), min_size=1, max_size=8), limit=st.integers(0, 12000),
       site_limit=st.integers(0, 12000))  # fmt: skip
def test_the_daily_limits_count_each_authorization_when_signed(tmp_path_factory, prices, limit, site_limit):
    wallet = make_wallet(tmp_path_factory.mktemp("limits"), daily_limit=limit, per_site_daily_limit=site_limit)
    spent = 0
    for price in prices:
        if spent + price > min(limit, site_limit):
            with pytest.raises(SpendingLimitExceeded):
                pay(wallet, entry(amount=str(price)))
        else:
            pay(wallet, entry(amount=str(price)))
            spent += price
    assert wallet.store.spent(_today()) == spent == sum(r.value for r in wallet.store.exact_payments())
    wallet.store.close()


# ------------------------------------------------------------------ receipts


def good_receipt(**changes: Any) -> dict[str, Any]:
    receipt = {"success": True, "payer": READER, "transaction": "0x" + "d0" * 32, "network": f"eip155:{CHAIN}"}
    receipt.update(changes)
    return receipt


def test_the_sdks_receipt_is_read_with_or_without_amount():
    assert read_receipt(good_receipt(), network=f"eip155:{CHAIN}", payer=READER, value=1000).transaction == bytes.fromhex("d0" * 32)
    assert read_receipt(good_receipt(amount="1000"), network=f"eip155:{CHAIN}", payer=READER, value=1000).amount == 1000
    failed = read_receipt(good_receipt(success=False, transaction="", errorReason="x"), network=f"eip155:{CHAIN}",
                          payer=READER, value=1000)  # fmt: skip
    assert not failed.success and failed.transaction is None


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([
    {"success": "true"}, {"success": None}, {"transaction": ""}, {"transaction": "0x1234"}, {"transaction": None},
    {"network": "eip155:1"}, {"network": None}, {"payer": PAY_TO}, {"payer": 7}, {"amount": "999"}, {"amount": 1000},
]))  # fmt: skip
def test_a_receipt_contradicting_the_authorization_is_refused(change):
    with pytest.raises(ValueError):
        read_receipt(good_receipt(**change), network=f"eip155:{CHAIN}", payer=READER, value=1000)


def test_a_settlement_is_counted_once_and_a_lying_receipt_blocks_the_site(tmp_path):
    wallet = make_wallet(tmp_path)
    payer = exact_payer(wallet)
    header = pay(wallet)
    assert payer.settle(header, good_receipt()) == 1000
    assert payer.settle(header, good_receipt()) == 0  # reported again: nothing counted twice
    assert wallet.store.spent(_today()) == 1000
    assert wallet.store.exact_payment(header.nonce).status == EXACT_PAID
    second = pay(wallet)
    with pytest.raises(ServerMisbehaved):
        payer.settle(second, good_receipt(amount="5000"))
    assert wallet.store.exact_payment(second.nonce).status == EXACT_SIGNED  # unknown: reconcile() decides
    with pytest.raises(SiteBlocked):
        pay(wallet)
    assert len(wallet.store.exact_payments()) == 2


def test_confirm_needs_the_authorizations_own_transfer(tmp_path):
    wallet = make_wallet(tmp_path)
    payer = exact_payer(wallet)
    header = pay(wallet)
    payer.settle(header, good_receipt())
    words = [b"\0" * 12 + bytes.fromhex(a[2:]) for a in (READER, PAY_TO)]
    logs = [
        {"address": TOKEN, "topics": [exact.AUTHORIZATION_USED_TOPIC, words[0], header.nonce], "data": b""},
        {"address": TOKEN, "topics": [exact.TRANSFER_TOPIC, *words], "data": (1000).to_bytes(32, "big")},
    ]
    tx = bytes.fromhex("d0" * 32)
    wallet.w3.eth.receipts[tx] = {"status": 1, "logs": logs[1:]}  # a transfer, but not by this nonce
    with pytest.raises(ServerMisbehaved):
        asyncio.run(payer.confirm(header))
    wallet.store.unblock("site", "news.example")
    wallet.store.unblock("receiver", PAY_TO)
    wallet.w3.eth.receipts[tx] = {"status": 1, "logs": logs}
    assert asyncio.run(payer.confirm(header)) is True


# ------------------------------------------------------------------ reconciliation


def test_reconcile_gives_back_only_what_expired_unused_and_only_once(tmp_path):
    wallet = make_wallet(tmp_path)
    payer = exact_payer(wallet)
    unanswered, refused, used = pay(wallet), pay(wallet), pay(wallet)
    payer.refused(refused)
    wallet.w3.eth.used.add(used.nonce)
    wallet.w3.eth.head = unanswered.valid_before - 1  # the token still accepts all three
    assert asyncio.run(payer.reconcile()) == []
    assert wallet.store.exact_payment(refused.nonce).status == EXACT_REFUSED
    wallet.w3.eth.head = max(h.valid_before for h in (unanswered, refused, used))
    decided = {r.nonce: r.status for r in asyncio.run(payer.reconcile())}
    assert decided == {unanswered.nonce: EXACT_UNUSED, refused.nonce: EXACT_UNUSED, used.nonce: EXACT_USED}
    assert wallet.store.spent(_today()) == 1000  # the used one stays spent
    assert asyncio.run(payer.reconcile()) == []
    wallet.store.update_exact(refused.nonce, EXACT_UNUSED, unspend=True)  # a second give-back changes nothing
    assert wallet.store.spent(_today()) == 1000


# ------------------------------------------------------------------ inside PayingSession


async def test_a_site_offering_both_gets_exact_for_a_one_off_read_and_the_forced_scheme_is_kept(tmp_path):
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        url = str(request.url)
        channel = {"scheme": "channel", "network": f"eip155:{CHAIN}", "amount": "1000", "asset": TOKEN, "payTo": PAY_TO,
                   "maxTimeoutSeconds": 60, "extra": {"contract": "0x" + "22" * 20}}  # fmt: skip
        required = document(entry(), url)
        required["accepts"] = [channel, entry()]
        header = request.headers.get("PAYMENT-SIGNATURE")
        if header is None:
            value = base64.b64encode(json.dumps(required).encode()).decode()
            return web.Response(status=402, headers={"PAYMENT-REQUIRED": value})
        sent = json.loads(base64.b64decode(header))
        seen.append(sent)
        receipt = good_receipt()
        return web.Response(text="paid", headers={"PAYMENT-RESPONSE": base64.b64encode(json.dumps(receipt).encode()).decode()})

    app = web.Application()
    app.router.add_get("/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    wallet = make_wallet(tmp_path)
    try:
        with patch.object(exact, "Erc20Client", FakeErc20):
            async with PayingSession(wallet) as session:
                result = await session.get(f"http://127.0.0.1:{port}/a")
            assert (result.status, result.charged, result.text()) == (200, 1000, "paid")
            assert seen[0]["accepted"]["scheme"] == "exact"
            assert wallet.store.exact_payments()[0].status == EXACT_PAID
            async with PayingSession(wallet, scheme="exact") as session:
                assert (await session.get(f"http://127.0.0.1:{port}/b")).charged == 1000
            # forcing `channel` on a site whose channel entry is in another asset: refused, nothing signed
            other = Wallet(wallet.w3, KEY, WalletStore(tmp_path / "other.db"), Policy(asset=OTHER_TOKEN))
            async with PayingSession(other, scheme="channel") as session:
                with pytest.raises(OfferRejected):
                    await session.get(f"http://127.0.0.1:{port}/c")
            assert other.store.exact_payments() == []
    finally:
        await runner.cleanup()


def test_concurrent_payments_never_overrun_the_daily_limit(tmp_path):
    wallet = make_wallet(tmp_path, daily_limit=2500)

    async def run() -> list[Any]:
        with patch.object(exact, "Erc20Client", FakeErc20):
            payer = exact_payer(wallet)
            return await asyncio.gather(*(payer.pay(entry(), document(), SITE) for _ in range(6)), return_exceptions=True)

    outcomes = asyncio.run(run())
    assert sum(isinstance(o, ExactHeader) for o in outcomes) == 2
    assert all(isinstance(o, (ExactHeader, SpendingLimitExceeded)) for o in outcomes)
    assert wallet.store.spent(_today()) == 2000
