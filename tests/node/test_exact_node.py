"""The node sells under x402's `exact` as its own facilitator, on a chain of its own that is never
time travelled (tests/exact_helpers.py): offers, sales, every refusal code, front-runs, cancels,
drained balances, a hollow token, replays, concurrency, restarts."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from channel_node.config import load_settings
from channel_node.node.assembly import NodeConfigError, build_node
from channel_node.signing import keccak256, sign_digest
from channel_node.signing.eip3009 import (
    TokenDomain,
    TransferAuthorization,
    cancel_authorization_digest,
    sign_authorization,
)
from channel_node.store import OutboxStatus, authorization_key
from channel_node.wire.envelope import decode_header
from contract_helpers import deploy_test_contract, deploy_test_token
from exact_helpers import PRICE, ExactPayer, checksum, exact_entry, make_exact_chain, offer_of, start_exact_node
from paywall_helpers import async_web3

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def world():
    return make_exact_chain()


@pytest.fixture
def chain(world):
    snapshot = world.chain.tester.take_snapshot()
    yield world
    world.chain.tester.revert_to_snapshot(snapshot)


async def test_a_402_offers_channel_then_exact_and_an_exact_payment_buys_the_article(chain, tmp_path):
    running = await start_exact_node(chain, tmp_path / "node.db")
    try:
        offer = await offer_of(running.client, "/articles/1.html")
        assert [e["scheme"] for e in offer["accepts"]] == ["channel", "exact"]
        entry = exact_entry(offer)
        assert entry["extra"] == {"name": "Demo Dollar", "version": "1"}
        assert entry["amount"] == str(PRICE) and entry["maxTimeoutSeconds"] == 120
        before = chain.balance(chain.receiver.address)
        payer = ExactPayer(chain)
        response = await running.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(offer)})
        assert response.status == 200, await response.text()
        assert await response.text() == "<h1>Article 1</h1>"
        assert response.headers["Cache-Control"] == "private, no-store"
        receipt = decode_header(response.headers["PAYMENT-RESPONSE"])
        assert receipt["success"] is True and receipt["transaction"].startswith("0x")
        assert receipt["amount"] == str(PRICE)
        assert chain.balance(chain.receiver.address) == before + PRICE
    finally:
        await running.stop()


async def test_channel_node_dev_with_token_offers_both_schemes_and_without_it_only_channel(tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from channel_node.dev.stack import ARTICLES, create_world, dev_settings

    for token, schemes in ((True, ["channel", "exact"]), (False, ["channel"])):
        world = create_world(tmp_path / str(token), token=token)
        node = await build_node(dev_settings(world, "127.0.0.1", 0), async_web3(world.chain.tester))
        client = TestClient(TestServer(node.app))
        await client.start_server()
        try:
            response = await client.get(ARTICLES[1])
            offer = decode_header(response.headers["PAYMENT-REQUIRED"])
            assert [e["scheme"] for e in offer["accepts"]] == schemes
            if token:
                assert offer["accepts"][1]["asset"] == world.token and offer["accepts"][1]["payTo"] == world.receiver
        finally:
            await client.close()
            await node.close()


# ------------------------------------------------------------------ helpers


def sign_parts(world, auth: TransferAuthorization, key: bytes | None = None) -> tuple[int, bytes, bytes]:
    signature = sign_authorization(key or world.payer.private_key, world.domain, auth)
    return signature[64], signature[:32], signature[32:64]


def submit_authorization(world, auth: TransferAuthorization, sender) -> bytes:
    """Someone else (any account may) submits the payer's authorization first."""
    v, r, s = sign_parts(world, auth)
    call = world.token.functions.transferWithAuthorization(
        checksum("0x" + auth.from_.hex()), checksum("0x" + auth.to.hex()), auth.value, auth.valid_after,
        auth.valid_before, auth.nonce, v, r, s,
    )  # fmt: skip
    receipt = world.chain.transact(call, sender.address, gas=300_000)
    assert receipt["status"] == 1
    return bytes(receipt["transactionHash"])


