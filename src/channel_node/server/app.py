"""The paywall: an aiohttp application that answers priced paths with 402 until a voucher pays.

Flow of a priced request: the canonical resource (server/resource.py; a target that is not
canonical is a 400) -> its price -> parse `PAYMENT-SIGNATURE` -> check it is for this network,
contract, receiver and asset -> fetch the whole content (a missing file, a failing origin or a
partial answer costs nothing) -> `Runtime.pay` commits the voucher and charge -> send the content
with `PAYMENT-RESPONSE`. HEAD and OPTIONS are never charged (docs/protocol.md section 9).
Any refusal is a 4xx whose JSON names a stable `error` code; nothing here raises into a 500. A
`ChannelNodeError` that escapes a handler is answered by `error_answer` (docs/design.md, "Errors").
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

import orjson
import structlog
from aiohttp import web
from eth_utils.address import to_checksum_address

from channel_node.amounts import Asset
from channel_node.chain.ports import ChainUnavailable
from channel_node.core import Accepted, ChannelState, ConsentToClose, Reject, Rejected
from channel_node.core.spending import SaleKind, window
from channel_node.errors import ChannelNodeError, Refusal, RemoteError, StateError
from channel_node.logs import bound_aiohttp_logs
from channel_node.node.exact import ExactChecked, ExactPending, ExactRefusedSale, ExactSales, ExactSold
from channel_node.node.runtime import PaymentOutcome, PaymentRequest, Runtime, SpendingOutcome
from channel_node.server.browser import WALLET_JS_PATH, html_402, teaser_for, wallet_js_handler, wants_html
from channel_node.server.content import Content, ProxySource, StaticSource, not_found, withheld
from channel_node.server.metrics import Metrics
from channel_node.server.prices import Price, PriceTable, SpendingTable
from channel_node.server.protocol import (
    Offer,
    cap_standing,
    cap_terms,
    channel_summary,
    pass_terms,
    payment_required,
    payment_response,
)
from channel_node.server.resource import RefusedPath, Resource, canonical_resource
from channel_node.signing import address_of_key, cooperative_close_digest, sign_digest
from channel_node.store import StoreError
from channel_node.wire import exact as exact_wire
from channel_node.wire.channel import SCHEME, CapStanding, PassStanding, Voucher
from channel_node.wire.envelope import (
    REQUIRED_HEADER,
    RESPONSE_HEADER,
    SIGNATURE_HEADER,
    UNSUPPORTED_SCHEME,
    ProtocolError,
    encode_header,
)
from channel_node.wire.exact import ExactPayment, exact_receipt
from channel_node.wire.payment import parse_payment


def _paywall_logger() -> structlog.typing.FilteringBoundLogger:
    # Bound once per paywall (after logging is configured): a lazy module-level proxy would rebuild
    # the logger on every paid request.
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("channel_node.paywall").bind()
    return logger


#: A handler of one of the paywall's fixed paths.
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Refusals a client fixes by signing again: they carry the channel's state (a corrective 402).
CORRECTIVE = {Reject.INSUFFICIENT_VOUCHER, Reject.STALE_VOUCHER, Reject.EXCEEDS_DEPOSIT}
# Refusals of the request itself rather than its payment: a 400 (docs/protocol.md, "Caps and passes").
BAD_REQUEST = {Reject.UNKNOWN_PASS, Reject.PASS_NOT_COVERING}
EXPOSED_HEADERS = f"{REQUIRED_HEADER}, {RESPONSE_HEADER}"
COOPERATIVE_CLOSE_PATH = "/_channel/cooperative-close"
# A sold answer is the reader's own: never stored by a shared cache (a CDN in front of the node
# would otherwise hand it to readers who did not pay); offers are never stored at all.
SOLD_CACHE_CONTROL = "private, no-store"
# nginx's proxy cache takes X-Accel-Expires over Cache-Control, Akamai takes Edge-Control.
SHARED_CACHE_FIELDS = ("Cache-Control", "Expires", "Surrogate-Control", "CDN-Cache-Control", "Cloudflare-CDN-Cache-Control",
                       "X-Accel-Expires", "Edge-Control", "Fastly-Surrogate-Control")  # fmt: skip


def _hex_field(body: dict[str, Any], name: str, length: int | None) -> bytes:
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

    # `resource` is the canonical resource key (docs/protocol.md, "Canonical resource").
    def offer(self, resource: str, price: int, tags: dict[str, str], at: float) -> None: ...

    # `kind`: a `core/spending.py:SaleKind` value; `list_price`: what a capped or pass-covered read
    # would have cost; `cap`/`pass_name`: its cap group and the pass bought or covering it.
    def unlock(
        self, resource: str, price: int, tags: dict[str, str], channel_id: bytes, at: float, *,
        kind: str = "article", list_price: int | None = None, cap: str | None = None, pass_name: str | None = None,
    ) -> None: ...


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
    public_url: str | None = None  # "https://news.example": the base of a 402's resource.url
    asset: Asset | None = None  # the channels' asset as people read it (the page's price); None: from the offer
    # x402 `exact` sales, the node as its own facilitator (None: only `channel` is offered).
    exact: ExactSales | None = None
    # Caps and passes of the `channel` scheme (docs/protocol.md, "Caps and passes").
    spending: SpendingTable = field(default_factory=SpendingTable)
    # canonical path -> (methods, handler), set by create_app
    routes: dict[str, tuple[tuple[str, ...], Handler]] = field(default_factory=dict)

    async def cooperative_close(self, request: web.Request) -> web.Response:
        """A payer asks for the receiver's signature to close its channel now at `amount`
        (exactly the charged total); it then sends closeCooperative itself and gets the rest back."""
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
            document: dict[str, Any] = {"error": effect.code.value, "message": effect.detail}
            if state is not None:
                document["channel"] = channel_summary(state)
            return web.json_response(document, status=status)
        assert isinstance(effect, ConsentToClose), effect  # the core answers a close request with a consent or a refusal
        signature = sign_digest(self.consent_key, cooperative_close_digest(self.runtime.domain, channel, effect.amount))
        self.log.info("cooperative_close_consent", channel="0x" + channel.hex(), amount=str(effect.amount))
        return web.json_response({
            "channelId": "0x" + channel.hex(), "amount": str(effect.amount), "receiverSignature": "0x" + signature.hex(),
            "contract": self.offer.contract, "network": self.offer.network,
        })  # fmt: skip

    # ------------------------------------------------------------------ handlers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every request of the paywall's listener, and its one error edge (docs/design.md,
        "Errors"): a `ChannelNodeError` that escapes the handlers below is answered by
        `error_answer`, never a traceback or aiohttp's text 500."""
        try:
            return await self._route(request)
        except ChannelNodeError as exc:
            status, code, message = error_answer(exc)
            if status >= 500:  # the type only: the text may name what the requester must not see
                self.log.error("request_failed", status=status, error=code, exception=type(exc).__name__)
            else:
                self.log.info("request_refused", status=status, error=code, method=request.method[:16])
            return _error(status, code, message)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        """The canonical resource is computed here, once, and passed down; nothing below reads
        `request.path` (docs/protocol.md, "Canonical resource")."""
        resource = canonical_resource(request.raw_path)
        if isinstance(resource, RefusedPath):
            self.log.info("request_refused", status=400, error=resource.code, method=request.method[:16])
            return _error(400, resource.code, resource.detail)
        fixed = self.routes.get(resource.path)
        if fixed is not None:
            methods, handler = fixed
            if request.method not in methods:
                return _method_not_allowed(methods)
            return await handler(request)
        served = self.source.served_path(resource.path)
        price = self.prices.price_of(resource.path, served, folders_known=isinstance(self.source, StaticSource))
        if price is None:
            return await self._free(request, resource)
        methods = self._priced_methods(price)
        if request.method not in methods:
            return _method_not_allowed(methods)
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={"Allow": ", ".join(methods)})
        if request.method == "HEAD":  # the offer's headers, never a charge (docs/protocol.md section 9)
            if isinstance(self.source, StaticSource) and not self.source.exists(resource.path):
                return self._content_response(not_found())
            return self._required(resource, request, price, 402, "payment_required", "this resource costs a payment")
        body = await request.read() if request.method != "GET" else b""
        return await self._priced(request, resource, price, body)

    def _names(self, resource: Resource) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Every name the price table priced the read by, and the PATH_INFO scripts it runs, for
        the caps and passes to match (`PriceTable.names_of`, `PriceTable.scripts_of`)."""
        if not self.spending:
            return (), ()
        served = self.source.served_path(resource.path)
        static = isinstance(self.source, StaticSource)
        return self.prices.names_of(resource.path, served, static), self.prices.scripts_of(resource.path, static)

    def _priced_methods(self, price: Price) -> tuple[str, ...]:
        """GET is sold; HEAD and OPTIONS are answered and never charged; in reverse-proxy mode a
        per-request price (`once = false`, an API) also sells POST, PUT, PATCH and DELETE."""
        if isinstance(self.source, ProxySource) and not price.once:
            return ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
        return ("GET", "HEAD", "OPTIONS")

    async def _free(self, request: web.Request, resource: Resource) -> web.StreamResponse:
        if isinstance(self.source, StaticSource):
            if request.method == "OPTIONS":
                return web.Response(status=204, headers={"Allow": "GET, HEAD, OPTIONS"})
            if request.method not in ("GET", "HEAD"):
                return _method_not_allowed(("GET", "HEAD", "OPTIONS"))
            return self._content_response(await self.source.fetch(request.method, resource))
        if request.method in ("TRACE", "CONNECT"):
            return _method_not_allowed(("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"))
        body = await request.read() if request.method not in ("GET", "HEAD") else b""
        content = await self.source.fetch(request.method, resource, request.headers, body, client=request.remote)
        return self._content_response(content)

    async def _priced(self, request: web.Request, resource: Resource, price: Price, body: bytes) -> web.StreamResponse:
        started = time.perf_counter()
        key = self._key(resource)
        header = request.headers.get(SIGNATURE_HEADER)
        if header is None:
            if isinstance(self.source, StaticSource) and not self.source.exists(resource.path):
                return self._content_response(not_found())
            if self.insights is not None:
                self.insights.offer(key, price.amount, price.tags, time.time())
            return self._required(resource, request, price, 402, "payment_required", "this resource costs a payment")
        takes_exact = self.exact is not None and self.exact.taken(price.exact)
        schemes = (SCHEME, exact_wire.SCHEME) if takes_exact else (SCHEME,)
        try:
            voucher = parse_payment(header, schemes)
            if isinstance(voucher, ExactPayment):
                return await self._exact_sale(request, resource, price, body, key, voucher, started)
            if not isinstance(voucher, Voucher):  # pragma: no cover (parse_payment answers one of the two)
                raise ProtocolError(UNSUPPORTED_SCHEME, f"scheme must be {SCHEME!r}")
            self._check_terms(voucher)
        except ProtocolError as exc:
            return self._refuse(resource, request, price, exc.status, exc.code, exc.detail, started)

        names, scripts = self._names(resource)
        covering = self.spending.passes_of(names, price, scripts)
        buying = None
        if voucher.pass_name is not None:
            buying = self.spending.named(voucher.pass_name)
            if buying is None:
                return self._refuse(resource, request, price, 400, Reject.UNKNOWN_PASS.value,
                                    f"this node sells no pass named {voucher.pass_name!r}", started)  # fmt: skip
            if buying not in covering:
                return self._refuse(resource, request, price, 400, Reject.PASS_NOT_COVERING.value,
                                    f"the pass {buying.name!r} does not cover this resource", started)  # fmt: skip
        payment = PaymentRequest(
            channel_id=voucher.channel_id,
            amount=voucher.amount,
            signature=voucher.signature,
            resource=self._call(key, request.method, body),
            price=price.amount,
            once=price.once,
            payment_id=voucher.payment_id,
            config=voucher.config,
            cap=self.spending.cap_of(names, price, scripts),
            passes=covering,
            buying=buying,
        )
        if isinstance(self.source, ProxySource):
            # An origin does work (and may change state) for every request it gets: one whose voucher
            # cannot pay never reaches it (docs/security.md, "Nothing reaches the origin unpaid").
            refused = await self._pay_or_refuse(payment, resource, request, price, voucher, started, check=True)
            if isinstance(refused, web.Response):
                return refused
        # The whole answer first: what cannot be delivered is never charged (docs/security.md).
        content = await self.source.fetch(request.method, resource, request.headers, body, priced=True, client=request.remote)
        if not content.sellable(request.method):
            return self._unsold(content)  # nothing to sell: relay the failure, charge nothing
        outcome = await self._pay_or_refuse(payment, resource, request, price, voucher, started)
        if isinstance(outcome, web.Response):
            if content.opened is not None:
                content.opened.close()
            return outcome

        effect, state, standing = outcome.effect, outcome.state, outcome.spending
        assert isinstance(effect, Accepted) and state is not None  # _pay_or_refuse answers refusals itself
        channel = "0x" + voucher.channel_id.hex()
        charged = effect.charged
        (self.metrics.paid_unlocks if charged else self.metrics.free_refetches).inc()
        if charged:
            self.metrics.revenue.inc(charged)
        sale = effect.sale
        if self.insights is not None and effect.record and (charged or sale is not None):
            if sale is None or sale.kind == SaleKind.ARTICLE:
                self.insights.unlock(key, charged, price.tags, voucher.channel_id, time.time())
            else:
                self.insights.unlock(key, charged, price.tags, voucher.channel_id, time.time(), kind=sale.kind.value,
                                     list_price=sale.list_price, cap=sale.cap_group, pass_name=sale.pass_name)  # fmt: skip
        self.metrics.accepted_latency.observe(time.perf_counter() - started)
        self.log.info("payment", channel=channel, resource=key, charged=str(charged), outcome="accepted",
                      charged_total=str(state.charged), sale=sale.kind.value if sale is not None else None)  # fmt: skip
        cap, held = _standing_fields(standing)
        if cap is None and held is None:
            receipt = payment_response(self.offer, state, charged, voucher.payment_id, voucher.amount)
        else:
            receipt = payment_response(self.offer, state, charged, voucher.payment_id, voucher.amount, cap=cap, held=held)
        extra = {
            RESPONSE_HEADER: encode_header(receipt),
            "Access-Control-Expose-Headers": EXPOSED_HEADERS,
            "Cache-Control": SOLD_CACHE_CONTROL,
        }
        return await self._sold(request, content, extra)

    def _offers_exact(self, price: Price) -> bool:
        return self.exact is not None and self.exact.offered(price.amount, price.exact)

    async def _exact_sale(
        self, request: web.Request, resource: Resource, price: Price, body: bytes, key: str, payment: ExactPayment,
        started: float,
    ) -> web.StreamResponse:
        """An `exact` payment (docs/protocol.md, "The `exact` scheme (node)"): the rules, then the
        whole content, then the record and the wait for the transfer; the content leaves only once
        the transfer is confirmed and the sale marked answered. It buys this one request: no unlock
        is recorded, a re-read pays again."""
        sales = self.exact
        assert sales is not None, "parse_payment takes exact only when the node offers it"
        call = self._call(key, request.method, body)
        try:
            checked = await sales.check(payment, call, price.amount)
        except ChainUnavailable as exc:
            return self._refuse(resource, request, price, 503, "chain_unavailable", str(exc), started)
        except StoreError as exc:
            self.log.error("store_failed", error=str(exc))
            return self._refuse(resource, request, price, 503, "store_unavailable", "the node could not read the sale", started)
        if isinstance(checked, ExactRefusedSale):
            return self._exact_refused(resource, request, price, checked, started, payment)
        assert isinstance(checked, ExactChecked)
        content = await self.source.fetch(request.method, resource, request.headers, body, priced=True, client=request.remote)
        if not content.sellable(request.method):
            return self._unsold(content)  # nothing to sell: nothing recorded, the nonce stays the payer's
        try:
            outcome = await sales.settle(checked)
        except StoreError as exc:
            if content.opened is not None:
                content.opened.close()
            self.log.error("store_failed", error=str(exc))
            return self._refuse(resource, request, price, 503, "store_unavailable", "the node could not record the payment", started)
        if not isinstance(outcome, ExactSold):
            if content.opened is not None:
                content.opened.close()
            if isinstance(outcome, ExactPending):
                pending = ExactRefusedSale("settlement_pending", "the transfer is not confirmed yet; send the same payment again")
                return self._exact_refused(resource, request, price, pending, started, payment)
            return self._exact_refused(resource, request, price, outcome, started, payment)
        record = outcome.record
        self.metrics.exact_sales.inc()
        self.metrics.revenue.inc(record.value)
        self.metrics.accepted_latency.observe(time.perf_counter() - started)
        if self.insights is not None:
            # A payer of `exact` counts once however many requests it buys: its address, as 32 bytes.
            self.insights.unlock(key, record.value, price.tags, b"\0" * 12 + record.payer, time.time())
        self.log.info("payment", scheme="exact", payer=to_checksum_address(record.payer), resource=key,
                      charged=str(record.value), outcome="accepted",
                      tx="0x" + record.tx_hash.hex() if record.tx_hash else None)  # fmt: skip
        receipt = exact_receipt(True, record.tx_hash, self.offer.network, record.payer, record.value)
        extra = {
            RESPONSE_HEADER: encode_header(receipt),
            "Access-Control-Expose-Headers": EXPOSED_HEADERS,
            "Cache-Control": SOLD_CACHE_CONTROL,
        }
        return await self._sold(request, content, extra)

    def _exact_refused(
        self, resource: Resource, request: web.Request, price: Price, refused: ExactRefusedSale, started: float,
        payment: ExactPayment,
    ) -> web.Response:
        if refused.code != "settlement_pending":
            self.metrics.exact_failures.labels(refused.code).inc()
        response = self._refuse(resource, request, price, refused.status, refused.code, refused.detail, started)
        receipt = exact_receipt(False, None, self.offer.network, payment.payer, payment.authorization.value, refused.code)
        response.headers[RESPONSE_HEADER] = encode_header(receipt)
        if refused.retry_after is not None:
            response.headers["Retry-After"] = str(refused.retry_after)
        return response

    async def _pay_or_refuse(
        self, payment: PaymentRequest, resource: Resource, request: web.Request, price: Price, voucher: Voucher,
        started: float, check: bool = False,
    ) -> PaymentOutcome | web.Response:
        """`Runtime.pay` (or, with `check`, what it would decide, committing nothing): the accepted
        outcome (its effect, the channel after it, its caps-and-passes standing), or the refusal
        to answer with."""
        try:
            outcome = await (self.runtime.check(payment) if check else self.runtime.pay(payment))
        except ChainUnavailable as exc:
            return self._refuse(resource, request, price, 503, "chain_unavailable", str(exc), started)
        except StoreError as exc:
            self.log.error("store_failed", error=str(exc))
            return self._refuse(resource, request, price, 503, "store_unavailable", "the node could not record the payment", started)
        effect = outcome.effect
        if isinstance(effect, Rejected):
            code = effect.code
            corrective = code in CORRECTIVE
            state = outcome.state if corrective else None
            channel = "0x" + voucher.channel_id.hex()
            status = 400 if code in BAD_REQUEST else 402
            return self._refuse(resource, request, price, status, code.value, effect.detail, started, state, channel,
                                outcome.spending if corrective else None)  # fmt: skip
        assert outcome.state is not None, "an accepted payment knows its channel"
        return outcome

    @staticmethod
    def _call(key: str, method: str, body: bytes) -> str:
        """What a payment (and its payment id) pays for: a GET, the resource; a priced API call of
        another method, that resource with the method and a digest of the body, so a retry under the
        same payment id is free only for that very call, never another one (docs/security.md,
        "A payment id retries one call")."""
        if method == "GET":
            return key
        return f"{key} {method} sha256:{hashlib.sha256(body).hexdigest()}"

    def _key(self, resource: Resource) -> str:
        """What a purchase is recorded under (the `once` unlock, insights, logs): the file a static
        source serves, or the path and query an upstream answers."""
        if self.source.uses_query:
            return resource.key(with_query=True)
        return self.source.served_path(resource.path)

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

    def _url(self, resource: Resource) -> str:
        """The 402's `resource.url`: `public_url` and the canonical target; without `public_url`,
        the path-only target. Never the request's Host (docs/protocol.md section 1)."""
        return (self.public_url or "") + resource.target

    def _required(
        self, resource: Resource, request: web.Request, price: Price, status: int, code: str, message: str,
        state: ChannelState | None = None, standing: SpendingOutcome | None = None,
    ) -> web.Response:
        """The offer. With a cap or passes on the resource, their terms; with `standing` (a voucher
        the node could check), the channel's progress and what the read costs it now."""
        served = self.source.served_path(resource.path)
        names, scripts = self._names(resource)
        cap = self.spending.cap_of(names, price, scripts) if self.spending else None
        passes = self.spending.passes_of(names, price, scripts) if self.spending else ()
        amount, charge = price.amount, None
        cap_offer = None
        if standing is not None and standing.sale is not None:
            # What the read costs this channel now; x402 amounts are positive (wallets refuse 0), so
            # a read a cap or a pass makes free keeps the list price as `amount`, and `extra.charge`
            # says 0 (docs/protocol.md, "Caps and passes").
            charge = standing.sale.charge
            amount = charge or price.amount
        if cap is not None:
            ends_at = window(cap.period, int(self.runtime.clock()), self.runtime.zone).ends_at
            progress = standing.progress if standing is not None else None
            cap_offer = cap_terms(cap, ends_at, progress)
        document = payment_required(
            self.offer,
            url=self._url(resource),
            price=amount,
            description=price.description,
            mime_type=self.source.mime_type(served),
            once=price.once,
            error=code,
            message=message,
            state=state,
            exact=self.exact.accepts(price.amount) if self.exact is not None and self._offers_exact(price) else None,
            cap=cap_offer,
            passes=pass_terms(passes),
            charge=charge,
        )
        if wants_html(request.headers.get("Accept")):  # a browser: the paywall page, same headers
            response = html_402(document, teaser_for(self.source, served, price.description), status, self.asset)
        else:
            response = web.json_response(document, status=status)
        response.headers[REQUIRED_HEADER] = encode_header(document)
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.headers["Cache-Control"] = "no-store"
        return response

    def _refuse(
        self, resource: Resource, request: web.Request, price: Price, status: int, code: str, message: str,
        started: float, state: ChannelState | None = None, channel: str | None = None,
        standing: SpendingOutcome | None = None,
    ) -> web.Response:
        self.metrics.rejections.labels(code).inc()
        self.metrics.rejected_latency.observe(time.perf_counter() - started)
        self.log.info("payment", channel=channel, resource=self._key(resource), charged="0", outcome=code)
        return self._required(resource, request, price, status, code, message, state, standing)

    def _unsold(self, content: Content) -> web.StreamResponse:
        """Content that cannot be sold, relayed without a charge: an error page may hold the
        content, so an origin's answer or a file's body is withheld."""
        if content.opened is not None:
            content.opened.close()
        if content.from_origin or content.ok:
            content = withheld(content)
        return self._content_response(content)

    async def _sold(self, request: web.Request, content: Content, extra: dict[str, str]) -> web.StreamResponse:
        """The paid answer of either scheme, with its receipt headers in `extra`."""
        for name in SHARED_CACHE_FIELDS:  # a shared cache must not keep a sold answer for others
            content.headers.popall(name, None)
        if content.opened is not None:
            return await self._stream_opened(request, content, content.opened, extra)
        response = self._content_response(content)
        response.headers.update(extra)
        return response

    @staticmethod
    def _content_response(content: Content) -> web.StreamResponse:
        if content.file is not None:
            return web.FileResponse(content.file, headers=content.headers)
        return web.Response(status=content.status, body=content.body, headers=content.headers)

    @staticmethod
    async def _stream_opened(request: web.Request, content: Content, opened: BinaryIO, extra: dict[str, str]) -> web.StreamResponse:
        """A priced large file, opened before the charge: the whole file as one 200 (no Range, no
        304: docs/security.md, "Partial and conditional answers")."""
        response = web.StreamResponse(status=200, headers={**content.headers, **extra})
        response.content_length = content.length
        try:
            await response.prepare(request)
            if request.method != "HEAD":
                while chunk := await asyncio.to_thread(opened.read, 256 * 1024):
                    await response.write(chunk)
            await response.write_eof()
        finally:
            opened.close()
        return response


