"""Red-team variants against the reader's wallet (PayingSession, middleware, Wallet): hostile sites
on 127.0.0.1 in front of the real node, each trying to make the wallet sign, send or forget a
voucher it should not, or lock deposit after deposit (docs/security.md, "The wallet's exposure
bound")."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.client import OfferRejected, PayingSession, Policy, ServerMisbehaved, WalletError
from channel_node.server.protocol import REQUIRED_HEADER, SIGNATURE_HEADER, decode_header, encode_header
from paywall_helpers import PRICE
from test_wallet_hostile import Hostile, make_wallet, node_state, paying, running, site, url_of  # noqa: F401


class Malformed(Hostile):
    """Answers every voucher with a 402 whose document is mangled by `self.mangle(document)`."""

    mangle = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        voucher = request.headers.get(SIGNATURE_HEADER)
        if voucher is None or self.mangle is None:
            return await super().handle(request)
        self.seen.append((request.path, voucher))
        _, headers, _ = await self.forward(request, with_voucher=False)
        document = decode_header(headers[REQUIRED_HEADER])
        document["resource"]["url"] = str(request.url)
        document["error"] = "insufficient_voucher"
        value = self.mangle(document)
        raw = value if isinstance(value, str) else encode_header(value)
        return web.Response(status=402, headers={REQUIRED_HEADER: raw}, text="{}")


def _extra_list(d):
    d["accepts"][0]["extra"] = [1, 2]
    return d


def _accepts_int(d):
    d["accepts"] = 5
    return d


def _channel_str(d):
    d["accepts"][0]["extra"]["channel"] = "x"
    return d


def _deep(d):
    import base64

    return base64.b64encode(b"[" * 2000 + b"]" * 2000).decode()


def _close_delay_str(d):
    d["accepts"][0]["extra"]["closeDelay"] = "3600"
    return d


MANGLES = [_extra_list, _accepts_int, _channel_str, _deep]


@pytest.mark.parametrize("mangle", MANGLES, ids=lambda f: f.__name__)
async def test_a_malformed_answer_to_a_voucher_never_leaves_its_price_reserved(running, make_wallet, mangle):
    wallet = make_wallet()
    async with Malformed(running) as hostile, paying(wallet) as session:
        assert (await session.get(hostile.url("/articles/a0.html"))).charged == PRICE
        hostile.mangle = staticmethod(mangle)
        for n in range(1, 4):
            try:
                await session.get(hostile.url(f"/articles/a{n}.html"))
            except Exception:  # whatever it raises, the reservation must not stay
                pass
        [record] = wallet.channels()
        assert wallet.ledger(record.channel_id).active == (), "no request stays in flight after its answer"
        hostile.mangle = None
        result = await session.get(hostile.url("/articles/a9.html"))
        assert result.charged == PRICE
    [record] = wallet.channels()
    assert record.signed == 2 * PRICE, "two articles delivered, two prices signed"


class SlowRefusal(Hostile):
    """Answers every voucher with `exceeds_deposit` (the wallet waits and resends)."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        voucher = request.headers.get(SIGNATURE_HEADER)
        if voucher is None or self.mode != "exceeds":
            return await super().handle(request)
        self.seen.append((request.path, voucher))
        _, headers, _ = await self.forward(request, with_voucher=False)
        document = decode_header(headers[REQUIRED_HEADER])
        document["resource"]["url"] = str(request.url)
        document["error"] = "exceeds_deposit"
        return web.Response(status=402, headers={REQUIRED_HEADER: encode_header(document)}, text="{}")


async def test_a_request_cancelled_while_it_waits_to_resend_leaves_nothing_reserved(running, make_wallet):
    """A caller's timeout (or Ctrl-C) while the wallet waits between attempts: the request's price
    must not stay reserved, or every later voucher of the process signs one more price."""
    wallet = make_wallet()
    async with SlowRefusal(running) as hostile, paying(wallet, retries=50, retry_delay=0.2) as session:
        assert (await session.get(hostile.url("/articles/a0.html"))).charged == PRICE
        hostile.mode = "exceeds"
        for n in range(1, 4):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(session.get(hostile.url(f"/articles/a{n}.html")), 0.3)
        [record] = wallet.channels()
        assert wallet.ledger(record.channel_id).active == ()
        hostile.mode = "honest"
        assert (await session.get(hostile.url("/articles/a9.html"))).charged == PRICE
    [record] = wallet.channels()
    assert record.signed == 2 * PRICE, "two articles delivered, two prices signed"


OFFER = {
    "scheme": "channel", "network": "eip155:31337", "amount": "1000", "asset": "0x" + "00" * 20,
    "payTo": "0x" + "11" * 20, "maxTimeoutSeconds": 60,
    "extra": {"contract": "0x" + "22" * 20, "receiverAuthorizer": "0x" + "00" * 20, "minDeposit": "1000",
              "closeDelay": {"min": 900, "max": 86400}, "once": True},
}  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**260), 2**260) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
FIELDS = ["amount", "network", "asset", "payTo", "extra", "scheme", "extra.contract", "extra.closeDelay",
          "extra.minDeposit", "extra.receiverAuthorizer", "extra.once", "extra.closeDelay.min", "extra.closeDelay.max"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(FIELDS), value=JSON)
def test_any_json_in_any_field_of_an_offer_is_parsed_or_refused_with_offer_rejected(field, value):
    import copy

    from channel_node.client.wallet import _parse_offer

    offer = copy.deepcopy(OFFER)
    *path, last = field.split(".")
    target = offer
    for part in path:
        target = target[part]
    target[last] = value
    try:
        terms = _parse_offer(offer, 31337)
    except OfferRejected:
        return
    assert isinstance(terms.price, int) and 0 < terms.price < 2**128
    assert terms.delay_min is None or type(terms.delay_min) is int