def cancel_authorization(world, auth: TransferAuthorization) -> None:
    digest = cancel_authorization_digest(world.domain, auth.from_, auth.nonce)
    signature = sign_digest(world.payer.private_key, digest)
    call = world.token.functions.cancelAuthorization(world.payer.address, auth.nonce, signature[64], signature[:32],
                                                     signature[32:64])  # fmt: skip
    assert world.chain.transact(call, world.payer.address, gas=300_000)["status"] == 1


async def until_held(running, auth: TransferAuthorization) -> None:
    key = authorization_key(running.node.paywall.exact.terms.domain.verifying_contract, auth.from_, auth.nonce)
    for _ in range(200):
        if await running.node.store.exact_payment(key) is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the sale was never recorded")


async def pay(running, path: str, header: str):
    response = await running.client.get(path, headers={"PAYMENT-SIGNATURE": header})
    return response.status, decode_header(response.headers.get("PAYMENT-REQUIRED", "") or "e30="), response


def start_sender(running) -> None:
    running.tasks.append(asyncio.create_task(running.node.sender.run()))


async def rows(running) -> list:
    return await running.node.store.outbox(tuple(OutboxStatus))


# ------------------------------------------------------------------ the offer and the configuration


async def test_exact_is_off_by_default_and_an_exact_payment_is_then_unsupported(chain, tmp_path):
    running = await start_exact_node(chain, tmp_path / "node.db", enabled=False)
    try:
        assert running.node.paywall.exact is None
        offer = await offer_of(running.client, "/articles/1.html")
        assert [e["scheme"] for e in offer["accepts"]] == ["channel"]
        entry = {**offer["accepts"][0], "scheme": "exact", "extra": {"name": "Demo Dollar", "version": "1"}}
        status, body, _ = await pay(running, "/articles/1.html", ExactPayer(chain).header(offer, accepted=entry))
        assert (status, body["error"]) == (402, "unsupported_scheme")
    finally:
        await running.stop()


async def test_a_price_entry_decides_for_itself_and_min_price_keeps_exact_off_cheap_paths(chain, tmp_path):
    prices = [{"path": "/articles/*", "price": PRICE, "exact": True}, {"path": "/api/*", "price": PRICE, "once": False},
              {"path": "/index.html", "price": 10, "exact": True}]  # fmt: skip
    running = await start_exact_node(chain, tmp_path / "node.db", enabled=False, prices=prices, min_price=100)
    try:
        assert [e["scheme"] for e in (await offer_of(running.client, "/articles/1.html"))["accepts"]] == ["channel", "exact"]
        assert [e["scheme"] for e in (await offer_of(running.client, "/api/quote"))["accepts"]] == ["channel"]
        cheap = await offer_of(running.client, "/index.html")
        assert [e["scheme"] for e in cheap["accepts"]] == ["channel"], "below min_price: not offered"
        article = exact_entry(await offer_of(running.client, "/articles/1.html"))
        entry = {**article, "amount": "10"}
        status, body, _ = await pay(running, "/index.html", ExactPayer(chain).header(cheap, accepted=entry))
        assert (status, body["error"]) == (402, "price_below_exact_minimum")
        assert await rows(running) == []
    finally:
        await running.stop()


async def test_the_node_refuses_to_start_exact_on_an_eth_site_without_a_key_or_on_a_token_without_eip3009(chain, tmp_path):
    base = {"contract": chain.contract, "receiver": chain.receiver.address, "confirmations": 1,
            "paywall": {"content_dir": str(tmp_path)}, "exact": {"enabled": True}}  # fmt: skip
    plain = deploy_test_token(chain.chain)
    cases = [
        ({"database": tmp_path / "a.db", "claim_key": chain.receiver.private_key.hex()}, "exact.enabled = true: this site is priced in ETH"),
        ({"database": tmp_path / "b.db", "token": chain.token.address}, "exact.enabled = true: no claim key"),
        ({"database": tmp_path / "c.db", "token": plain.address, "claim_key": chain.receiver.private_key.hex()},
         f"token = {plain.address}: it does not answer name(), version() and authorizationState()"),
    ]  # fmt: skip
    for overrides, message in cases:
        with pytest.raises(NodeConfigError) as raised:
            node = await build_node(load_settings(**base, **overrides), async_web3(chain.chain.tester))
            await node.close()
        assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
        assert "exact.enabled = false" in str(raised.value), "the message names the fix"


