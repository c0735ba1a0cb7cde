"""The JSON-RPC endpoint misbehaving under a running node (anvil behind a switchable proxy): down,
slow, or answering errors. Known channels keep being served; new ones are refused with
`chain_unavailable`; the node recovers by itself when the endpoint does."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from web3 import AsyncWeb3
from web3.providers import AsyncHTTPProvider

from anvil import start_anvil
from channel_node.chain import ChannelDepositClient, Sender
from channel_node.config import load_settings
from channel_node.node.assembly import build_node
from channel_node.signing import ChannelConfig, address_of_key, channel_id, keccak256, sign_digest, voucher_digest
from channel_node.wire.channel import payment_signature
from paywall_helpers import write_site

PRICE = 1_000
KEY = keccak256(b"chain faults voucher key")


class FlakyRpc:
    """Forwards JSON-RPC to anvil, or fails the way a real endpoint does."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "ok"  # ok | down | slow | error
        self.calls = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        if self.mode == "down":
            raise web.HTTPServiceUnavailable(text="endpoint down")
        if self.mode == "error":
            body = await request.json()
            return web.json_response({"jsonrpc": "2.0", "id": body.get("id"), "error": {"code": -32603, "message": "internal"}})
        if self.mode == "slow":
            await asyncio.sleep(1.0)
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.upstream, data=await request.read(), headers={"Content-Type": "application/json"}) as r,
        ):
            return web.Response(body=await r.read(), content_type="application/json")


async def until(http, condition, timeout: float = 10.0) -> dict:
    """Polls /healthz until `condition(report)` holds (the watcher runs on its own schedule)."""
    deadline = time.monotonic() + timeout
    while True:
        report = await (await http.get("/healthz")).json()
        if condition(report):
            return report
        assert time.monotonic() < deadline, f"/healthz never got there: {report}"
        await asyncio.sleep(0.05)


@pytest.fixture
def anvil():
    chain = start_anvil()
    yield chain
    chain.stop()


async def test_the_node_rides_out_a_misbehaving_endpoint(anvil, tmp_path):
    direct = AsyncWeb3(AsyncHTTPProvider(anvil.http_url))
    deployer, payer, receiver = (await direct.eth.accounts)[:3]
    client = await ChannelDepositClient.deploy(direct, Sender.unlocked(deployer), poll_latency=0.02)
    domain = await client.domain()
    configs = [ChannelConfig.create(payer, address_of_key(KEY), receiver, None, 3600, salt) for salt in (1, 2)]
    for config in configs:
        await client.deposit_eth(config, 100 * PRICE, sender=Sender.unlocked(payer))
    anvil.mine(2)

    flaky = FlakyRpc(anvil.http_url)
    proxy_app = web.Application()
    proxy_app.router.add_post("/", flaky.handle)
    proxy = TestServer(proxy_app)
    await proxy.start_server()
    w3 = AsyncWeb3(AsyncHTTPProvider(str(proxy.make_url("/")), request_kwargs={"timeout": 5}))
    settings = load_settings(
        rpc_url=str(proxy.make_url("/")), contract=client.address, receiver=receiver, database=tmp_path / "n.db",
        poll_interval=0.1, paywall={"content_dir": write_site(tmp_path / "site"), "prices": [{"path": "/api/*", "price": PRICE, "once": False}]},
    )  # fmt: skip
    node = await build_node(settings, w3)
    await node.start()
    http = TestClient(TestServer(node.app))
    await http.start_server()

    def header(config: ChannelConfig, amount: int) -> dict:
        cid = channel_id(domain, config)
        signature = sign_digest(KEY, voucher_digest(domain, cid, amount))
        return {"PAYMENT-SIGNATURE": payment_signature(f"eip155:{domain.chain_id}", client.address, cid, amount, signature, config=config)}

    try:
        known, new = configs
        assert (await http.get("/api/item-1", headers=header(known, PRICE))).status == 200
        for mode in ("down", "error", "slow"):
            flaky.mode = mode
            started = time.perf_counter()
            served = await http.get("/api/item-2", headers=header(known, 2 * PRICE if mode == "down" else PRICE * (3 if mode == "error" else 4)))
            assert served.status == 200, f"a known channel is served while the endpoint is {mode}"
            assert time.perf_counter() - started < 0.5, "and without waiting for the chain"
            if mode != "slow":
                refused = await http.get("/api/item-1", headers=header(new, PRICE))
                assert refused.status == 503 and (await refused.json())["error"] == "chain_unavailable"
                # The watcher's polls fail meanwhile; the node keeps running and says so.
                health = await until(http, lambda h: "chain_unreachable" in h["problems"])
                assert health["status"] == "degraded"
        flaky.mode = "ok"
        await until(http, lambda h: h["status"] == "ok")
        recovered = await http.get("/api/item-1", headers=header(new, PRICE))
        assert recovered.status == 200, "a new channel works again once the endpoint recovers"
        assert not [t for t in node.tasks + node.chain_tasks if t.done()], "no background task died"
    finally:
        await http.close()
        await node.close()
        await proxy.close()
        await direct.provider.disconnect()
        await w3.provider.disconnect()
