"""Caps and passes at the paywall, end to end over the in-process chain (docs/protocol.md, "Caps
and passes"): buy up to a cap and read on free, a partial charge at the boundary, the cap reset by
the next period (the runtime's clock moved), a rolling cap, a day pass bought, read under and
expired, a pass bought twice, and the refusals that change nothing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from channel_node.wire.envelope import decode_header
from paywall_helpers import (
    DAY,
    NEXT_MONTH,
    NOW,
    PRICE,
    Clock,
    Payer,
    node_settings,
    receipt,
    refusal,
    start_clocked_node,
    start_node,
)

CAP = 2 * PRICE + PRICE // 2  # two articles and a half
PASS_PRICE = 3 * PRICE
API_CAP = PRICE + PRICE // 2


@pytest.fixture
async def running(chain, deployed, parties, tmp_path):
    node = await start_clocked_node(
        chain.tester, deployed.address, parties.receiver.address, tmp_path, 12,
        caps=[{"name": "news", "tags": {"section": "news"}, "cap": f"{CAP}wei", "period": "month"},
              {"name": "api", "pattern": "/api/*", "cap": API_CAP, "period": "2d"}],
        passes=[{"name": "news-day", "pattern": "/articles/*", "price": f"{PASS_PRICE}wei", "duration": "1d",
                 "description": "All of today's news"},
                {"name": "quotes", "pattern": "/api/quote", "price": PRICE, "duration": "2h"}],
    )  # fmt: skip
    yield node
    await node.stop()


class Reader:
    """Pays like a wallet: each voucher is the node's charged total (from the last receipt) plus
    the list price it was offered (or a pass's price), so it signs for more than a capped read costs."""

    def __init__(self, running, channels) -> None:
        self.client = running.client
        self.payer = Payer(channels, channels.open_eth(100 * PRICE, channels.config()))
        self.total = 0

    async def get(self, path: str, price: int = PRICE, pass_name: str | None = None):
        header = self.payer.header(self.total + price, pass_name=pass_name, with_config=self.total == 0)
        response = await self.client.get(path, headers={"PAYMENT-SIGNATURE": header})
        if response.status == 200:
            self.total = int(receipt(response)["chargedTotal"])
        return response


async def charged_by(reader: Reader, running) -> list[tuple[str, int, str | None, str | None]]:
    # The store records a pass under its terms' key (`core/spending.py:pass_key`): `news-day@<digest>`.
    return [(c.resource, c.amount, c.cap_group, c.pass_name and c.pass_name.partition("@")[0])
            for c in await running.node.store.charges(reader.payer.id)]  # fmt: skip


async def test_the_offer_names_the_cap_and_the_passes(running):
    status, code, offer = await refusal(await running.client.get("/articles/1.html"))
    extra = offer["accepts"][0]["extra"]
    assert (status, code, offer["accepts"][0]["amount"]) == (402, "payment_required", str(PRICE))
    assert extra["cap"] == {"name": "news", "cap": str(CAP), "period": "month", "periodEndsAt": NEXT_MONTH}
    assert extra["passes"] == [{"name": "news-day", "price": str(PASS_PRICE), "duration": DAY,
                                "description": "All of today's news"}]  # fmt: skip
    head = await running.client.head("/api/quote")
    extra = decode_header(head.headers["PAYMENT-REQUIRED"])["accepts"][0]["extra"]
    assert extra["cap"] == {"name": "api", "cap": str(API_CAP), "period": "2d"}  # rolling: no period end
    assert [p["name"] for p in extra["passes"]] == ["quotes"]
    free = await running.client.get("/index.html")
    assert free.status == 200


async def test_articles_up_to_the_cap_then_free_with_a_partial_charge_at_the_boundary(running, channels):
    reader = Reader(running, channels)
    costs = []
    for n in range(1, 6):
        response = await reader.get(f"/articles/{n}.html")
        assert response.status == 200 and await response.text() == f"<h1>Article {n}</h1>"
        r = receipt(response)
        costs.append(int(r["chargedAmount"]))
        assert r["cap"] == {"name": "news", "cap": str(CAP), "paid": str(min(CAP, n * PRICE)), "resetsAt": NEXT_MONTH}
        assert "pass" not in r
    assert costs == [PRICE, PRICE, PRICE // 2, 0, 0] and reader.total == CAP
    assert await charged_by(reader, running) == [
        (f"/articles/{n}.html", cost, "news", None) for n, cost in zip(range(1, 6), costs, strict=True)]
    again = await reader.get("/articles/1.html")  # a re-read: free, nothing recorded
    assert receipt(again)["chargedAmount"] == "0" and len(await charged_by(reader, running)) == 5
    # A voucher below the charged total opens nothing, even for a read the cap made free; the
    # corrective 402 carries the channel's standing and what the read costs it now.
    old = reader.payer.header(PRICE, with_config=False)
    status, code, body = await refusal(await running.client.get("/articles/6.html", headers={"PAYMENT-SIGNATURE": old}))
    terms = body["accepts"][0]
    assert (status, code, terms["amount"], terms["extra"]["charge"]) == (402, "stale_voucher", str(PRICE), "0")
    assert terms["extra"]["cap"] == {"name": "news", "cap": str(CAP), "period": "month", "periodEndsAt": NEXT_MONTH,
                                     "paid": str(CAP), "resetsAt": NEXT_MONTH}  # fmt: skip
    assert terms["extra"]["channel"]["charged"] == str(CAP)
    state = await running.node.runtime.channel(reader.payer.id)
    assert state.charged == CAP, "never more than the cap in the month"


async def test_the_cap_resets_with_the_next_period_and_free_reads_stay_free(running, channels):
    reader = Reader(running, channels)
    for n in range(1, 5):
        await reader.get(f"/articles/{n}.html")
    assert reader.total == CAP
    running.clock.now = NEXT_MONTH - 1
    assert receipt(await reader.get("/articles/5.html"))["chargedAmount"] == "0"  # still December
    running.clock.now = NEXT_MONTH  # January: the cap starts again
    r = receipt(await reader.get("/articles/6.html"))
    feb = int(datetime(2027, 2, 1, tzinfo=UTC).timestamp())
    assert r["chargedAmount"] == str(PRICE) and r["cap"] == {"name": "news", "cap": str(CAP), "paid": str(PRICE), "resetsAt": feb}
    for n in (4, 5):  # read free under December's cap: bought, so free in January too
        assert receipt(await reader.get(f"/articles/{n}.html"))["chargedAmount"] == "0"
    assert reader.total == CAP + PRICE


async def test_a_rolling_cap_frees_room_as_its_oldest_charge_leaves_the_window(running, channels):
    reader = Reader(running, channels)
    costs = []
    for n in range(4):
        running.clock.now = NOW + n * 3600
        costs.append(int(receipt(await reader.get(f"/api/item-{n}"))["chargedAmount"]))
    assert costs == [PRICE, PRICE // 2, 0, 0]
    assert [amount for _, amount, _, _ in await charged_by(reader, running)] == [PRICE, PRICE // 2], (
        "a free per-request call is not recorded: nothing to unlock, no room spent")
    r = receipt(await reader.get("/api/item-9"))
    assert r["cap"] == {"name": "api", "cap": str(API_CAP), "paid": str(API_CAP), "resetsAt": NOW + 2 * DAY}
    running.clock.now = NOW + 2 * DAY - 1  # the first charge is still in the window
    assert receipt(await reader.get("/api/item-10"))["chargedAmount"] == "0"
    running.clock.now = NOW + 2 * DAY  # the first charge (PRICE) has left: that much room again
    assert receipt(await reader.get("/api/item-11"))["chargedAmount"] == str(PRICE)
    running.clock.now = NOW + 2 * DAY + 3600  # the second (PRICE/2) has left too
    r = receipt(await reader.get("/api/item-12"))
    assert r["chargedAmount"] == str(PRICE // 2) and r["cap"]["paid"] == str(API_CAP)


async def test_a_day_pass_reads_its_pattern_free_until_it_expires(running, channels):
    reader = Reader(running, channels)
    bought = await reader.get("/articles/1.html", price=PASS_PRICE, pass_name="news-day")
    assert bought.status == 200 and await bought.text() == "<h1>Article 1</h1>"
    r = receipt(bought)
    assert r["chargedAmount"] == str(PASS_PRICE) and r["pass"] == {"name": "news-day", "until": NOW + DAY}
    assert r["cap"]["paid"] == "0", "a pass's price counts toward no cap"
    for n in range(2, 6):
        running.clock.now = NOW + n * 3600
        r = receipt(await reader.get(f"/articles/{n}.html"))
        assert r["chargedAmount"] == "0" and r["pass"] == {"name": "news-day", "until": NOW + DAY}
    running.clock.now = NOW + DAY - 1
    assert receipt(await reader.get("/articles/6.html"))["chargedAmount"] == "0"
    running.clock.now = NOW + DAY  # expired: [bought, bought + 1 day)
    r = receipt(await reader.get("/articles/7.html"))
    assert r["chargedAmount"] == str(PRICE) and "pass" not in r and r["cap"]["paid"] == str(PRICE)
    for n in (2, 6):  # read under the pass: still free once it has expired
        assert receipt(await reader.get(f"/articles/{n}.html"))["chargedAmount"] == "0"
    assert reader.total == PASS_PRICE + PRICE
    assert (await charged_by(reader, running))[0] == ("/articles/1.html", PASS_PRICE, None, "news-day")
    assert (await charged_by(reader, running))[1] == ("/articles/2.html", 0, "news", "news-day")


async def test_a_pass_bought_twice_is_charged_once(running, channels):
    reader = Reader(running, channels)
    await reader.get("/articles/1.html", price=PASS_PRICE, pass_name="news-day")
    running.clock.now = NOW + 600
    again = await reader.get("/articles/2.html", price=PASS_PRICE, pass_name="news-day")
    r = receipt(again)
    assert again.status == 200 and r["chargedAmount"] == "0" and r["pass"] == {"name": "news-day", "until": NOW + DAY}
    assert reader.total == PASS_PRICE
    running.clock.now = NOW + DAY + 1  # expired: buying it again is a new pass
    r = receipt(await reader.get("/articles/3.html", price=PASS_PRICE, pass_name="news-day"))
    assert r["chargedAmount"] == str(PASS_PRICE) and r["pass"]["until"] == NOW + 2 * DAY + 1


def forged_pass(header: str, value: object) -> str:
    document = json.loads(base64.b64decode(header))
    document["payload"]["pass"] = value
    return base64.b64encode(json.dumps(document).encode()).decode()


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        ("/articles/1.html", "no-such-pass", "unknown_pass"),
        ("/api/other", "quotes", "pass_not_covering"),
        ("/api/quote", "news-day", "pass_not_covering"),
        ("/articles/1.html", "News Day", "malformed_payment"),
        ("/articles/1.html", 5, "malformed_payment"),
        ("/articles/1.html", "x" * 33, "malformed_payment"),
    ],
)
async def test_a_bad_pass_is_a_400_that_changes_nothing(running, channels, path, value, code):
    reader = Reader(running, channels)
    await reader.get("/articles/2.html")
    before = (await running.node.runtime.channel(reader.payer.id), await charged_by(reader, running))
    header = forged_pass(reader.payer.header(reader.total + PASS_PRICE, with_config=False), value)
    status, error, _ = await refusal(await running.client.get(path, headers={"PAYMENT-SIGNATURE": header}))
    assert (status, error) == (400, code)
    assert (await running.node.runtime.channel(reader.payer.id), await charged_by(reader, running)) == before


class Sales:
    """An insights recorder that keeps what the paywall reports."""

    def __init__(self) -> None:
        self.unlocks: list[tuple[str, int, str, int | None, str | None, str | None]] = []

    def offer(self, resource, price, tags, at) -> None:
        pass

    def unlock(self, resource, price, tags, channel_id, at, *, kind="article", list_price=None, cap=None, pass_name=None):
        self.unlocks.append((resource, price, kind, list_price, cap, pass_name))


async def test_insights_hear_each_sales_kind_and_list_price(running, channels):
    sales = running.node.paywall.insights = Sales()
    reader = Reader(running, channels)
    for n in range(1, 5):
        await reader.get(f"/articles/{n}.html")
    await reader.get("/articles/1.html")  # a re-read records nothing
    await reader.get("/articles/5.html", price=PASS_PRICE, pass_name="news-day")
    await reader.get("/articles/6.html")
    assert sales.unlocks == [
        ("/articles/1.html", PRICE, "article", None, None, None),
        ("/articles/2.html", PRICE, "article", None, None, None),
        ("/articles/3.html", PRICE // 2, "capped", PRICE, "news", None),
        ("/articles/4.html", 0, "capped", PRICE, "news", None),
        ("/articles/5.html", PASS_PRICE, "pass", PASS_PRICE, None, "news-day"),
        ("/articles/6.html", 0, "pass_read", PRICE, "news", "news-day"),
    ]


async def test_a_proxy_checks_before_the_origin_as_it_pays_after(chain, deployed, parties, channels, tmp_path):
    """Reverse-proxy mode asks `Runtime.check` before the origin works and `Runtime.pay` after:
    both decide alike under a cap and a pass (a free read goes through, an old voucher never does)."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    seen: list[str] = []

    async def article(request):
        seen.append(request.path)
        return web.Response(text=f"origin {request.path}")

    origin_app = web.Application()
    origin_app.router.add_get("/articles/{name}", article)
    origin = TestServer(origin_app)
    await origin.start_server()
    settings = node_settings(
        deployed.address, parties.receiver.address, tmp_path / "node.db", upstream=str(origin.make_url("/")),
        caps=[{"name": "news", "pattern": "/articles/*", "cap": PRICE + PRICE // 2, "period": "week"}],
        passes=[{"name": "news-day", "tags": {"section": "news"}, "price": PASS_PRICE, "duration": "1d"}],
    )  # fmt: skip
    node = await start_node(chain.tester, settings)
    node.node.runtime.clock = Clock(NOW)
    try:
        reader = Reader(node, channels)
        costs = [int(receipt(await reader.get(f"/articles/{n}"))["chargedAmount"]) for n in range(1, 4)]
        assert costs == [PRICE, PRICE // 2, 0] and seen == ["/articles/1", "/articles/2", "/articles/3"]
        old = reader.payer.header(PRICE, with_config=False)  # below the charged total: stale, even for 0
        status, code, _ = await refusal(await node.client.get("/articles/4", headers={"PAYMENT-SIGNATURE": old}))
        assert (status, code) == (402, "stale_voucher") and len(seen) == 3, "refused before the origin was asked"
        r = receipt(await reader.get("/articles/5", price=PASS_PRICE, pass_name="news-day"))
        assert r["chargedAmount"] == str(PASS_PRICE) and r["pass"]["until"] == NOW + DAY and len(seen) == 4
    finally:
        await node.stop()
        await origin.close()


async def test_a_pass_bought_on_an_article_already_bought_is_sold_and_covers_the_rest(running, channels):
    reader = Reader(running, channels)
    await reader.get("/articles/1.html")
    r = receipt(await reader.get("/articles/1.html", price=PASS_PRICE, pass_name="news-day"))
    assert r["chargedAmount"] == str(PASS_PRICE) and r["pass"] == {"name": "news-day", "until": NOW + DAY}
    assert receipt(await reader.get("/articles/2.html"))["chargedAmount"] == "0"
    assert reader.total == PRICE + PASS_PRICE
