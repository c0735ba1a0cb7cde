"""Hostile input on the payment path and the admin API, driven by hypothesis through real HTTP:
every answer is a 4xx with a stable code, never a 5xx, and the store is unchanged."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.config import load_settings
from channel_node.node.assembly import build_node
from channel_node.wire.envelope import decode_header
from paywall_helpers import PRICE, Payer, async_web3, write_site

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
CODES = {
    "payment_required", "malformed_payment", "unsupported_scheme", "wrong_network", "wrong_contract",
    "wrong_receiver", "wrong_asset", "channel_unknown", "invalid_signature", "exceeds_deposit",
    "insufficient_voucher", "stale_voucher", "payment_id_reused", "channel_closing", "channel_settled",
}  # fmt: skip
TOKEN = "hostile-admin-token"


class Harness:
    """A node on its own event loop, so hypothesis (synchronous) can drive it example by example."""

    def __init__(self, chain, deployed, parties, channels, tmp_path):
        self.loop = asyncio.new_event_loop()
        self.channels = channels
        self.payer = Payer(channels, channels.open_eth(10 * PRICE, channels.config()))
        self.other = Payer(channels, channels.open_eth(10 * PRICE, channels.config(receiver=parties.other.address)))
        config = load_settings(
            contract=deployed.address, receiver=parties.receiver.address, database=tmp_path / "node.db",
            confirmations=1, admin_token=TOKEN, claim_key=parties.receiver.private_key.hex(),
            paywall={"content_dir": write_site(tmp_path / "site"), "prices": [{"path": "/articles/*", "price": PRICE}]},
        )  # fmt: skip
        self.run(self._start(config, chain))
        # One paid article, so there is state to protect and old vouchers to replay.
        paid = self.run(self.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": self.payer.header(2 * PRICE)}))
        assert paid.status == 200

    async def _start(self, config, chain) -> None:
        self.node = await build_node(config, async_web3(chain.tester))
        self.client = TestClient(TestServer(self.node.app))  # aiohttp objects need the running loop
        self.admin = TestClient(TestServer(self.node.admin_app))
        await self.client.start_server()
        await self.admin.start_server()

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    async def snapshot(self):
        store = self.node.store
        channels = sorted((c.state, c.version) for c in await store.list_channels())
        charges = {c.state.channel_id: await store.charges(c.state.channel_id) for c in await store.list_channels()}
        return channels, charges, await store.outbox(("pending", "sent", "done", "abandoned"))

    def close(self):
        self.run(self.client.close())
        self.run(self.admin.close())
        self.run(self.node.close())
        self.loop.close()


@pytest.fixture
def harness(chain, deployed, parties, channels, tmp_path):
    h = Harness(chain, deployed, parties, channels, tmp_path)
    yield h
    h.close()


def _mutations(h: Harness):
    valid = decode_header(h.payer.header(3 * PRICE, payment_id="p-1"))
    signature = bytes.fromhex(valid["payload"]["signature"][2:])
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    high_s = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # the same signature, malleated
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**300), 2**300) | st.floats() | st.text(max_size=40),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=10,
    )
    fields = [("accepted", "scheme"), ("accepted", "network"), ("accepted", "payTo"), ("accepted", "asset"),
              ("accepted", "extra"), ("payload", "channelId"), ("payload", "maxClaimableAmount"),
              ("payload", "signature"), ("payload", "paymentId"), ("payload", "channel"), ("x402Version",)]  # fmt: skip

    def replace(path, value):
        document = json.loads(json.dumps(valid))
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return base64.b64encode(json.dumps(document).encode()).decode()  # json: big integers too

    amounts = st.sampled_from(["-1", "1e3", str(2**128), str(2**256), "0x10", " 5", "5 ", "", "99999999999999999999"])
    return st.one_of(
        st.builds(replace, st.sampled_from(fields), json_values),
        st.builds(lambda a: replace(("payload", "maxClaimableAmount"), a), amounts),
        st.just(replace(("payload", "signature"), "0x" + high_s.hex())),
        st.just(replace(("payload", "signature"), "0x" + signature[:40].hex())),  # truncated
        st.just(h.payer.header(PRICE)),  # replayed old voucher: stale
        st.just(h.payer.header(3 * PRICE, key=b"\x33" * 32)),  # forged
        st.just(h.other.header(3 * PRICE)),  # a channel that pays someone else
        st.just(h.payer.header(3 * PRICE, network="eip155:1")),
        st.just(h.payer.header(3 * PRICE, contract="0x" + "ab" * 20)),
        st.just(h.payer.header(10**30)),  # above the deposit
        st.text(st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=200),
        st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
        st.integers(4097, 8000).map(lambda n: "A" * n),  # over the node's 4 KiB voucher limit
    )


def test_hostile_payment_headers_get_a_coded_4xx_and_change_nothing(harness):
    h = harness
    outcomes = {"refused": 0, "paid": 0}

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_mutations(h))
    def attempt(header):
        before = h.run(h.snapshot())
        response = h.run(h.client.get("/articles/2.html", headers={"PAYMENT-SIGNATURE": header}))
        if response.status == 200:  # a mutation that left the voucher valid (say, extra = {}): a real payment
            receipt = decode_header(response.headers["PAYMENT-RESPONSE"])
            assert int(receipt["chargedAmount"]) in (0, PRICE)
            outcomes["paid"] += 1
            return
        assert 400 <= response.status < 500, (response.status, header[:200])
        body = h.run(response.json())
        assert body["error"] in CODES, body
        assert h.run(h.snapshot()) == before, "a refusal changed the store"
        outcomes["refused"] += 1

    attempt()
    assert outcomes["refused"] > 100


def test_oversize_headers_are_refused_by_the_server(harness):
    h = harness
    response = h.run(h.client.get("/articles/2.html", headers={"PAYMENT-SIGNATURE": "A" * 20_000}))
    assert response.status in (400, 431)


def test_admin_api_without_the_right_token_changes_nothing(harness):
    h = harness
    before = h.run(h.snapshot())
    channel = "0x" + h.payer.id.hex()
    tokens = st.one_of(st.none(), st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40))
    routes = st.sampled_from([("POST", f"/admin/channels/{channel}/claim"), ("POST", f"/admin/channels/{channel}/close"),
                              ("POST", "/admin/claim"), ("POST", "/admin/close"), ("GET", "/admin/channels")])  # fmt: skip

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(routes, tokens, st.sampled_from([b"", b"{}", b'{"all": true}', b'{"min": "1"}']))
    def attempt(route, token, body):
        if token == TOKEN:
            return
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = h.run(h.admin.request(route[0], route[1], data=body, headers=headers))
        assert response.status == 401 and h.run(response.json())["error"] == "unauthorized"

    attempt()
    assert h.run(h.snapshot()) == before
