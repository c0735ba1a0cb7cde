"""The admin API over the in-process chain: bearer-token guard, listing and filters, claims and closes
queued through the outbox and landing on chain, totals, the OpenAPI description, and its log lines."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer

from channel_node import logs
from channel_node.config import load_settings
from channel_node.node.assembly import Node, build_node
from channel_node.node.runtime import PaymentRequest
from channel_node.server.admin import create_admin_app
from channel_node.store import StoreError
from paywall_helpers import PRICE, Payer, async_web3, refusal, write_site

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOUR = 3600
ZERO = "0x" + "00" * 20


@dataclass
class Admin:
    node: Node
    client: TestClient  # the admin application
    paywall: TestClient  # the node's paywall application

    async def get(self, path: str, headers: dict | None = AUTH, **params) -> tuple[int, object, dict]:
        response = await self.client.get(path, headers=headers, params=params or None)
        return response.status, await response.json(), response.headers

    async def post(self, path: str, body: object = None, *, data: str | None = None, headers: dict | None = AUTH):
        payload = data if data is not None else (None if body is None else json.dumps(body))
        response = await self.client.post(path, data=payload, headers=headers)
        return response.status, await response.json()

    async def pay(self, channels, config, amount: int, resource: str, price: int = PRICE):
        request = PaymentRequest(channels.id(config), amount, channels.signature(config, amount), resource, price, True)
        return await self.node.runtime.pay(request)

    async def sync(self) -> None:
        """What the node's background tasks do: send the outbox, then follow the chain."""
        await self.node.sender.tick()
        await self.node.watcher.poll()


@pytest.fixture
async def make_admin(chain, deployed, parties, tmp_path):
    running: list[Admin] = []

    async def make(admin_token: str | None = TOKEN) -> Admin:
        site = write_site(tmp_path / "site")
        settings = load_settings(
            contract=deployed.address, receiver=parties.receiver.address, database=tmp_path / f"node{len(running)}.db",
            confirmations=1, close_margin=60, admin_token=admin_token, claim_key=parties.receiver.private_key.hex(),
            paywall={"content_dir": site, "prices": [{"path": "/articles/*", "price": PRICE}]},
        )  # fmt: skip
        node = await build_node(settings, async_web3(chain.tester))
        admin = Admin(node, TestClient(TestServer(create_admin_app(node))), TestClient(TestServer(node.app)))
        running.append(admin)
        await admin.client.start_server()
        await admin.paywall.start_server()
        return admin

    yield make
    for admin in running:
        await admin.client.close()
        await admin.paywall.close()
        await admin.node.close()


def hex_id(channels, config) -> str:
    return "0x" + channels.id(config).hex()


async def three_channels(admin: Admin, channels):
    """a: three articles paid; b: one article paid with a voucher of two (credit); c: no voucher."""
    a, b, c = (channels.open_eth(10 * PRICE, channels.config(close_delay=HOUR)) for _ in range(3))
    await admin.node.watcher.poll()  # the node learns them from the chain
    for n in (1, 2, 3):
        assert (await admin.pay(channels, a, n * PRICE, f"/articles/{n}.html")).accepted
    assert (await admin.pay(channels, b, 2 * PRICE, "/articles/1.html")).accepted
    return a, b, c