# ------------------------------------------------------------------ each refusal, and nothing changes


async def test_every_refusal_code_at_the_node_and_none_changes_any_state(chain, tmp_path):
    running = await start_exact_node(chain, tmp_path / "node.db", settle_timeout=5)
    try:
        offer = await offer_of(running.client, "/articles/1.html")
        entry, payer = exact_entry(offer), ExactPayer(chain)
        now = int(time.time())
        spent = payer.authorization(entry)
        submit_authorization(chain, spent, chain.other)  # used on chain before it reaches the node
        stranger = keccak256(b"not the payer")
        poor = chain.chain.accounts[5]
        assert chain.balance(poor.address) == 0
        other_domain = TokenDomain("Demo Dollar", "2", chain.chain.chain_id, chain.token.address)
        cases = {
            "wrong_network": payer.header(offer, accepted={**entry, "network": "eip155:1"}),
            "wrong_asset": payer.header(offer, accepted={**entry, "asset": chain.contract}),
            "wrong_receiver": payer.header(offer, payer.authorization(entry, to=chain.other.address)),
            "insufficient_value": payer.header(offer, payer.authorization(entry, value=PRICE - 1)),
            "authorization_not_yet_valid": payer.header(offer, payer.authorization(entry, valid_after=now + 60)),
            "authorization_expires": payer.header(offer, payer.authorization(entry, valid_before=now + 10)),
            "authorization_too_long": payer.header(offer, payer.authorization(entry, valid_before=now + 3600)),
            "invalid_signature": payer.header(offer, key=stranger),
            "authorization_used": payer.header(offer, spent),
            "insufficient_balance": ExactPayer(chain, poor).header(offer),
        }
        wrong_domain = payer.header(offer, domain=other_domain, accepted={**entry, "extra": {"name": "Demo Dollar", "version": "2"}})
        before = (chain.balance(chain.receiver.address), chain.balance(chain.payer.address))
        for expected, header in [*cases.items(), ("invalid_signature", wrong_domain)]:
            status, body, response = await pay(running, "/articles/1.html", header)
            assert (status, body["error"]) == (402, expected), body
            assert [e["scheme"] for e in body["accepts"]] == ["channel", "exact"], "the refusal offers both again"
            failure = decode_header(response.headers["PAYMENT-RESPONSE"])
            assert failure["success"] is False and failure["errorReason"] == expected and failure["transaction"] == ""
        assert await rows(running) == [], "no refused payment is recorded or queued"
        assert (chain.balance(chain.receiver.address), chain.balance(chain.payer.address)) == before
        metrics = await (await running.client.get("/metrics")).text()
        assert 'channel_node_exact_failures_total{code="insufficient_balance"} 1.0' in metrics
    finally:
        await running.stop()


# ------------------------------------------------------------------ between the record and the transfer


async def paid_while_held(chain, tmp_path, meddle, **exact):
    """A sale recorded while the sender is stopped; `meddle(auth)` acts on chain; then the sender
    runs. Returns the answer, the authorization and the node (stopped by the caller)."""
    running = await start_exact_node(chain, tmp_path / "node.db", run_sender=False, settle_timeout=10, **exact)
    offer = await offer_of(running.client, "/articles/1.html")
    payer = ExactPayer(chain)
    auth = payer.authorization(exact_entry(offer))
    request = asyncio.create_task(pay(running, "/articles/1.html", payer.header(offer, auth)))
    await until_held(running, auth)
    meddled = meddle(auth)
    start_sender(running)
    status, body, response = await request
    return running, auth, meddled, status, body, response


async def test_a_third_party_submitting_first_is_our_payment_and_is_served_with_its_transaction(chain, tmp_path):
    before = chain.balance(chain.receiver.address)
    running, auth, front_tx, status, _, response = await paid_while_held(
        chain, tmp_path, lambda auth: submit_authorization(chain, auth, chain.other))
    try:
        assert status == 200 and await response.text() == "<h1>Article 1</h1>"
        receipt = decode_header(response.headers["PAYMENT-RESPONSE"])
        assert receipt["transaction"] == "0x" + front_tx.hex(), "the front-runner's transaction paid"
        assert chain.balance(chain.receiver.address) == before + PRICE, "paid once"
        [row] = await rows(running)
        assert row.status == OutboxStatus.DONE
    finally:
        await running.stop()


