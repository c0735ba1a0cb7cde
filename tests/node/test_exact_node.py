"""The node sells under x402's `exact` as its own facilitator, on a chain of its own that is never
time travelled (tests/exact_helpers.py): offers, sales, every refusal code, front-runs, cancels,
drained balances, a hollow token, replays, concurrency, restarts."""

from __future__ import annotations

import pytest

from channel_node.wire.envelope import decode_header
from exact_helpers import PRICE, ExactPayer, exact_entry, make_exact_chain, offer_of, start_exact_node

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
    from channel_node.node.assembly import build_node
    from paywall_helpers import async_web3

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