async def test_requests_without_the_token_are_refused_and_change_nothing(make_admin, channels):
    admin = await make_admin()
    a, _, _ = await three_channels(admin, channels)
    before = await admin.node.store.list_channels()
    wrong = [None, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
             {"Authorization": "Bearer"}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN}]  # fmt: skip
    for headers in wrong:
        for method, path, body in [
            ("post", "/admin/claim", {}), ("post", f"/admin/channels/{hex_id(channels, a)}/claim", None),
            ("post", f"/admin/channels/{hex_id(channels, a)}/close", None), ("post", "/admin/close", {"all": True}),
            ("get", "/admin/channels", None), ("get", "/admin/openapi.json", None), ("get", "/admin/nowhere", None),
        ]:  # fmt: skip
            response = await getattr(admin.client, method)(path, headers=headers, data=json.dumps(body) if body else None)
            assert response.status == 401, (headers, path)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            text = await response.text()
            assert json.loads(text)["error"] == "unauthorized" and TOKEN not in text
    assert await admin.node.store.outbox(("pending", "sent", "done", "abandoned")) == []
    assert await admin.node.store.list_channels() == before
    # The scheme is case-insensitive; the token is not.
    response = await admin.client.get("/admin/status", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status == 200
    response = await admin.client.get("/admin/status", headers={"Authorization": f"Bearer {TOKEN.upper()}"})
    assert response.status == 401


async def test_without_an_admin_token_the_api_is_disabled(make_admin):
    admin = await make_admin(admin_token=None)
    for headers in (AUTH, None, {"Authorization": "Bearer "}):
        status, body, _ = await admin.get("/admin/status", headers=headers)
        assert (status, body["error"]) == (503, "admin_disabled")
        assert await admin.post("/admin/claim", {}, headers=headers) == (503, body)
    assert await admin.node.store.outbox() == []


async def test_list_filters_and_show(make_admin, channels, parties):
    admin = await make_admin()
    a, b, c = await three_channels(admin, channels)
    # c's payer asks to close: the node sees it; with no voucher there is nothing to defend.
    channels.chain.transact(channels.contract.functions.requestClose(c.as_abi_tuple()), parties.payer.address)
    await admin.node.watcher.poll()

    status, listed, headers = await admin.get("/admin/channels")
    assert status == 200 and headers["X-Total-Count"] == "3"
    assert [ch["channelId"] for ch in listed] == sorted(hex_id(channels, x) for x in (a, b, c))
    by_id = {ch["channelId"]: ch for ch in listed}
    assert by_id[hex_id(channels, a)] == {
        "channelId": hex_id(channels, a), "payer": parties.payer.address, "signer": parties.voucher_signer,
        "receiver": parties.receiver.address, "token": ZERO, "closeDelay": HOUR, "salt": str(a.salt),
        "receiverAuthorizer": ZERO, "deposited": str(10 * PRICE), "claimed": "0", "maxClaimableAmount": str(3 * PRICE), "charged": str(3 * PRICE),
        "unclaimed": str(3 * PRICE), "credit": "0", "closeDeadline": None, "settled": False,
        "receiverClosing": False, "status": "open",
    }  # fmt: skip
    b_row = by_id[hex_id(channels, b)]
    # b's credit (a voucher for two, one article charged) is the payer's: only the charged article is unclaimed
    assert (b_row["charged"], b_row["unclaimed"], b_row["credit"]) == (str(PRICE), str(PRICE), str(PRICE))
    c_row = by_id[hex_id(channels, c)]
    assert c_row["status"] == "closing" and isinstance(c_row["closeDeadline"], int) and c_row["unclaimed"] == "0"

    async def ids(**params) -> list[str]:
        status, body, _ = await admin.get("/admin/channels", **params)
        assert status == 200, body
        return [ch["channelId"] for ch in body]

    assert sorted(await ids(status="open")) == sorted([hex_id(channels, a), hex_id(channels, b)])
    assert await ids(status="closing") == [hex_id(channels, c)]
    assert await ids(status="settled") == [] and await ids(status="receiver_closing") == []
    assert await ids(min_unclaimed=str(3 * PRICE)) == [hex_id(channels, a)]
    assert sorted(await ids(min_unclaimed="1")) == sorted([hex_id(channels, a), hex_id(channels, b)])
    assert await ids(min_unclaimed=str(2**256 - 1)) == []
    everything = await ids()
    assert await ids(limit="1", offset="1") == everything[1:2] and await ids(offset="5") == []
    _, _, headers = await admin.get("/admin/channels", status="open", limit="1")
    assert headers["X-Total-Count"] == "2"
    for bad in [{"status": "nope"}, {"min_unclaimed": "-1"}, {"min_unclaimed": "1.5"}, {"min_unclaimed": "9" * 79},
                {"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"offset": "-2"}, {"surprise": "1"}]:  # fmt: skip
        status, body, _ = await admin.get("/admin/channels", **bad)
        assert (status, body["error"]) == (400, "malformed_request"), bad

    status, shown, _ = await admin.get(f"/admin/channels/{hex_id(channels, a)}")
    assert status == 200 and {k: v for k, v in shown.items() if k not in ("charges", "outbox")} == by_id[hex_id(channels, a)]
    assert [(ch["resource"], ch["amount"], ch["once"]) for ch in shown["charges"]] == [
        (f"/articles/{n}.html", str(PRICE), True) for n in (1, 2, 3)
    ]
    assert shown["outbox"] == []
    # Upper-case hex and no 0x prefix name the same channel.
    assert (await admin.get(f"/admin/channels/{channels.id(a).hex().upper()}"))[1] == shown

    status, body, _ = await admin.get("/admin/channels/0x" + "ab" * 32)
    assert (status, body["error"]) == (404, "channel_unknown")
    for bad in ["0x1234", "zz" * 32, "0x" + "ab" * 33, "0x" + "ab" * 32 + "%20"]:
        status, body, _ = await admin.get(f"/admin/channels/{bad}")
        assert (status, body["error"]) == (400, "malformed_channel_id"), bad
        assert await admin.post(f"/admin/channels/{bad}/claim") == (400, body)


async def test_claim_one_lands_on_chain(make_admin, channels):
    admin = await make_admin()
    a, b, c = await three_channels(admin, channels)
    status, queued = await admin.post(f"/admin/channels/{hex_id(channels, a)}/claim")
    assert status == 202
    assert (queued["channelId"], queued["kind"], queued["amount"], queued["status"]) == (
        hex_id(channels, a), "claim", str(3 * PRICE), "pending")  # fmt: skip
    [row] = await admin.node.store.outbox()
    assert (row.id, row.channel_id, row.kind, row.amount) == (queued["outboxId"], channels.id(a), "claim", 3 * PRICE)
    assert (await admin.post(f"/admin/channels/{hex_id(channels, a)}/claim"))[0] == 202
    assert len(await admin.node.store.outbox()) == 1, "asking twice queues one transaction"
    shown = (await admin.get(f"/admin/channels/{hex_id(channels, a)}"))[1]
    assert [(r["kind"], r["amount"], r["status"]) for r in shown["outbox"]] == [("claim", str(3 * PRICE), "pending")]

    assert await admin.post(f"/admin/channels/{hex_id(channels, c)}/claim") == (
        409, {"error": "nothing_to_claim", "message": "no voucher above what is already claimed"})  # fmt: skip
    status, body = await admin.post("/admin/channels/0x" + "cd" * 32 + "/claim")
    assert (status, body["error"]) == (404, "channel_unknown")
    status, body = await admin.post(f"/admin/channels/{hex_id(channels, a)}/claim", data="{not json")
    assert (status, body["error"]) == (400, "malformed_request")

    await admin.sync()
    assert channels.state(a)[1] == 3 * PRICE, "claimed on chain"
    assert channels.state(b)[1] == 0
    assert await admin.node.store.outbox() == []
    status, rows, _ = await admin.get("/admin/outbox")
    assert status == 200 and len(rows) == 1
    assert (rows[0]["status"], rows[0]["kind"], rows[0]["amount"]) == ("done", "claim", str(3 * PRICE))
    assert rows[0]["txHash"].startswith("0x") and len(rows[0]["txHash"]) == 66 and rows[0]["attempts"] == 1
    assert (await admin.get("/admin/outbox", status="pending"))[1] == []
    assert (await admin.get("/admin/outbox", channel=hex_id(channels, b)))[1] == []
    assert (await admin.get("/admin/outbox", status="bogus"))[0] == 400
    shown = (await admin.get(f"/admin/channels/{hex_id(channels, a)}"))[1]
    assert (shown["claimed"], shown["unclaimed"], shown["status"]) == (str(3 * PRICE), "0", "open")
    status, body = await admin.post(f"/admin/channels/{hex_id(channels, a)}/claim")
    assert (status, body["error"]) == (409, "nothing_to_claim")


async def test_bulk_claim_with_a_minimum(make_admin, channels):
    admin = await make_admin()
    a, b, c = await three_channels(admin, channels)
    for data in ["{not json", "[]", '"1"', '{"min": 1.5}', '{"min": "-1"}', '{"min": "0"}', '{"min": true}',
                 '{"min": "1e3"}', '{"minimum": "1"}', '{"min": "' + "9" * 79 + '"}', "[" * 100_000]:  # fmt: skip
        status, body = await admin.post("/admin/claim", data=data)
        assert (status, body["error"]) == (400, "malformed_request"), data
    assert await admin.node.store.outbox() == [], "nothing was queued by a malformed call"

    status, body = await admin.post("/admin/claim", {"min": str(5 * PRICE // 2)})
    assert status == 202 and body["queued"] == 1 and body["rejected"] == []
    assert [(ch["channelId"], ch["amount"]) for ch in body["channels"]] == [(hex_id(channels, a), str(3 * PRICE))]
    status, body = await admin.post("/admin/claim")  # default min: 1
    assert status == 202 and body["queued"] == 2
    assert {ch["channelId"]: ch["amount"] for ch in body["channels"]} == {
        hex_id(channels, a): str(3 * PRICE), hex_id(channels, b): str(PRICE)}  # fmt: skip
    rows = await admin.node.store.outbox()
    assert sorted((r.channel_id, r.amount, r.voucher) for r in rows) == sorted(
        [(channels.id(a), 3 * PRICE, 3 * PRICE), (channels.id(b), PRICE, 2 * PRICE)])  # fmt: skip
    assert sorted(ch["outboxId"] for ch in body["channels"]) == sorted(r.id for r in rows)

    status, report, _ = await admin.get("/admin/status")
    assert report["totals"]["outbox"] == {"pending": {"rows": 2, "amount": str(4 * PRICE)}, "sent": {"rows": 0, "amount": "0"}}
    await admin.sync()
    assert (channels.state(a)[1], channels.state(b)[1], channels.state(c)[1]) == (3 * PRICE, PRICE, 0)
    assert await admin.post("/admin/claim", {"min": 1}) == (202, {"queued": 0, "channels": [], "rejected": []})


async def test_close_stops_sales_and_settles_on_chain(make_admin, channels):
    admin = await make_admin()
    a, b, c = await three_channels(admin, channels)
    status, queued = await admin.post(f"/admin/channels/{hex_id(channels, a)}/close")
    assert status == 202 and (queued["kind"], queued["amount"]) == ("close", str(3 * PRICE))
    # The paywall refuses new vouchers on it at once.
    outcome = await admin.pay(channels, a, 4 * PRICE, "/articles/4.html")
    assert not outcome.accepted and outcome.effect.code == "channel_closing"
    response = await admin.paywall.get("/articles/4.html", headers={"PAYMENT-SIGNATURE": Payer(channels, a).header(4 * PRICE)})
    assert (await refusal(response))[:2] == (402, "channel_closing")
    assert (await admin.get("/admin/channels", status="receiver_closing"))[1][0]["channelId"] == hex_id(channels, a)

    # A channel without a voucher has nothing to close with.
    status, body = await admin.post(f"/admin/channels/{hex_id(channels, c)}/close")
    assert (status, body["error"]) == (409, "nothing_to_close")
    for data in ['{"all": false}', '{"channels": []}', '{"channels": "0x12"}', "{}", "",
                 '{"all": true, "channels": []}', '{"every": true}']:  # fmt: skip
        status, body = await admin.post("/admin/close", data=data)
        assert (status, body["error"]) == (400, "malformed_request"), data
    status, body = await admin.post("/admin/close", {"channels": [hex_id(channels, b), "0x12"]})
    assert (status, body["error"]) == (400, "malformed_channel_id")
    assert not (await admin.node.runtime.channel(channels.id(b))).receiver_closing, "a bad id anywhere closes nothing"

    unknown = "0x" + "ef" * 32
    status, body = await admin.post("/admin/close", {"channels": [hex_id(channels, b), unknown, hex_id(channels, c)]})
    assert status == 202 and body["queued"] == 1 and body["channels"][0]["channelId"] == hex_id(channels, b)
    assert [(r["channelId"], r["error"]) for r in body["rejected"]] == [
        (unknown, "channel_unknown"), (hex_id(channels, c), "nothing_to_close")]  # fmt: skip
    status, body = await admin.post("/admin/close", {"all": True})
    assert status == 202 and body["queued"] == 0, "a and b are already closing, c has no voucher"
    assert sorted((r.channel_id, r.kind) for r in await admin.node.store.outbox()) == sorted(
        [(channels.id(a), "close"), (channels.id(b), "close")])  # fmt: skip

    await admin.sync()
    assert (channels.state(a)[1], channels.state(a)[3]) == (3 * PRICE, True), "claimed and settled on chain"
    assert (channels.state(b)[1], channels.state(b)[3]) == (PRICE, True), "what was charged; the credit went back"
    assert await admin.node.store.outbox() == []
    status, body = await admin.post(f"/admin/channels/{hex_id(channels, a)}/close")
    assert (status, body["error"]) == (409, "channel_settled")
    assert [ch["channelId"] for ch in (await admin.get("/admin/channels", status="settled"))[1]] == sorted(
        [hex_id(channels, a), hex_id(channels, b)])  # fmt: skip


async def test_status_totals(make_admin, channels):
    admin = await make_admin()
    await three_channels(admin, channels)
    await admin.post("/admin/claim", {"min": str(3 * PRICE)})
    status, report, _ = await admin.get("/admin/status")
    assert status == 200
    assert report["chainId"] == channels.chain.chain_id and report["receiver"] == channels.parties.receiver.address
    assert report["outbox"] == 1 and report["gas"]["address"] == channels.parties.receiver.address
    assert report["totals"] == {
        "channels": 3, "channelsByStatus": {"open": 3, "closing": 0, "settled": 0, "receiver_closing": 0},
        "deposited": str(30 * PRICE), "claimed": "0", "revenue": str(4 * PRICE), "unclaimed": str(4 * PRICE),
        "credit": str(PRICE),
        "outbox": {"pending": {"rows": 1, "amount": str(3 * PRICE)}, "sent": {"rows": 0, "amount": "0"}},
    }  # fmt: skip


async def test_openapi_describes_every_route(make_admin):
    admin = await make_admin()
    status, document, _ = await admin.get("/admin/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.1")
    routes = {}
    for route in admin.client.app.router.routes():
        routes.setdefault(route.resource.canonical, set()).add(route.method.lower())
    assert {path: set(ops) for path, ops in document["paths"].items()} == routes
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "the node's admin_token"}  # fmt: skip
    assert document["security"] == [{"bearer": []}]
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "message"]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            assert "401" in operation["responses"] and operation["responses"]["401"]["content"], path
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    assert "{" + parameter["name"] + "}" in path
    # Unknown paths and methods are JSON errors too.
    status, body, _ = await admin.get("/admin/nowhere")
    assert (status, body["error"]) == (404, "not_found")
    response = await admin.client.delete("/admin/claim", headers=AUTH)
    assert response.status == 405 and (await response.json())["error"] == "method_not_allowed"


async def test_mutating_calls_are_logged_without_the_token(chain, make_admin, channels, capsys):
    logs.configure("json")
    try:
        admin = await make_admin()
        a, b, _ = await three_channels(admin, channels)
        logs.flush()
        capsys.readouterr()
        await admin.post(f"/admin/channels/{hex_id(channels, a)}/claim")
        await admin.post("/admin/claim", {"min": "1"})
        await admin.post("/admin/close", {"channels": [hex_id(channels, b)]})
        await admin.post("/admin/claim", headers={"Authorization": "Bearer wrong-token"})
        await admin.get("/admin/status")
        logs.flush()
        out = capsys.readouterr().out
    finally:
        logs.configure("console")
    assert TOKEN not in out and "wrong-token" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    actions = [line for line in lines if line["event"] == "admin_action"]
    assert [(line["action"], line["channels"]) for line in actions] == [
        ("claim", [hex_id(channels, a)]),
        ("claim", sorted([hex_id(channels, a), hex_id(channels, b)])),
        ("close", [hex_id(channels, b)]),
    ]
    assert all(line["remote"] == "127.0.0.1" and line["level"] == "info" for line in actions)
    [denied] = [line for line in lines if line["event"] == "admin_denied"]
    assert (denied["method"], denied["path"]) == ("POST", "/admin/claim")


async def test_failures_inside_the_node_are_json_errors(make_admin, monkeypatch):
    admin = await make_admin()

    async def broken_store() -> list:
        raise StoreError("disk full")

    async def bug() -> list:
        raise RuntimeError("a bug")

    monkeypatch.setattr(admin.node.store, "list_channels", broken_store)
    status, body, _ = await admin.get("/admin/channels")
    assert (status, body["error"]) == (503, "store_unavailable")
    monkeypatch.setattr(admin.node.store, "list_channels", bug)
    status, body, _ = await admin.get("/admin/status")
    assert (status, body["error"]) == (500, "internal_error") and "a bug" not in body["message"]
    large = io.BytesIO(b'{"channels": ["' + b"ab" * 600_000 + b'"]}')
    response = await admin.client.post("/admin/close", data=large, headers=AUTH)
    assert (response.status, (await response.json())["error"]) == (413, "request_too_large")