def _standing_fields(standing: SpendingOutcome | None) -> tuple[CapStanding | None, PassStanding | None]:
    """The receipt's `cap` and `pass` from a request's caps-and-passes standing."""
    if standing is None:
        return None, None
    cap = cap_standing(standing.progress) if standing.progress is not None else None
    sale = standing.sale
    held: PassStanding | None = None
    if sale is not None and sale.pass_name is not None and standing.pass_until is not None:
        held = {"name": sale.pass_name, "until": standing.pass_until}
    return cap, held


#: The 5xx answer of each category that is not a `Refusal`: (status, code, message). The message is
#: generic on purpose: an exception's own text may name paths, hosts or figures the requester has no
#: business seeing (docs/design.md, "Errors"). The first category that applies decides.
SERVER_ERRORS: tuple[tuple[type[ChannelNodeError], int, str, str], ...] = (
    (RemoteError, 503, "upstream_unavailable", "a service the node depends on did not answer; retry later"),
    (StateError, 503, "store_unavailable", "the node's database could not be used; retry later"),
    (ChannelNodeError, 500, "internal_error", "the node failed to answer; see its log"),
)


def error_answer(exc: ChannelNodeError) -> tuple[int, str, str]:
    """(status, code, message) for a `ChannelNodeError` that escaped a handler. A `Refusal` answers
    its own status (a 4xx unless it names another error status), code and message, which are
    written for the requester; any other error its category's generic 5xx, never its own text."""
    if isinstance(exc, Refusal):
        status = exc.status if 400 <= exc.status <= 599 else 400
        return status, exc.code, str(exc)[:300]
    for category, status, code, message in SERVER_ERRORS:
        if isinstance(exc, category):
            return status, code, message
    raise AssertionError("unreachable: SERVER_ERRORS ends with the root")  # pragma: no cover


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def _method_not_allowed(methods: tuple[str, ...]) -> web.Response:
    allow = ", ".join(methods)
    return _error(405, "method_not_allowed", f"this resource answers {allow}", {"Allow": allow})


def create_app(paywall: Paywall, health: Callable[[], Awaitable[dict[str, Any]]] | None = None) -> web.Application:
    """`health` returns the node's state; a non-empty `problems` list makes the status "degraded"
    (the paywall keeps serving: a monitor decides what to do)."""
    bound_aiohttp_logs()  # a malformed request is one bounded log line, never a traceback
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

    # One route: the paywall computes the canonical resource and dispatches these on it, so no
    # spelling of a path can reach another handler than the one its canonical form names (the
    # wallet script is served here as add_browser_routes serves it elsewhere).
    paywall.routes = {
        COOPERATIVE_CLOSE_PATH: (("POST",), paywall.cooperative_close),
        WALLET_JS_PATH: (("GET", "HEAD"), wallet_js_handler()),
        "/healthz": (("GET", "HEAD"), healthz),
        "/metrics": (("GET", "HEAD"), metrics),
    }
    app.router.add_route("*", r"/{tail:[\s\S]*}", paywall.handle)  # any path, newlines too: refused by handle
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
