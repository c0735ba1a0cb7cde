"""The paywall: an aiohttp application that answers priced paths with 402 until a voucher pays.

Flow of a priced request: parse `PAYMENT-SIGNATURE` -> check it is for this network, contract,
receiver and asset -> fetch the content (a missing file or failing origin costs nothing) ->
`Runtime.pay` commits the voucher and charge -> send the content with `PAYMENT-RESPONSE`.
Any refusal is a 4xx whose JSON names a stable `error` code; nothing here raises into a 500.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson
import structlog
from aiohttp import web
from eth_utils import to_checksum_address

from channel_node.core import Reject, Rejected
from channel_node.runtime import ChainUnavailable, PaymentRequest, Runtime
from channel_node.server.browser import add_browser_routes, html_402, teaser_for, wants_html
from channel_node.server.content import Content, ProxySource, StaticSource
from channel_node.server.metrics import Metrics
from channel_node.server.prices import Price, PriceTable
from channel_node.server.protocol import (
    REQUIRED_HEADER,
    RESPONSE_HEADER,
    SCHEME,
    SIGNATURE_HEADER,
    Offer,
    channel_summary,
    ProtocolError,
    Voucher,
    encode_header,
    parse_payment_signature,
    payment_required,
    payment_response,
)
from channel_node.signing import address_of_key, cooperative_close_digest, sign_digest
from channel_node.store import StoreError



def _paywall_logger():
    # Bound once per paywall (after logging is configured): a lazy module-level proxy would rebuild
    # the logger on every paid request.
    return structlog.get_logger("channel_node.paywall").bind()

# Refusals a client fixes by signing again: they carry the channel's state (a corrective 402).
CORRECTIVE = {Reject.INSUFFICIENT_VOUCHER, Reject.STALE_VOUCHER, Reject.EXCEEDS_DEPOSIT}
EXPOSED_HEADERS = f"{REQUIRED_HEADER}, {RESPONSE_HEADER}"
COOPERATIVE_CLOSE_PATH = "/_channel/cooperative-close"


def _hex_field(body: dict, name: str, length: int | None) -> bytes:
    value = body[name]
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"{name} must be 0x-prefixed hex")
    raw = bytes.fromhex(value[2:])
    if length is not None and len(raw) != length:
        raise ValueError(f"{name} must be {length} bytes")
    return raw


class InsightsRecorder(Protocol):
    """Where the paywall reports what it offered and sold. Called on the request path: it must only
    buffer (no I/O), so recording costs the paid path nothing measurable."""

    def offer(self, resource: str, price: int, tags: dict[str, str], at: float) -> None: ...

    def unlock(self, resource: str, price: int, tags: dict[str, str], channel_id: bytes, at: float) -> None: ...


@dataclass
class Paywall:
    runtime: Runtime
    prices: PriceTable
    source: StaticSource | ProxySource
    offer: Offer
    metrics: Metrics
    receiver: bytes
    token: bytes
    log: structlog.typing.FilteringBoundLogger = field(default_factory=_paywall_logger)
    # The claim key: it consents to cooperative closes for channels that name it receiver authorizer
    # (or when it is the receiver's own key), docs/operations.md.
    consent_key: bytes | None = field(default=None, repr=False)
    insights: InsightsRecorder | None = None  # offers shown and unlocks sold, for the publisher's reports

    async def cooperative_close(self, request: web.Request) -> web.Response:
        """A payer asks for the receiver's signature to close its channel now at `amount`
        (at least the charged total); it then sends closeCooperative itself and gets the rest back."""
        try:
            body = orjson.loads(await request.read())
            channel = _hex_field(body, "channelId", 32)
            amount = int(body["amount"]) if isinstance(body.get("amount"), str) and body["amount"].isdigit() else None
            payer_signature = _hex_field(body, "payerSignature", None)
            if amount is None or amount >= 1 << 128:
                raise ValueError("amount must be a decimal string below 2**128")
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
            return web.json_response({"error": "malformed_request", "message": str(exc)[:200]}, status=400)
        if self.consent_key is None:
            return web.json_response(
                {"error": "cannot_consent", "message": "this node holds no claim key; use the unilateral close"},
                status=503,
            )
        try:
            consenter = address_of_key(self.consent_key)
            effect = await self.runtime.cooperative_close(channel, amount, payer_signature, consenter)
        except StoreError as exc:
            self.log.error("store_failed", error=str(exc))
            return web.json_response(
                {"error": "store_unavailable", "message": "the node could not record its consent"}, status=503
            )
        if isinstance(effect, Rejected):
            status = {Reject.CHANNEL_UNKNOWN: 404, Reject.INVALID_SIGNATURE: 403, Reject.CANNOT_CONSENT: 503}.get(effect.code, 409)
            state = await self.runtime.channel(channel)
            document = {"error": effect.code.value, "message": effect.detail}
            if state is not None:
                document["channel"] = channel_summary(state)
            return web.json_response(document, status=status)
        signature = sign_digest(self.consent_key, cooperative_close_digest(self.runtime.domain, channel, effect.amount))
        self.log.info("cooperative_close_consent", channel="0x" + channel.hex(), amount=str(effect.amount))
        return web.json_response({
            "channelId": "0x" + channel.hex(), "amount": str(effect.amount), "receiverSignature": "0x" + signature.hex(),
            "contract": self.offer.contract, "network": self.offer.network,
        })  # fmt: skip

    # ------------------------------------------------------------------ handlers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        price = self.prices.match(request.path)
        body = await request.read() if request.method not in ("GET", "HEAD") else b""
        if price is None:
            content = await self.source.fetch(request.method, request.path, request.query_string, request.headers, body)
            return self._content_response(content)
        return await self._priced(request, price, body)

    async def _priced(self, request: web.Request, price: Price, body: bytes) -> web.StreamResponse:
        started = time.perf_counter()
        header = request.headers.get(SIGNATURE_HEADER)
        if header is None:
            if isinstance(self.source, StaticSource) and not self.source.exists(request.path):
                return self._content_response(await self.source.fetch("GET", request.path, "", {}, b""))
            if self.insights is not None:
                self.insights.offer(request.path, price.amount, price.tags, time.time())
            return self._required(request, price, 402, "payment_required", "this resource costs a payment")
        try:
            voucher = parse_payment_signature(header)
            self._check_terms(voucher)
        except ProtocolError as exc:
            return self._refuse(request, price, exc.status, exc.code, exc.detail, started)

        content = await self.source.fetch(request.method, request.path, request.query_string, request.headers, body)
        if not content.ok:  # nothing to sell: relay the failure, charge nothing
            return self._content_response(content)
        payment = PaymentRequest(
            channel_id=voucher.channel_id,
            amount=voucher.amount,
            signature=voucher.signature,
            resource=request.path,
            price=price.amount,
            once=price.once,
            payment_id=voucher.payment_id,
            config=voucher.config,
        )
        try:
            outcome = await self.runtime.pay(payment)
        except ChainUnavailable as exc:
            return self._refuse(request, price, 503, "chain_unavailable", str(exc), started)
        except StoreError as exc:
            self.log.error("store_failed", error=str(exc))
            return self._refuse(request, price, 503, "store_unavailable", "the node could not record the payment", started)

        channel = "0x" + voucher.channel_id.hex()
        if not outcome.accepted:
            code = outcome.effect.code
            state = outcome.state if code in CORRECTIVE else None
            return self._refuse(request, price, 402, code.value, outcome.effect.detail, started, state, channel)

        charged = outcome.effect.charged
        (self.metrics.paid_unlocks if charged else self.metrics.free_refetches).inc()
        if charged:
            self.metrics.revenue.inc(charged)
            if self.insights is not None:
                self.insights.unlock(request.path, charged, price.tags, voucher.channel_id, time.time())
        self.metrics.accepted_latency.observe(time.perf_counter() - started)
        self.log.info("payment", channel=channel, resource=request.path, charged=str(charged), outcome="accepted",
                      charged_total=str(outcome.state.charged))  # fmt: skip
        response = self._content_response(content)
        response.headers[RESPONSE_HEADER] = encode_header(
            payment_response(self.offer, outcome.state, charged, voucher.payment_id, voucher.amount)
        )
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response

    def _check_terms(self, voucher: Voucher) -> None:
        """A voucher for another network, contract, receiver or asset is refused before any work."""
        offer = self.offer
        if voucher.scheme != SCHEME:
            raise ProtocolError("unsupported_scheme", f"scheme must be {SCHEME!r}")
        if voucher.network != offer.network:
            raise ProtocolError("wrong_network", f"this node is on {offer.network}")
        if voucher.contract is not None and voucher.contract.lower() != offer.contract.lower():
            raise ProtocolError("wrong_contract", f"this node's contract is {offer.contract}")
        if voucher.pay_to is not None and voucher.pay_to != self.receiver:
            raise ProtocolError("wrong_receiver", f"this node is paid at {offer.pay_to}")
        if voucher.asset is not None and voucher.asset != self.token:
            raise ProtocolError("wrong_asset", f"this node is paid in {offer.asset}")
        if voucher.config is not None:
            if voucher.config.receiver != self.receiver:
                raise ProtocolError("wrong_receiver", f"the channel pays another receiver than {offer.pay_to}")
            if voucher.config.token != self.token:
                raise ProtocolError("wrong_asset", f"the channel holds another asset than {offer.asset}")

    # ------------------------------------------------------------------ responses

    def _required(self, request, price: Price, status: int, code: str, message: str, state=None) -> web.Response:
        document = payment_required(
            self.offer,
            url=str(request.url),
            price=price.amount,
            description=price.description,
            mime_type=self.source.mime_type(request.path),
            once=price.once,
            error=code,
            message=message,
            state=state,
        )
        if wants_html(request.headers.get("Accept")):  # a browser: the paywall page, same headers
            response = html_402(document, teaser_for(self.source, request.path, price.description), status)
        else:
            response = web.json_response(document, status=status)
        response.headers[REQUIRED_HEADER] = encode_header(document)
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response

    def _refuse(self, request, price, status, code, message, started, state=None, channel=None) -> web.Response:
        self.metrics.rejections.labels(code).inc()
        self.metrics.rejected_latency.observe(time.perf_counter() - started)
        self.log.info("payment", channel=channel, resource=request.path, charged="0", outcome=code)
        return self._required(request, price, status, code, message, state)

    @staticmethod
    def _content_response(content: Content) -> web.StreamResponse:
        if content.file is not None:
            return web.FileResponse(content.file, headers=content.headers)
        return web.Response(status=content.status, body=content.body, headers=content.headers)


def create_app(paywall: Paywall, health: Callable[[], Awaitable[dict]] | None = None) -> web.Application:
    """`health` returns the node's state; a non-empty `problems` list makes the status "degraded"
    (the paywall keeps serving: a monitor decides what to do)."""
    app = web.Application(client_max_size=16 * 1024 * 1024)

    async def healthz(request: web.Request) -> web.Response:
        report = await health() if health else {}
        report = {"status": "degraded" if report.get("problems") else "ok", **report}
        return web.json_response(report)

    async def metrics(request: web.Request) -> web.Response:
        paywall.metrics.channels.set(paywall.runtime.loaded_channels)
        return web.Response(body=paywall.metrics.render(), content_type="text/plain", charset="utf-8")

    async def close_source(app: web.Application) -> None:
        await paywall.source.close()

    app.router.add_post(COOPERATIVE_CLOSE_PATH, paywall.cooperative_close)
    add_browser_routes(app)  # /_channel/wallet.js, before the catch-all below
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_route("*", "/{tail:.*}", paywall.handle)
    app.on_cleanup.append(close_source)
    return app


def make_offer(
    chain_id: int, contract: str, receiver: bytes, token: bytes, min_deposit: int, delay_min: int, delay_max: int,
    receiver_authorizer: bytes | None = None,
) -> Offer:
    """`receiver_authorizer`: the claim key's address when it is not the receiver (None: the zero address)."""
    return Offer(
        receiver_authorizer=to_checksum_address(receiver_authorizer or b"\0" * 20),
        network=f"eip155:{chain_id}",
        asset=to_checksum_address(token),
        pay_to=to_checksum_address(receiver),
        contract=to_checksum_address(contract),
        min_deposit=min_deposit,
        close_delay_min=delay_min,
        close_delay_max=delay_max,
    )