@pytest.mark.parametrize("meddling", ["cancel", "drain"])
async def test_a_cancelled_authorization_or_a_drained_balance_is_never_served(chain, tmp_path, meddling):
    def meddle(auth):
        if meddling == "cancel":
            cancel_authorization(chain, auth)
        else:
            everything = chain.balance(chain.payer.address)
            call = chain.token.functions.transfer(chain.other.address, everything)
            assert chain.chain.transact(call, chain.payer.address, gas=100_000)["status"] == 1

    before = chain.balance(chain.receiver.address)
    running, auth, _, status, body, response = await paid_while_held(chain, tmp_path, meddle)
    try:
        expected = "authorization_canceled" if meddling == "cancel" else "insufficient_balance"
        assert (status, body["error"]) == (402, expected)
        assert "<h1>" not in await response.text()
        assert chain.balance(chain.receiver.address) == before
        key = authorization_key(chain.domain.verifying_contract, auth.from_, auth.nonce)
        record = await running.node.store.exact_payment(key)
        assert record.status.value == "failed" and not record.served
        [row] = await rows(running)
        assert row.status == OutboxStatus.ABANDONED
        # The same header again is answered with the same failure, never the content.
        again, body, _ = await pay(running, "/articles/1.html", ExactPayer(chain).header(await offer_of(running.client, "/articles/1.html"), auth))
        assert (again, body["error"]) == (402, expected)
    finally:
        await running.stop()


@pytest.mark.parametrize("fake_log", [False, True])
async def test_a_hollow_token_that_moves_nothing_is_never_served(chain, tmp_path, fake_log):
    hollow = deploy_test_contract(chain.chain, "HollowAuthorizationToken", fake_log)
    chain.chain.transact(hollow.functions.mint(chain.payer.address, 10**9), chain.deployer.address)
    world = replace(chain, token=hollow)
    assert world.domain.name == "Demo Dollar"  # the helper's domain; the hollow token's is its own
    domain = TokenDomain("Hollow Dollar", "1", chain.chain.chain_id, hollow.address)
    running = await start_exact_node(world, tmp_path / "node.db", settle_timeout=10)
    try:
        offer = await offer_of(running.client, "/articles/1.html")
        assert exact_entry(offer)["extra"] == {"name": "Hollow Dollar", "version": "1"}
        status, body, response = await pay(running, "/articles/1.html", ExactPayer(world).header(offer, domain=domain))
        assert (status, body["error"]) == (402, "transfer_failed")
        assert "<h1>" not in await response.text()
    finally:
        await running.stop()


async def test_one_authorization_pays_one_request_and_never_a_second_article(chain, tmp_path):
    running = await start_exact_node(chain, tmp_path / "node.db", run_sender=False, settle_timeout=0.3)
    try:
        offer = await offer_of(running.client, "/articles/1.html")
        header = ExactPayer(chain).header(offer)
        status, body, _ = await pay(running, "/articles/1.html", header)
        assert (status, body["error"]) == (402, "settlement_pending")
        status, body, _ = await pay(running, "/articles/2.html", header)
        assert (status, body["error"]) == (402, "authorization_used"), "held for article 1: never article 2"
        start_sender(running)
        status, _, response = await pay(running, "/articles/1.html", header)
        assert status == 200 and await response.text() == "<h1>Article 1</h1>", "the retry gets what it paid for"
        for path in ("/articles/1.html", "/articles/2.html"):
            status, body, _ = await pay(running, path, header)
            assert (status, body["error"]) == (402, "authorization_used"), "one request, once"
        assert len(await rows(running)) == 1
    finally:
        await running.stop()


