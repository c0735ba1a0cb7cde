"""aiohttp integration: requests that pay for themselves.

A priced resource costs up to three round trips: the request (402 with the offer), the request with a
voucher, and after a corrective 402 (the wallet's figures were behind the node's) one more with a
voucher signed from the resynced figures. Receipts are checked by the wallet before the response is
handed back, so a server that overcharges raises `ServerMisbehaved` instead of returning content.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from channel_node.client.exact import EXACT, choose_scheme, exact_entry, exact_payer, scheme_options
from channel_node.client.wallet import OfferRejected, ServerMisbehaved, Wallet
from channel_node.wire.channel import SCHEME
from channel_node.wire.envelope import REQUIRED_HEADER, RESPONSE_HEADER, SIGNATURE_HEADER, decode_header

#: aiohttp >= 3.12 takes client middlewares (`ClientSession(middlewares=...)`).
MIDDLEWARE_SUPPORTED = tuple(int(p) for p in aiohttp.__version__.split(".")[:2] if p.isdigit()) >= (3, 12)

RESYNC_CODES = ("insufficient_voucher", "stale_voucher")
CLOSED_CODES = ("channel_closing", "channel_settled")

Send = Callable[[str | None], Awaitable[aiohttp.ClientResponse]]


@dataclass(frozen=True)
class Result:
    """A finished request, body read. `charged` is what it cost (0 when free or already bought)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    charged: int
    receipt: dict[str, Any] | None
    url: str

    @property
    def ok(self) -> bool:
        return self.status < 400

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding)

    def json(self) -> Any:
        return json.loads(self.body)


def _document(response: aiohttp.ClientResponse, header: str) -> dict[str, Any] | None:
    value = response.headers.get(header)
    if value is None:
        return None
    try:
        document = decode_header(value)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return None  # unreadable, or JSON nested past the parser's depth
    return document if isinstance(document, dict) else None


