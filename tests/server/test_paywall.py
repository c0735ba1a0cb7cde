"""The paywall end to end over the in-process chain: 402 flow, credit rules, every refusal code,
concurrency on one channel, a restart, and reverse-proxy mode."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from channel_node.wire.envelope import decode_header, encode_header
from paywall_helpers import (
    ARTICLES,
    PRICE,
    Payer,
    node_settings,
    receipt,
    refusal,
    start_node,
    write_site,
)

ETH = 10**18


@pytest.fixture
async def site(tmp_path):
    return write_site(tmp_path / "site")


@pytest.fixture
async def running(chain, deployed, parties, site, tmp_path):
    settings = node_settings(deployed.address, parties.receiver.address, tmp_path / "node.db", content_dir=site)
    node = await start_node(chain.tester, settings)
    yield node
    await node.stop()


def payer_for(channels, deposit: int = 100 * PRICE, **config) -> Payer:
    return Payer(channels, channels.open_eth(deposit, channels.config(**config)))


async def test_pay_per_article_flow(running, channels):
    client = running.client
    free = await client.get("/")
    assert free.status == 200 and await free.text() == "<h1>Front page</h1>"

    first = await client.get("/articles/1.html")
    status, code, offer = await refusal(first)
    assert (status, code) == (402, "payment_required")
    terms = offer["accepts"][0]
    assert terms["amount"] == str(PRICE) and terms["scheme"] == "channel"
    assert terms["network"] == f"eip155:{channels.chain.chain_id}" and terms["extra"]["contract"] == channels.contract.address
    assert terms["payTo"] == channels.parties.receiver.address

    payer = payer_for(channels)
    paid = await client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})
    assert paid.status == 200 and await paid.text() == ARTICLES["/articles/1.html"]
    assert receipt(paid) | {} == receipt(paid)
    r = receipt(paid)
    assert (r["chargedAmount"], r["chargedTotal"], r["maxClaimableAmount"]) == (str(PRICE), str(PRICE), str(PRICE))
    assert r["remaining"] == str(99 * PRICE)

    # Prepay three articles with one voucher; later vouchers need not carry the configuration.
    prepaid = payer.header(4 * PRICE, with_config=False)
    for n in (2, 3, 4):
        response = await client.get(f"/articles/{n}.html", headers={"PAYMENT-SIGNATURE": prepaid})
        assert response.status == 200 and receipt(response)["chargedTotal"] == str(n * PRICE)

    # Re-reading an unlocked article is free with a current voucher; an old one opens nothing.
    again = await client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": prepaid})
    assert again.status == 200 and receipt(again)["chargedAmount"] == "0"
    assert receipt(again)["chargedTotal"] == str(4 * PRICE)
    old = await client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})
    assert (await refusal(old))[:2] == (402, "stale_voucher")

    # Credit is spent: the next article needs a higher voucher, and the 402 says how far we are.
    short = await client.get("/articles/5.html", headers={"PAYMENT-SIGNATURE": prepaid})
    status, code, body = await refusal(short)
    assert (status, code) == (402, "stale_voucher")
    state = body["accepts"][0]["extra"]["channel"]
    assert (state["charged"], state["maxClaimableAmount"]) == (str(4 * PRICE), str(4 * PRICE))
    assert state["signature"] is not None

    missing = await client.get("/articles/404.html", headers={"PAYMENT-SIGNATURE": payer.header(5 * PRICE)})
    assert missing.status == 404  # nothing to sell, nothing charged
    charges = await running.node.store.charges(payer.id)
    assert [c.resource for c in charges] == [f"/articles/{n}.html" for n in (1, 2, 3, 4)]
    assert sum(c.amount for c in charges) == 4 * PRICE


async def test_retried_payment_identifier_is_charged_once(running, channels):
    payer = payer_for(channels)
    headers = {"PAYMENT-SIGNATURE": payer.header(2 * PRICE, payment_id="call-1")}
    first = await running.client.get("/api/quote", headers=headers)
    retry = await running.client.get("/api/quote", headers=headers)
    assert receipt(first)["chargedAmount"] == str(PRICE) and receipt(retry)["chargedAmount"] == "0"
    other = await running.client.get("/api/other", headers=headers)
    assert (await refusal(other))[1] == "payment_id_reused"
    fresh = await running.client.get("/api/quote", headers={"PAYMENT-SIGNATURE": payer.header(2 * PRICE, payment_id="call-2")})
    assert receipt(fresh)["chargedTotal"] == str(2 * PRICE), "per-request resources are charged per payment id"


async def test_each_refusal_has_its_code_and_changes_nothing(running, channels, parties):
    client = running.client
    payer = payer_for(channels)
    await client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})
    before = await running.node.store.load_channel(payer.id)

    unopened = Payer(channels, channels.config())
    other_receiver = Payer(channels, channels.config(receiver=parties.other.address))
    wrong_token = Payer(channels, channels.config(token=parties.other.address))
    cases = {
        "not base64": (400, "malformed_payment"),
        "eyJ4NDAyVmVyc2lvbiI6IDJ9": (400, "malformed_payment"),  # {"x402Version": 2}
        payer.header(PRICE, network="eip155:1"): (402, "wrong_network"),
        payer.header(PRICE, contract="0x" + "11" * 20): (402, "wrong_contract"),
        other_receiver.header(PRICE): (402, "wrong_receiver"),
        wrong_token.header(PRICE): (402, "wrong_asset"),
        payer.header(3 * PRICE, key=b"\x11" * 32): (402, "invalid_signature"),
        payer.header(101 * PRICE): (402, "exceeds_deposit"),
        payer.header(PRICE + 1): (402, "insufficient_voucher"),
        payer.header(PRICE): (402, "stale_voucher"),
        unopened.header(PRICE): (402, "channel_unknown"),
    }
    for header, expected in cases.items():
        response = await client.get("/articles/2.html", headers={"PAYMENT-SIGNATURE": header})
        status, code, _ = await refusal(response)
        assert (status, code) == expected, header
    document = decode_header(payer.header(3 * PRICE))
    document["accepted"]["scheme"] = "exact"
    scheme = encode_header(document)
    assert (await refusal(await client.get("/articles/2.html", headers={"PAYMENT-SIGNATURE": scheme})))[1] == "unsupported_scheme"
    assert await running.node.store.load_channel(payer.id) == before
    assert await running.node.store.load_channel(unopened.id) is None

    metrics = await (await client.get("/metrics")).text()
    assert 'channel_node_rejections_total{code="exceeds_deposit"} 1.0' in metrics
    assert 'channel_node_unlocks_total{kind="paid"} 1.0' in metrics


async def test_closing_and_settled_channels_are_refused(running, channels, parties):
    closing = payer_for(channels, close_delay=900)
    channels.chain.transact(channels.contract.functions.requestClose(closing.config.as_abi_tuple()), parties.payer.address)
    channels.chain.time_travel(900 - 30)  # inside the node's 60 s margin, on the chain's clock
    running.node.runtime.clock = lambda: channels.chain.tester.get_block_by_number("pending")["timestamp"]
    channels.chain.transact(channels.contract.functions.depositEth(closing.config.as_abi_tuple()), parties.payer.address, value=1)
    response = await running.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": closing.header(PRICE)})
    assert (await refusal(response))[1] == "channel_closing"

    settled = payer_for(channels)
    r, vs = channels.voucher(settled.config, 0)
    channels.chain.transact(
        channels.contract.functions.closeByReceiver(settled.config.as_abi_tuple(), 0, 0, r, vs), parties.receiver.address
    )
    response = await running.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": settled.header(PRICE)})
    assert (await refusal(response))[1] == "channel_settled"


async def test_topup_is_noticed_when_a_voucher_exceeds_the_known_deposit(running, channels, parties):
    payer = payer_for(channels, deposit=PRICE)
    assert (await running.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})).status == 200
    channels.chain.transact(channels.contract.functions.depositEth(payer.config.as_abi_tuple()), parties.payer.address, value=PRICE)
    await asyncio.sleep(1.05)  # deposit refreshes are rate-limited per channel
    response = await running.client.get("/articles/2.html", headers={"PAYMENT-SIGNATURE": payer.header(2 * PRICE)})
    assert response.status == 200 and receipt(response)["deposited"] == str(2 * PRICE)


async def test_fifty_concurrent_requests_on_one_channel_lose_no_credit(running, channels):
    payer = payer_for(channels)
    amounts = [PRICE * n for n in range(1, 51)]
    random.Random(7).shuffle(amounts)
    headers = [payer.header(a, payment_id=f"req-{i}", with_config=(i == 0)) for i, a in enumerate(amounts)]
    await running.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})  # make the channel known

    async def call(i: int):
        return await running.client.get(f"/api/item-{i}", headers={"PAYMENT-SIGNATURE": headers[i]})

    responses = await asyncio.gather(*(call(i) for i in range(50)))
    accepted = [i for i, r in enumerate(responses) if r.status == 200]
    refused = [i for i, r in enumerate(responses) if r.status != 200]
    assert all(responses[i].status == 402 for i in refused)
    state = (await running.node.store.load_channel(payer.id)).state
    assert state.charged == PRICE * (1 + len(accepted)) <= state.ceiling
    # Retry the refused ones with the top voucher: every request is served once, all credit spent.
    top = payer.header(51 * PRICE, with_config=False)
    for i in refused:
        assert (await running.client.get(f"/api/item-{i}", headers={"PAYMENT-SIGNATURE": top})).status == 200
    state = (await running.node.store.load_channel(payer.id)).state
    assert state.charged == state.ceiling == 51 * PRICE
    charges = await running.node.store.charges(payer.id)
    assert len(charges) == 51 and sum(c.amount for c in charges) == state.charged


async def test_state_survives_a_restart(chain, deployed, parties, channels, site, tmp_path):
    settings = node_settings(deployed.address, parties.receiver.address, tmp_path / "node.db", content_dir=site)
    payer = payer_for(channels)
    first = await start_node(chain.tester, settings)
    await first.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(3 * PRICE)})
    await first.stop()

    second = await start_node(chain.tester, settings)
    try:
        again = await second.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(3 * PRICE, with_config=False)})
        assert receipt(again)["chargedAmount"] == "0"
        next_one = await second.client.get("/articles/2.html", headers={"PAYMENT-SIGNATURE": payer.header(3 * PRICE, with_config=False)})
        assert receipt(next_one)["chargedTotal"] == str(2 * PRICE)
    finally:
        await second.stop()


async def test_reverse_proxy_mode_charges_only_for_delivered_content(chain, deployed, parties, channels, tmp_path):
    seen = []

    async def article(request):
        seen.append(dict(request.headers))
        return web.Response(text=f"origin article {request.match_info['name']}", headers={"X-Origin": "yes"})

    async def broken(request):
        return web.Response(status=500, text="origin failed")

    origin_app = web.Application()
    origin_app.router.add_get("/articles/{name}", article)
    origin_app.router.add_get("/api/broken", broken)
    origin = TestServer(origin_app)
    await origin.start_server()
    settings = node_settings(
        deployed.address, parties.receiver.address, tmp_path / "node.db", upstream=str(origin.make_url("/"))
    )
    node = await start_node(chain.tester, settings)
    try:
        payer = payer_for(channels)
        response = await node.client.get("/articles/a", headers={"PAYMENT-SIGNATURE": payer.header(2 * PRICE)})
        assert response.status == 200 and await response.text() == "origin article a"
        assert response.headers["X-Origin"] == "yes" and receipt(response)["chargedAmount"] == str(PRICE)
        assert not any("PAYMENT-SIGNATURE" in {k.upper() for k in h} for h in seen), "vouchers are not forwarded"
        failed = await node.client.get("/api/broken", headers={"PAYMENT-SIGNATURE": payer.header(2 * PRICE)})
        assert failed.status == 500 and "PAYMENT-RESPONSE" not in failed.headers
        assert (await node.node.store.load_channel(payer.id)).state.charged == PRICE
    finally:
        await node.stop()
        await origin.close()


async def test_cooperative_close_returns_the_unspent_credit_at_once(chain, deployed, parties, channels, site, tmp_path):
    from channel_node.config import load_settings
    from channel_node.signing import cooperative_close_digest, sign_digest

    settings = load_settings(
        contract=deployed.address, receiver=parties.receiver.address, database=tmp_path / "node.db", confirmations=1,
        claim_key=parties.receiver.private_key.hex(),
        paywall={"content_dir": site, "prices": [{"path": "/articles/*", "price": PRICE}]},
    )  # fmt: skip
    node = await start_node(chain.tester, settings)
    try:
        payer = payer_for(channels, deposit=10 * PRICE)
        assert (await node.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(3 * PRICE)})).status == 200

        def ask(amount: int, key: bytes = parties.payer.private_key):
            signature = sign_digest(key, cooperative_close_digest(channels.domain, payer.id, amount))
            body = {"channelId": "0x" + payer.id.hex(), "amount": str(amount), "payerSignature": "0x" + signature.hex()}
            return node.client.post("/_channel/cooperative-close", json=body)

        too_low = await ask(PRICE - 1)
        assert too_low.status == 409 and (await too_low.json())["error"] == "close_amount_too_low"
        for above in (PRICE + 1, 3 * PRICE, 10 * PRICE):  # the voucher's ceiling, the deposit: never more than charged
            too_high = await ask(above)
            answer = await too_high.json()
            assert too_high.status == 409 and answer["error"] == "close_amount_above_charged", above
            assert answer["channel"]["charged"] == str(PRICE) and "receiverSignature" not in answer
        forged = await ask(PRICE, key=b"\x42" * 32)
        assert forged.status == 403 and (await forged.json())["error"] == "invalid_signature"
        malformed = await node.client.post("/_channel/cooperative-close", data=b"{not json")
        assert malformed.status == 400

        consent = await ask(PRICE)
        assert consent.status == 200
        receiver_signature = bytes.fromhex((await consent.json())["receiverSignature"][2:])
        payer_signature = sign_digest(parties.payer.private_key, cooperative_close_digest(channels.domain, payer.id, PRICE))
        before = channels.chain.w3.eth.get_balance(parties.payer.address)
        receipt = channels.chain.transact(
            channels.contract.functions.closeCooperative(payer.config.as_abi_tuple(), PRICE, payer_signature, receiver_signature),
            parties.other.address,  # anyone may send it with both signatures
        )
        assert receipt["status"] == 1
        assert channels.chain.w3.eth.get_balance(parties.payer.address) - before == 9 * PRICE, "credit back at once"
        assert tuple(channels.state(payer.config)[1:]) == (PRICE, 0, True)
        late = await node.client.get("/articles/2.html", headers={"PAYMENT-SIGNATURE": payer.header(3 * PRICE)})
        assert (await refusal(late))[1] == "channel_closing", "nothing sold after consenting to close"
    finally:
        await node.stop()
