"""The official x402 Python SDK (`x402[evm,httpx]==2.25.0`, the dev extra) pays the node under
`exact`: a 402 that lists `channel` and `exact` -> the SDK picks `exact` (it has no client for
`channel`), signs with wall-clock dates, and gets the article with a settlement receipt whose
transaction moved the price to the node's payee. Several articles in a row; a replayed header is
refused. On the `exact` chain of its own (tests/exact_helpers.py), never time travelled."""

from __future__ import annotations

import httpx
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.http.clients.httpx import x402AsyncTransport
from x402.http.x402_http_client import x402HTTPClient
from x402.mechanisms.evm.exact.register import register_exact_evm_client

from channel_node.wire.envelope import decode_header
from exact_helpers import PRICE, make_exact_chain, start_exact_node

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def world():
    return make_exact_chain()


def sdk_client(world) -> x402Client:
    network = f"eip155:{world.chain.chain_id}"
    client = x402Client()
    register_exact_evm_client(client, Account.from_key(world.payer.private_key), networks=network)
    # DemoDollar is no default asset of the SDK: allow it, with a per-payment cap (atomic units).
    client.set_spend_controls({"allowed_assets": [
        {"network": network, "asset": world.token.address, "max_amount_per_payment": str(10 * PRICE)},
    ]})  # fmt: skip
    return client


async def test_the_official_python_client_pays_articles_under_exact_and_a_replay_is_refused(world, tmp_path):
    running = await start_exact_node(world, tmp_path / "node.db")
    sent: list[httpx.Request] = []

    class Recording(httpx.AsyncHTTPTransport):  # under the SDK's transport: sees its retries too
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return await super().handle_async_request(request)

    async def buy(http: httpx.AsyncClient, client: x402Client, n: int) -> None:
        response = await http.get(str(running.client.make_url(f"/articles/{n}.html")))
        assert response.status_code == 200, response.text
        assert response.text == f"<h1>Article {n}</h1>"
        settle = x402HTTPClient(client).get_payment_settle_response(response.headers.get)
        assert settle.success is True
        assert settle.network == f"eip155:{world.chain.chain_id}"
        assert settle.payer.lower() == world.payer.address.lower()
        receipt = world.chain.w3.eth.get_transaction_receipt(settle.transaction)
        assert receipt["status"] == 1 and receipt["to"] == world.token.address

    try:
        client = sdk_client(world)
        paid_before = world.balance(world.receiver.address)
        async with x402HttpxClient(client, timeout=30) as http:  # the SDK's default httpx timeout is 5 s
            await buy(http, client, 1)
            await buy(http, client, 2)
        # x402HttpxClient is AsyncClient(transport=x402AsyncTransport(client)): the same, recorded.
        async with httpx.AsyncClient(transport=x402AsyncTransport(client, Recording()), timeout=30) as http:
            await buy(http, client, 3)
        assert world.balance(world.receiver.address) == paid_before + 3 * PRICE
        assert len(sent) == 2 and "PAYMENT-SIGNATURE" not in sent[0].headers  # a 402, then one paid retry
        offered = decode_header((await running.client.get("/articles/3.html")).headers["PAYMENT-REQUIRED"])
        assert [e["scheme"] for e in offered["accepts"]] == ["channel", "exact"]
        header = sent[1].headers["PAYMENT-SIGNATURE"]
        assert decode_header(header)["accepted"]["scheme"] == "exact"

        # The same header again, to the same article and to another: the nonce is spent.
        async with httpx.AsyncClient(timeout=30) as plain:
            for path in ("/articles/3.html", "/articles/4.html"):
                replay = await plain.get(str(running.client.make_url(path)), headers={"PAYMENT-SIGNATURE": header})
                assert replay.status_code == 402
                assert decode_header(replay.headers["PAYMENT-REQUIRED"])["error"] == "authorization_used"
        assert world.balance(world.receiver.address) == paid_before + 3 * PRICE
    finally:
        await running.stop()