async def test_concurrent_requests_with_one_authorization_make_one_transfer_and_one_delivery(chain, tmp_path):
    running = await start_exact_node(chain, tmp_path / "node.db", settle_timeout=10)
    try:
        offer = await offer_of(running.client, "/articles/1.html")
        header = ExactPayer(chain).header(offer)
        before = chain.balance(chain.receiver.address)
        answers = await asyncio.gather(*(pay(running, "/articles/1.html", header) for _ in range(6)))
        statuses = sorted(status for status, _, _ in answers)
        assert statuses == [200] + [402] * 5
        assert {body["error"] for status, body, _ in answers if status == 402} == {"authorization_used"}
        assert chain.balance(chain.receiver.address) == before + PRICE
        assert len(await rows(running)) == 1 and running.node.sender.stats.exact_sent == 1
    finally:
        await running.stop()


async def test_an_authorization_that_expires_before_it_is_sent_is_never_served(chain, tmp_path):
    running = await start_exact_node(chain, tmp_path / "node.db", run_sender=False, settle_timeout=0.2, settle_margin=0)
    try:
        offer = await offer_of(running.client, "/articles/1.html")
        payer = ExactPayer(chain)
        auth = payer.authorization(exact_entry(offer), valid_before=int(time.time()) + 2)
        header = payer.header(offer, auth)
        status, body, _ = await pay(running, "/articles/1.html", header)
        assert (status, body["error"]) == (402, "settlement_pending")
        await asyncio.sleep(max(0.0, auth.valid_before - time.time()) + 1.1)
        start_sender(running)
        await asyncio.sleep(0.5)
        status, body, _ = await pay(running, "/articles/1.html", header)
        assert (status, body["error"]) == (402, "authorization_expired")
        assert not chain.used(chain.payer.address, auth.nonce)
    finally:
        await running.stop()