def channel_offer(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The first `accepts` entry of a PAYMENT-REQUIRED document in the `channel` scheme."""
    if not isinstance(document, Mapping):
        return None
    accepts = document.get("accepts")
    if not isinstance(accepts, list):
        return None  # any other JSON value is no list of offers (a string or a number is never iterated)
    for offer in accepts:
        if isinstance(offer, dict) and offer.get("scheme") == SCHEME:
            return offer
    return None


def _framed(response: aiohttp.ClientResponse) -> bool:
    """The body's end can be checked: a Content-Length (aiohttp refuses a shorter body) or chunked
    framing (a missing last chunk is an error). A body delimited by the connection closing cannot be
    told from one cut short, so a charge for it is never counted as received (docs/security.md)."""
    coding = response.headers.get("Transfer-Encoding", "").lower()
    return response.headers.get("Content-Length") is not None or "chunked" in coding


def _channel_state(offer: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A corrective 402's `extra.channel` object; None whatever else the offer holds there."""
    extra = offer.get("extra") if isinstance(offer, Mapping) else None
    state = extra.get("channel") if isinstance(extra, Mapping) else None
    return state if isinstance(state, dict) else None


TERMS = ("scheme", "network", "asset", "payTo")
REDIRECTS = (301, 302, 303, 307, 308)


def _same_terms(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two offers for the same receiver, asset, network and contract (the price may differ)."""
    if any(a.get(k) != b.get(k) for k in TERMS):
        return False
    contract_a = (a.get("extra") or {}).get("contract") if isinstance(a.get("extra"), Mapping) else None
    contract_b = (b.get("extra") or {}).get("contract") if isinstance(b.get("extra"), Mapping) else None
    return contract_a == contract_b


def _check_resource(document: Mapping[str, Any], url: str) -> None:
    """A 402 may only ask payment for the URL requested: its `resource.url` names the same host and
    path (scheme and port may differ behind a TLS proxy). A node without `public_url` names the path
    alone (docs/protocol.md section 10), which is read against the URL requested."""
    resource = document.get("resource")
    if resource is None:
        return
    named = resource.get("url") if isinstance(resource, Mapping) else None
    try:
        if not isinstance(named, str):
            raise TypeError("resource.url is not a string")
        there, here = URL(named), URL(url)
        if not there.is_absolute() and str(there).startswith("/"):
            there = here.join(there)
        same = there.is_absolute() and (there.host or "").lower() == (here.host or "").lower() and there.path == here.path
    except (TypeError, ValueError):
        same = False
    if not same:
        raise OfferRejected(f"the 402 for {url} asks payment for another resource ({str(named)[:200]!r})")


async def _pay_exact(
    wallet: Wallet, url: str, send: Send, document: Mapping[str, Any], *, confirm: bool
) -> tuple[aiohttp.ClientResponse, int, dict[str, Any] | None]:
    """Pays the 402 `document` with an `exact` authorization (client/exact.py): recorded as spent
    before it is sent, sent once (a site that answers it with another 402 gets nothing more)."""
    payer = exact_payer(wallet)
    entry = exact_entry(document)
    assert entry is not None  # the choice rule picked `exact` because there is one
    header = await payer.pay(entry, document, url)
    response = await send(header.value)  # lost on the way: stays `signed`, reconcile() decides
    receipt = _document(response, RESPONSE_HEADER)
    if receipt is not None and 200 <= response.status < 300:
        charged = payer.settle(header, receipt)  # counted whatever happens to the body: the transfer is made
        try:
            await response.read()
        except BaseException:
            response.release()
            raise
        if confirm and charged:
            await payer.confirm(header)
        return response, charged, receipt
    if 400 <= response.status < 500:
        payer.refused(header)
    return response, 0, None


async def pay_and_fetch(
    wallet: Wallet, url: str, send: Send, *, retries: int = 3, retry_delay: float = 1.0, offers: dict[str, dict[str, Any]] | None = None,
    scheme: str | None = None, confirm_exact: bool = False, pass_name: str | None = None,
) -> tuple[aiohttp.ClientResponse, int, dict[str, Any] | None]:
    """Runs one request through the 402 protocol. `send(header)` sends the request with that
    PAYMENT-SIGNATURE (None: without one) and returns the response without following redirects;
    intermediate responses are released here. Returns (final response, amount charged, receipt).
    A paid response's body is read here (it stays readable): a charge counts as received only once
    the whole body arrived.

    `offers` remembers the offer last seen for each URL: a repeat request pays up front and saves
    the 402 round trip (half the requests). A changed price is noticed from the node's refusal; a
    price that changes between a fresh 402 and its retry is refused.

    A 402 offering `exact` too is paid in the scheme `choose_scheme` picks (`scheme` forces one,
    else Policy.scheme); `confirm_exact` checks an `exact` settlement's transfer on chain.
    `pass_name` buys that pass with this request (`Wallet.pay_for`; docs/protocol.md "Caps and passes")."""
    offer = offers.get(url) if offers is not None and pass_name is None else None
    from_cache = offer is not None
    if offer is None:
        response = await send(None)
        if response.status != 402:
            return response, 0, None
        document = _document(response, REQUIRED_HEADER)
        offer = channel_offer(document)
        options = scheme_options(wallet, document, url, offer, scheme)
        choice = choose_scheme(options) if document is not None else None
        if choice == EXACT and document is not None and pass_name is None:
            response.release()
            _check_resource(document, url)
            return await _pay_exact(wallet, url, send, document, confirm=confirm_exact)
        if options.forced is not None and choice is None and document is not None:
            response.release()
            raise OfferRejected(f"{url} offers no `{options.forced}` entry this wallet can pay (the scheme was forced)")
        if offer is None or document is None:
            return response, 0, None  # not a scheme this wallet speaks: the caller sees the 402
        response.release()
        _check_resource(document, url)
        if offers is not None:
            if len(offers) >= MAX_REMEMBERED_OFFERS:
                offers.pop(next(iter(offers)))
            offers[url] = offer
    payment = await wallet.pay_for(offer, url, pass_name=pass_name)
    reopened = repriced = False
    resynced = waits = 0
    try:
        while True:
            try:
                response = await send(payment.value)
            except BaseException:
                wallet.release(payment, charged_unknown=True)  # the node may have charged before we lost it
                raise
            receipt = _document(response, RESPONSE_HEADER)
            if receipt is not None and 200 <= response.status < 300:
                complete, error = True, None
                try:
                    await response.read()  # cached: the caller reads it again for free
                except (TimeoutError, aiohttp.ClientError) as exc:
                    complete, error = False, exc  # a body cut short (Content-Length mismatch), a timeout
                except BaseException:
                    response.release()
                    wallet.release(payment, charged_unknown=True)
                    raise
                if complete and not _framed(response):
                    complete = False  # its end is the connection's: a body cut short would look whole
                try:
                    charged = await wallet.settle_receipt(
                        payment.channel_id, receipt, payment.price, payment.payment_id, complete=complete
                    )
                except BaseException:
                    response.release()
                    raise
                if error is not None:
                    response.release()
                    raise error  # charged nothing (a re-read): the transport error stands
                return response, charged, receipt
            if RESPONSE_HEADER in response.headers and response.status < 400:
                response.release()
                wallet.release(payment, charged_unknown=True)
                raise ServerMisbehaved(f"{url}: unreadable {RESPONSE_HEADER} header")
            refusal = _document(response, REQUIRED_HEADER) if response.status == 402 else None
            code = refusal.get("error") if refusal else None
            current = channel_offer(refusal) if refusal else None
            if refusal is not None and current is not None:
                try:
                    _check_resource(refusal, url)
                except OfferRejected:
                    response.release()
                    wallet.release(payment)
                    raise
            if current is not None and not _same_terms(current, offer):
                response.release()
                wallet.release(payment)
                raise OfferRejected(f"{url}: the server changed its payment terms (receiver, asset, network or contract)")
            if current is not None and current.get("amount") != offer.get("amount") and not _capped_below(current, offer):
                response.release()
                wallet.release(payment)
                if not from_cache or repriced:
                    raise OfferRejected(f"{url}: the price changed from {offer.get('amount')} to {current.get('amount')} "
                                        "between the offer and the payment; not paying")  # fmt: skip
                # The remembered offer is out of date (the price changed): pay the one the node asks now.
                repriced = True
                offer = current
                if offers is not None:
                    offers[url] = offer
                payment = await wallet.pay_for(offer, url, pass_name=pass_name)
                continue
            state = _channel_state(current)
            if code in RESYNC_CODES and state is not None and resynced < MAX_RESYNCS:
                # The node's charged total is ahead of the voucher (concurrent requests, lost receipts, a
                # restored database): retry with charged + price, if what the node claims adds up.
                response.release()
                resynced += 1
                try:
                    payment = await wallet.retry_after(payment, state)
                except BaseException:
                    wallet.release(payment)
                    raise
                continue
            if code == "exceeds_deposit" and waits < retries:
                # The node has not seen our top-up yet (confirmations, its refresh interval): same voucher, later.
                response.release()
                waits += 1
                await asyncio.sleep(retry_delay)
                continue
            if code == "channel_unknown" and waits < retries:
                # Not confirmed yet, or the node forgot it: resend with the channel's configuration.
                response.release()
                waits += 1
                payment = wallet.with_config(payment)
                await asyncio.sleep(retry_delay)
                continue
            if code in CLOSED_CODES and not reopened:
                reopened = True
                if await wallet.confirm_unusable(payment.channel_id, code):  # the chain agrees: a new channel
                    response.release()
                    wallet.release(payment)
                    payment = await wallet.pay_for(offer, url, pass_name=pass_name)
                    continue
            # A 4xx refusal changes nothing on the node: the voucher stays as credit for the next
            # request. A success without a receipt, a redirect or a server error may have been charged.
            wallet.release(payment, charged_unknown=response.status < 400 or response.status >= 500)
            return response, 0, None
    except BaseException:
        # Whatever else ends the request (a malformed answer, a cancellation while waiting to resend,
        # a bug), the voucher in flight is settled, never left reserved: a reserved price is signed
        # again by every later request of the process (docs/security.md, "The wallet's exposure
        # bound"). The node may have charged it, so its outcome is unknown. A no-op when settled.
        wallet.release(payment, charged_unknown=True)
        raise


def _capped_below(current: dict[str, Any], offer: dict[str, Any]) -> bool:
    """A corrective 402 under a cap names the effective price, below the list price the wallet
    signed for (docs/protocol.md, "Caps and passes"): not a price change, the voucher covers it."""
    extra = current.get("extra")
    amount, listed = current.get("amount"), offer.get("amount")
    return (isinstance(extra, dict) and isinstance(extra.get("cap"), dict) and isinstance(amount, str) and isinstance(listed, str)
            and amount.isdigit() and listed.isdigit() and len(amount) <= 78 and int(amount) < int(listed))  # fmt: skip


MAX_RESYNCS = 3
MAX_REMEMBERED_OFFERS = 4096


class PayingSession:
    """An aiohttp.ClientSession whose requests pay 402s through `wallet`.

    ```python
    async with PayingSession(wallet) as session:
        result = await session.get("https://news.example/articles/a.html")
        print(result.status, result.charged, result.text())
    ```
    Request bodies are sent again on retries, so pass bytes, str or json= rather than a stream.
    """

    def __init__(self, wallet: Wallet, *, retries: int = 3, retry_delay: float = 1.0, scheme: str | None = None,
                 confirm_exact: bool = False, **session_kwargs: Any) -> None:  # fmt: skip
        if scheme not in (None, "channel", EXACT):
            raise ValueError(f"scheme must be 'channel', 'exact' or None, not {scheme!r}")
        self.wallet = wallet
        self.scheme = scheme  # forces a scheme for this session's requests; None: Policy.scheme, else the choice rule
        self.confirm_exact = confirm_exact
        self.retries = retries
        self.retry_delay = retry_delay
        self._kwargs = session_kwargs
        base = session_kwargs.get("base_url")
        self._base = URL(base) if base is not None else None
        self._session: aiohttp.ClientSession | None = None
        self._offers: dict[str, dict[str, Any]] = {}  # URL -> last offer, to pay repeat requests up front

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use PayingSession as `async with PayingSession(...) as session`")
        return self._session

    async def __aenter__(self) -> PayingSession:
        self._session = aiohttp.ClientSession(**self._kwargs)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _absolute(self, url: str | URL) -> str:
        target = URL(url)
        if not target.is_absolute() and self._base is not None:
            target = self._base.join(target)
        return str(target)

    async def request(self, method: str, url: str | URL, **kwargs: Any) -> Result:
        """One request, paid if it asks. Redirects are followed here, never by aiohttp: each hop is a
        new request without any PAYMENT-SIGNATURE (a voucher only goes to the URL whose 402 asked for
        it), and a redirect answering a voucher (with or without a receipt) is returned, not followed."""
        session = self.session
        pass_name = kwargs.pop("pass_name", None)  # buys that pass with this request (Wallet.pay_for)
        headers = CIMultiDict(kwargs.pop("headers", None) or {})
        follow = kwargs.pop("allow_redirects", True)
        hops = kwargs.pop("max_redirects", 10)
        target = self._absolute(url)
        secure = URL(target).scheme == "https"
        for _ in range(hops + 1):
            last: list[str | None] = [None]  # the PAYMENT-SIGNATURE of the request that got the final answer

            async def send(
                header: str | None, target: str = target, method: str = method, last: list[str | None] = last
            ) -> aiohttp.ClientResponse:
                sent = CIMultiDict(headers)
                sent.popall(SIGNATURE_HEADER, None)
                if header is not None:
                    sent[SIGNATURE_HEADER] = header
                last[0] = header
                return await session.request(method, target, headers=sent, allow_redirects=False, **kwargs)

            if secure and URL(target).scheme != "https":
                # Redirected from https to clear text: nothing is paid there (a voucher in clear text
                # can be taken on the way and spent first); the 402, if any, is the caller's.
                response, charged, receipt = await send(None), 0, None
            else:
                response, charged, receipt = await pay_and_fetch(
                    self.wallet, target, send, retries=self.retries, retry_delay=self.retry_delay, offers=self._offers,
                    scheme=self.scheme, confirm_exact=self.confirm_exact, pass_name=pass_name,
                )
            location = response.headers.get("Location")
            # A redirect answering a voucher is returned, never followed: the request was paid for
            # (its outcome is unknown), and the page it points to must not make it pay a second time,
            # there or on another site (docs/security.md, "Where vouchers go").
            if not (follow and response.status in REDIRECTS and location and receipt is None and last[0] is None):
                break
            response.release()
            try:
                following = URL(target).join(URL(location))
            except ValueError:
                raise aiohttp.InvalidUrlRedirectClientError(location, "the redirect's Location is not a URL") from None
            if following.origin() != URL(target).origin():
                # As aiohttp does: the caller's credentials are not sent on to another origin.
                headers.popall("Authorization", None)
                kwargs.pop("auth", None)
            target = str(following)
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method = "GET"
                for name in ("data", "json"):
                    kwargs.pop(name, None)
        else:
            response.release()
            raise aiohttp.TooManyRedirects(response.request_info, response.history)
        try:
            body = await response.read()
        finally:
            response.release()
        return Result(response.status, response.headers, body, charged, receipt, str(response.url))

    async def get(self, url: str | URL, **kwargs: Any) -> Result:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str | URL, **kwargs: Any) -> Result:
        return await self.request("POST", url, **kwargs)


Handler = Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]
Middleware = Callable[[aiohttp.ClientRequest, Handler], Awaitable[aiohttp.ClientResponse]]


def payment_middleware(wallet: Wallet, *, retries: int = 3, retry_delay: float = 1.0) -> Middleware:
    """An aiohttp client middleware (aiohttp >= 3.12) doing what PayingSession does, for callers
    that keep their own ClientSession: `aiohttp.ClientSession(middlewares=(payment_middleware(w),))`.
    The response is returned unread; its PAYMENT-RESPONSE header has been checked."""
    if not MIDDLEWARE_SUPPORTED:
        raise RuntimeError(f"aiohttp {aiohttp.__version__} has no client middlewares (3.12+); use PayingSession")

    # aiohttp follows redirects itself, calling the middleware again for each hop: a hop that follows
    # a redirect answering a voucher (in the same task) is sent without paying, whatever it answers,
    # so one request never pays twice (docs/security.md, "Where vouchers go").
    unpaid_hops: weakref.WeakKeyDictionary[asyncio.Task[Any], URL] = weakref.WeakKeyDictionary()

    async def middleware(request: aiohttp.ClientRequest, handler: Handler) -> aiohttp.ClientResponse:
        task = asyncio.current_task()
        last: list[str | None] = [None]

        async def send(header: str | None) -> aiohttp.ClientResponse:
            request.headers.popall(SIGNATURE_HEADER, None)
            if header is not None:
                request.headers[SIGNATURE_HEADER] = header
            last[0] = header
            return await handler(request)

        followed = task is not None and unpaid_hops.pop(task, None) == request.url.with_fragment(None)
        if followed:
            response = await send(None)
        else:
            response, _, _ = await pay_and_fetch(wallet, str(request.url), send, retries=retries, retry_delay=retry_delay)
        location = response.headers.get("Location")
        if task is not None and response.status in REDIRECTS and location and (followed or last[0] is not None):
            try:
                unpaid_hops[task] = request.url.join(URL(location)).with_fragment(None)
            except ValueError:
                pass
        return response

    return middleware


__all__ = [
    "MIDDLEWARE_SUPPORTED",
    "PayingSession",
    "Result",
    "channel_offer",
    "pay_and_fetch",
    "payment_middleware",
]