# ------------------------------------------------------------------ crashes and restarts


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the sender catches it)."""


@pytest.mark.parametrize("dies", ["after_record", "before_broadcast", "after_broadcast"])
async def test_a_crash_anywhere_between_record_and_confirmation_sends_the_transfer_exactly_once(chain, tmp_path, dies):
    database = tmp_path / "node.db"
    running = await start_exact_node(chain, database, run_sender=False, settle_timeout=0.3)
    offer = await offer_of(running.client, "/articles/1.html")
    payer = ExactPayer(chain)
    auth = payer.authorization(exact_entry(offer))
    header = payer.header(offer, auth)
    before = chain.balance(chain.receiver.address)
    sender = running.node.sender
    recorded: list[bytes] = []
    if dies != "after_record":
        broadcast = sender._broadcast

        async def dying(raw: bytes) -> bool:
            recorded.append(raw)
            if dies == "after_broadcast":
                await broadcast(raw)
            raise Crash

        sender._broadcast = dying
    try:
        status, body, _ = await pay(running, "/articles/1.html", header)
        assert (status, body["error"]) == (402, "settlement_pending")
        if dies != "after_record":
            with pytest.raises(Crash):
                await sender.tick()
            [row] = await rows(running)
            assert row.status == OutboxStatus.SENT and row.raw_tx == recorded[0], "recorded before it left"
    finally:
        await running.stop()
    assert chain.used(chain.payer.address, auth.nonce) is (dies == "after_broadcast")

    restarted = await start_exact_node(chain, database, settle_timeout=10)
    try:
        status, _, response = await pay(restarted, "/articles/1.html", header)
        assert status == 200 and await response.text() == "<h1>Article 1</h1>"
        tx = decode_header(response.headers["PAYMENT-RESPONSE"])["transaction"]
        if recorded:
            assert tx == "0x" + keccak256(recorded[0]).hex(), "the very transaction signed before the crash"
        [row] = await rows(restarted)
        assert row.status == OutboxStatus.DONE and row.attempts == 1, "signed once, never again"
    finally:
        await restarted.stop()
    assert chain.balance(chain.receiver.address) == before + PRICE, "one transfer, whatever the crash"


# ------------------------------------------------------------------ guards, depth, metrics, gas


async def test_the_guards_refuse_with_their_codes_and_retry_after(chain, tmp_path):
    cases = [({"max_in_flight": 1}, "exact_busy", "5"), ({"max_gas_per_hour": 100_000}, "exact_gas_budget", "600"),
             ({"min_gas_balance": 10**30}, "node_gas_low", "600")]  # fmt: skip
    for n, (limits, code, retry) in enumerate(cases):
        running = await start_exact_node(chain, tmp_path / f"{n}.db", run_sender=False, settle_timeout=0.2, **limits)
        try:
            offer = await offer_of(running.client, "/articles/1.html")
            first, _, _ = await pay(running, "/articles/1.html", ExactPayer(chain).header(offer))
            # The first sale is held (the sender is stopped) and fills the node or its gas budget; under
            # a gas balance too low nothing is sold at all.
            assert first == 402
            status, body, response = await pay(running, "/articles/2.html", ExactPayer(chain).header(offer))
            assert (status, body["error"], response.headers["Retry-After"]) == (402, code, retry)
            assert len(await rows(running)) == (0 if code == "node_gas_low" else 1)
        finally:
            await running.stop()


async def test_a_transfer_is_served_only_at_the_confirmation_depth(chain, tmp_path):
    running = await start_exact_node(chain, tmp_path / "node.db", settle_timeout=0.5)
    running.node.sender.confirmations = 2
    try:
        offer = await offer_of(running.client, "/articles/1.html")
        header = ExactPayer(chain).header(offer)
        status, body, _ = await pay(running, "/articles/1.html", header)
        assert (status, body["error"]) == (402, "settlement_pending"), "mined, not yet at depth 2"
        chain.chain.tester.mine_blocks(1)
        running.node.sender.wake()
        status, _, _ = await pay(running, "/articles/1.html", header)
        assert status == 200
    finally:
        await running.stop()


async def test_metrics_count_sales_and_the_gas_of_a_sale_is_one_transfer(chain, tmp_path):
    running = await start_exact_node(chain, tmp_path / "node.db")
    try:
        gas = []
        for n in (1, 2, 3):
            offer = await offer_of(running.client, f"/articles/{n}.html")
            status, _, response = await pay(running, f"/articles/{n}.html", ExactPayer(chain).header(offer))
            assert status == 200
            tx = decode_header(response.headers["PAYMENT-RESPONSE"])["transaction"]
            gas.append(chain.chain.w3.eth.get_transaction_receipt(tx)["gasUsed"])
        print("gas per exact sale:", gas)
        # The first payment into the payee's empty balance writes a cold slot; later ones are one
        # transferWithAuthorization (docs/gas.json: 65,141) within the calldata's zero-byte noise.
        assert all(abs(g - 65_141) < 200 for g in gas[1:]) and gas[0] < 85_000
        metrics = await (await running.client.get("/metrics")).text()
        assert "channel_node_exact_sales_total 3.0" in metrics
        assert f"channel_node_exact_gas_last_hour {float(sum(gas))}" in metrics
        assert "channel_node_exact_in_flight 0.0" in metrics
        assert "channel_node_exact_transfers_sent 3.0" in metrics
    finally:
        await running.stop()


async def test_healthz_reports_exact_sales(chain, tmp_path):
    running = await start_exact_node(chain, tmp_path / "node.db")
    try:
        offer = await offer_of(running.client, "/articles/1.html")
        assert (await pay(running, "/articles/1.html", ExactPayer(chain).header(offer)))[0] == 200
        health = await (await running.client.get("/healthz")).json()
        assert health["exact"]["inFlight"] == 0 and health["exact"]["sold"] == 1 and health["exact"]["gasLastHour"] > 60_000
    finally:
        await running.stop()


async def test_our_transfer_reverting_behind_a_front_run_in_the_same_block_is_served_with_the_winner(chain, tmp_path):
    """Our transfer and a third party's submission of the same authorization land in one block:
    whichever the block orders first pays, the other reverts; the sale is confirmed with the one
    that paid (through authorizationState and the AuthorizationUsed log when ours reverted)."""
    tester = chain.chain.tester
    running = await start_exact_node(chain, tmp_path / "node.db", settle_timeout=10)
    before = chain.balance(chain.receiver.address)
    tester.disable_auto_mine_transactions()
    try:
        offer = await offer_of(running.client, "/articles/1.html")
        payer = ExactPayer(chain)
        auth = payer.authorization(exact_entry(offer))
        request = asyncio.create_task(pay(running, "/articles/1.html", payer.header(offer, auth)))
        for _ in range(1000):  # up to 20 s on a loaded machine; leaves as soon as the row is sent
            if any(r.status == OutboxStatus.SENT for r in await rows(running)):
                break
            await asyncio.sleep(0.02)
        v, r, s = sign_parts(chain, auth)
        call = chain.token.functions.transferWithAuthorization(
            chain.payer.address, chain.receiver.address, auth.value, auth.valid_after, auth.valid_before, auth.nonce, v, r, s)
        theirs = call.transact({"from": chain.other.address, "gas": 300_000})
        tester.mine_blocks(1)
        status, _, response = await request
        assert status == 200
        paid_by = decode_header(response.headers["PAYMENT-RESPONSE"])["transaction"]
        [ours] = [row.tx_hash for row in await rows(running)]
        receipts = {tx: chain.chain.w3.eth.get_transaction_receipt(tx) for tx in (bytes(theirs), ours)}
        assert sorted(rc["status"] for rc in receipts.values()) == [0, 1], "one paid, one reverted"
        [winner] = [tx for tx, rc in receipts.items() if rc["status"] == 1]
        assert paid_by == "0x" + winner.hex()
        assert chain.balance(chain.receiver.address) == before + PRICE
        record = await running.node.store.exact_payment(authorization_key(chain.domain.verifying_contract, auth.from_, auth.nonce))
        assert record.gas_used == receipts[ours]["gasUsed"], "our gas is counted whether ours paid or reverted"
        print("winner:", "ours" if winner == ours else "theirs")
    finally:
        tester.enable_auto_mine_transactions()
        await running.stop()


async def test_a_token_whose_domain_separator_is_not_its_name_and_version_is_refused_at_start(chain, tmp_path, monkeypatch):
    from channel_node.chain.eip3009 import Eip3009Token

    async def another(self):
        return b"\x01" * 32

    monkeypatch.setattr(Eip3009Token, "domain_separator", another)
    with pytest.raises(NodeConfigError, match=r"its DOMAIN_SEPARATOR\(\) is not the EIP-712 domain of name 'Demo Dollar'"):
        await start_exact_node(chain, tmp_path / "node.db", run_sender=False)


async def test_a_front_run_waiting_in_the_mempool_makes_ours_revert_and_pays_us_anyway(chain, tmp_path):
    """The third party's submission is broadcast before ours and mined first in the same block:
    ours reverts, and the sale is confirmed with theirs (never failed while theirs was pending)."""
    tester = chain.chain.tester
    running = await start_exact_node(chain, tmp_path / "node.db", run_sender=False, settle_timeout=10)
    before = chain.balance(chain.receiver.address)
    tester.disable_auto_mine_transactions()
    try:
        offer = await offer_of(running.client, "/articles/1.html")
        payer = ExactPayer(chain)
        auth = payer.authorization(exact_entry(offer))
        request = asyncio.create_task(pay(running, "/articles/1.html", payer.header(offer, auth)))
        await until_held(running, auth)
        v, r, s = sign_parts(chain, auth)
        theirs = chain.token.functions.transferWithAuthorization(
            chain.payer.address, chain.receiver.address, auth.value, auth.valid_after, auth.valid_before, auth.nonce, v, r, s,
        ).transact({"from": chain.other.address, "gas": 300_000})
        start_sender(running)
        for _ in range(200):
            if any(row.status == OutboxStatus.SENT for row in await rows(running)):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("our transfer was never sent")
        tester.mine_blocks(1)
        status, _, response = await request
        assert status == 200
        assert decode_header(response.headers["PAYMENT-RESPONSE"])["transaction"] == "0x" + bytes(theirs).hex()
        [ours] = [row.tx_hash for row in await rows(running)]
        assert chain.chain.w3.eth.get_transaction_receipt(ours)["status"] == 0, "ours reverted behind theirs"
        assert chain.balance(chain.receiver.address) == before + PRICE
    finally:
        tester.enable_auto_mine_transactions()
        await running.stop()
