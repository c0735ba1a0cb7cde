"""The paywall for people in a browser: an HTML 402 page (teaser, price, unlock button) and the
browser wallet script it loads from `/_channel/wallet.js`.

The machine-readable protocol is unchanged: the HTML page is only the body of the same 402, which
still carries `PAYMENT-REQUIRED`; the offer is also embedded in the page as JSON for the script.
The script (built from web/ by scripts/build_wallet_js.py) opens, tops up and closes a channel with
the reader's EIP-1193 wallet and signs each voucher in the page with a key of its own. When the offer
also lists x402's `exact` scheme, the page has a second button: the reader's wallet signs one EIP-3009
transfer of exactly the price for this page (docs/browser.md, "The exact unlock").
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from channel_node.amounts import ETH, Asset, format_display
from channel_node.amounts import format_amount as _format_amount

WALLET_JS_PATH = "/_channel/wallet.js"
ZERO_ADDRESS = "0x" + "00" * 20
TEASER_CHARS = 160  # a taste, not the article: short pages are often one paragraph long
TEASER_FRACTION = (1, 4)  # and never more than this share of the page's text, title included
# The JSON document of `PAYMENT-REQUIRED` (server/protocol.py builds it): read here, never built.
OfferDocument = Mapping[str, Any]


def wants_html(accept: str | None) -> bool:
    """A browser navigation (Accept: text/html, ...); `*/*` alone (curl, fetch) keeps JSON."""
    return accept is not None and "text/html" in accept.lower()


def format_amount(amount: int, asset: str, known: Asset | None = None) -> str:
    """The price as people read it (docs/amounts.md): `known` is the node's asset (its token's
    symbol and decimals, and its display form when the operator set one: `$0.02`, `2¢`) when it is
    the offer's; else exact ETH for the native asset, and for a token its base units with the
    token's address."""
    if known is not None and (known.address or ZERO_ADDRESS).lower() == asset.lower():
        return format_display(amount, known)
    if asset.lower() != ZERO_ADDRESS:
        return f"{amount} base units of token {asset}"
    return _format_amount(amount, ETH)


def _json_for_script(document: OfferDocument) -> str:
    # Inside <script type="application/json">: nothing may close the element or open a comment.
    return json.dumps(document, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_STYLE = """
body{font:17px/1.5 system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;color:#222}
#channel-paywall .channel-teaser{color:#444}
#channel-paywall .channel-terminal{font-size:15px;color:#444}
#channel-paywall .channel-box{border:1px solid #ccd;border-radius:8px;padding:1rem 1.25rem;background:#f7f8fc}
#channel-paywall button,#channel-wallet button{font:inherit;padding:.45rem 1rem;border-radius:6px;border:1px solid #335;
background:#335;color:#fff;cursor:pointer}
#channel-paywall button:disabled,#channel-wallet button:disabled{opacity:.5;cursor:wait}
#channel-paywall .channel-cap{font-size:15px;color:#335;background:#e8ebf7;padding:.35rem .7rem;border-radius:6px}
#channel-paywall #channel-pass-row button{background:#fff;color:#335}
#channel-wallet{margin-top:2rem;border-top:1px solid #ccd;font-size:15px}
#channel-wallet h2{font-size:1rem}
#channel-wallet button{background:#fff;color:#335}
[data-kind=error]{color:#a00}
""".strip()


class Teaser(str):
    """A teaser as one string, "Headline. First words ...", which is what it compares and logs as,
    that also keeps its parts apart: the page shows the headline as its title and heading, and the
    words under it, never run together."""

    headline: str
    words: str

    def __new__(cls, headline: str, words: str) -> Teaser:
        teaser = super().__new__(cls, ". ".join(part for part in (headline, words) if part))
        teaser.headline, teaser.words = headline, words
        return teaser


def _terminal_alternative(resource: Mapping[str, Any]) -> str:
    """Paying from a terminal, shown on every page (a reader without a browser wallet sees it)."""
    url = str(resource.get("url") or "")
    target = html.escape(url) if url.startswith(("http://", "https://")) else "<var>this page's address</var>"
    return (
        '<p id="channel-terminal" class="channel-terminal">No browser wallet? Pay from a terminal with the '
        f"reader's wallet: <code>channel-node wallet get {target}</code> (after <code>channel-node wallet new</code> "
        "and funding its address).</p>"
    )


def _exact_entry(offer_document: OfferDocument) -> Mapping[str, Any] | None:
    for entry in offer_document.get("accepts") or ():
        if isinstance(entry, Mapping) and entry.get("scheme") == "exact":
            return entry
    return None


def exact_unlock_html(offer_document: OfferDocument, asset: Asset | None = None) -> str:
    """The one-signature `exact` button, or "" when the offer does not list the scheme; `asset`
    names the price's unit as for the channel button."""
    entry = _exact_entry(offer_document)
    if entry is None:
        return ""
    price = html.escape(format_amount(int(entry["amount"]), entry.get("asset") or ZERO_ADDRESS, asset))
    return f"""<div id="channel-exact-row">
<p>Or pay for this page alone: your wallet signs one transfer of exactly {price} to the site, which
sends it (x402 <code>exact</code>: no deposit, no transaction from you).</p>
<p><button id="channel-exact-unlock" type="button">Unlock with one signature for {price}</button></p>
</div>"""


_PASS_NAME = re.compile(r"[a-z0-9-]{1,32}")
_PERIOD_WORDS = {"day": "today", "week": "this week", "month": "this month"}


def _duration_words(seconds: int) -> str:
    """A pass's duration as its button names it: `1-day`, `12-hour`, `2-week`."""
    for unit, name in ((604800, "week"), (86400, "day"), (3600, "hour")):
        if seconds % unit == 0:
            return f"{seconds // unit}-{name}"
    return f"{seconds}-second"


def _passes(extra: Mapping[str, Any]) -> list[tuple[str, int, int, str]]:
    """The offer's passes covering this page (docs/protocol.md, "Caps and passes") as (name, price,
    duration, description); entries that are not well formed are left out."""
    out = []
    for entry in extra.get("passes") or ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not _PASS_NAME.fullmatch(entry["name"]):
            continue
        price, duration = entry.get("price"), entry.get("duration")
        if not (isinstance(price, str) and price.isdigit() and isinstance(duration, int) and duration > 0):
            continue
        out.append((entry["name"], int(price), duration, str(entry.get("description") or "")))
    return out


def spending_html(offer_document: OfferDocument, asset: Asset | None = None) -> tuple[str, str, str]:
    """The pass offer beside the price (", or $0.30 for a 1-day pass (All of today's news)"), one
    button per pass, and the cap line ("Never more than $2.00 this month on news", or with the
    channel's figures when the offer states them: "$1.40 of $2.00 this month, resets ..."); the
    script brings the cap line up to date from its receipts (docs/browser.md, "Caps and passes").
    Each is "" when the offer has no pass or no cap."""
    accept = offer_document["accepts"][0]
    extra = accept.get("extra") or {}
    unit = accept.get("asset") or ZERO_ADDRESS
    esc = html.escape
    offer, buttons = "", []
    for n, (name, price, duration, description) in enumerate(_passes(extra)):
        shown = esc(format_amount(price, unit, asset))
        if n == 0:
            about = f" ({esc(description)})" if description else ""
            offer = (f', or <strong id="channel-pass-price" data-pass="{name}">{shown}</strong> for a '
                     f"{_duration_words(duration)} pass{about}")  # fmt: skip
        buttons.append(f'<button id="channel-pass-{name}" data-pass="{name}" type="button">'
                       f"Buy the {_duration_words(duration)} pass for {shown}</button>")  # fmt: skip
    cap_line = ""
    cap = extra.get("cap")
    if isinstance(cap, Mapping) and isinstance(cap.get("cap"), str) and cap["cap"].isdigit():
        limit = esc(format_amount(int(cap["cap"]), unit, asset))
        period = _PERIOD_WORDS.get(str(cap.get("period")), f"in any {str(cap.get('period', ''))[:-1]} days")
        name = esc(str(cap.get("name") or ""))
        paid = cap.get("paid")
        if isinstance(paid, str) and paid.isdigit():
            text = f"{esc(format_amount(int(paid), unit, asset))} of {limit} {period}"
        else:
            text = f"Never more than {limit} {period} on {name}"
        cap_line = f'<p id="channel-cap" class="channel-cap" data-cap="{esc(cap["cap"])}">{text}</p>'
    row = f'<p id="channel-pass-row">{" ".join(buttons)}</p>' if buttons else ""
    return offer, row, cap_line


def _deposit_input(offer_asset: str, known: Asset | None) -> str:
    """The deposit field and its unit: ETH, or the node's token (its symbol and decimals as hints;
    the script reads the token's own decimals and symbol from the chain, docs/browser.md)."""
    if offer_asset.lower() == ZERO_ADDRESS:
        return '<input id="channel-deposit" inputmode="decimal" size="10"> <span id="channel-deposit-unit">ETH</span>'
    if known is not None and (known.address or ZERO_ADDRESS).lower() == offer_asset.lower():
        symbol = html.escape(known.symbol)
        return (f'<input id="channel-deposit" inputmode="decimal" size="10" data-decimals="{known.decimals}" '
                f'data-symbol="{symbol}"> <span id="channel-deposit-unit">{symbol}</span>')  # fmt: skip
    return '<input id="channel-deposit" inputmode="decimal" size="10"> <span id="channel-deposit-unit">base units</span>'


def paywall_page(offer_document: OfferDocument, teaser: str, asset: Asset | None = None) -> str:
    """The HTML body of a 402 for a browser: `offer_document` is the JSON the node sends in
    `PAYMENT-REQUIRED` (a corrective refusal's message is shown too); `teaser` is plain text, a
    `Teaser` when the headline is known (the page's title is then the headline); `asset` names the
    price's unit (the node's token), else it is read from the offer."""
    accept = offer_document["accepts"][0]
    resource = offer_document.get("resource") or {}
    description = resource.get("description") or "this page"
    headline = teaser.headline if isinstance(teaser, Teaser) else ""
    words = teaser.words if isinstance(teaser, Teaser) else teaser
    price = format_amount(int(accept["amount"]), accept.get("asset") or ZERO_ADDRESS, asset)
    error = offer_document.get("error")
    notice = ""
    if error and error != "payment_required":
        notice = f'<p class="channel-notice" data-kind="error">{html.escape(error)}: {html.escape(offer_document.get("message") or "")}</p>'
    esc = html.escape
    pass_offer, pass_buttons, cap_line = spending_html(offer_document, asset)
    lead, for_what = (": ", " for this article") if pass_offer else (" for ", "")
    teaser_html = (f'<h1 class="channel-headline">{esc(headline)}</h1>\n' if headline else "") + (
        f'<p class="channel-teaser">{esc(words)}</p>' if words else "")  # fmt: skip
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(headline or description)}</title>
<style>{_STYLE}</style>
</head>
<body>
<main id="channel-paywall">
{teaser_html}
<div class="channel-box">
<p>Read the whole of {esc(description)}{lead}<strong id="channel-price">{esc(price)}</strong>{for_what}{pass_offer}, paid from
a deposit you lock once for this site; what you do not spend comes back when you close.</p>
{cap_line}
{notice}
<p id="channel-deposit-row"><label>Deposit {_deposit_input(accept.get("asset") or ZERO_ADDRESS, asset)}</label></p>
<p><button id="channel-unlock" type="button">Unlock for {esc(price)}</button></p>
{pass_buttons}
{exact_unlock_html(offer_document, asset)}
<p id="channel-status" role="status"></p>
{_terminal_alternative(resource)}
<noscript><p>Paying here needs JavaScript and an Ethereum wallet (EIP-1193, such as MetaMask), or the
<code>channel-node wallet</code> command line.</p></noscript>
</div>
</main>
<script type="application/json" id="channel-offer">{_json_for_script(offer_document)}</script>
<script src="{WALLET_JS_PATH}"></script>
</body>
</html>
"""


# Text a page repeats around every article (menus, banners, footers) or never shows: it is not the
# article, so it neither counts towards the teaser's budget nor gives the first paragraph.
_BOILERPLATE = frozenset({"nav", "header", "footer", "aside", "noscript", "template", "form", "menu", "dialog"})


class _Teaser(HTMLParser):
    """The title, the first paragraph's text, and the text of an HTML document outside its
    boilerplate (docs/security.md, "The teaser")."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.paragraph = ""
        self.text: list[str] = []
        self._in: str | None = None
        self._done = False
        self._hidden = 0  # inside <script> or <style>: not text
        self._aside: list[str] = []  # open boilerplate or hidden elements (an unclosed one hides the rest)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        elif tag in _BOILERPLATE or any(name in ("hidden", "aria-hidden") for name, _ in attrs):
            self._aside.append(tag)
        elif self._aside:
            return
        elif tag in ("title", "h1") and not self.title:
            self._in = "title"
        elif tag == "p" and not self.paragraph and not self._done:
            self._in = "p"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden = max(0, self._hidden - 1)
        if self._aside:
            if tag == self._aside[-1]:
                self._aside.pop()
            return
        if tag == "p" and self._in == "p":
            self._done = True
        if tag in ("title", "h1", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._hidden or self._aside:
            return
        self.text.append(data)
        if self._in == "title":
            self.title += data
        elif self._in == "p":
            self.paragraph += data


def teaser_from_html(document: str, limit: int = TEASER_CHARS) -> Teaser:
    """"Title. First words of the first paragraph ..." as plain text, never the content itself: at
    most half of the first paragraph, at most `limit` characters of it, and, title included, at
    most TEASER_FRACTION of the document's text outside menus, headers, footers and hidden
    elements, which a short article's page may hold far more of than the article
    (docs/security.md, "The teaser"). A page too short to
    spare anything gets an empty teaser (the caller shows the price's description instead)."""
    parser = _Teaser()
    parser.feed(document)
    parser.close()
    total = len(" ".join(" ".join(parser.text).split()))
    budget = total * TEASER_FRACTION[0] // TEASER_FRACTION[1]
    title = " ".join(parser.title.split()).rstrip(".")
    if len(title) > budget:
        title = ""
    budget -= len(title)
    words = " ".join(parser.paragraph.split())
    cap = min(limit, budget, len(words) // 2)  # and never more than half of the paragraph itself
    if len(words) > cap:
        cut = words[: cap + 1]
        words = cut.rsplit(" ", 1)[0] + " ..." if " " in cut else ""
    return Teaser(title, words)


@lru_cache(maxsize=1024)
def _file_teaser(path: Path, mtime_ns: int, size: int) -> str:
    return teaser_from_html(path.read_bytes()[: 64 * 1024].decode("utf-8", "replace"))


def teaser_for(source: object, path: str, fallback: str = "") -> str:
    """The teaser of a priced file of a StaticSource (cached per file version); `fallback` (the
    price's description) for other sources, non-HTML files, or files that cannot be read."""
    locate: Callable[[str], Path | None] | None = getattr(source, "locate", None)  # StaticSource.locate
    file = locate(path) if locate is not None else None
    if file is None or file.suffix.lower() not in (".html", ".htm"):
        return fallback
    try:
        stat = file.stat()
        return _file_teaser(file, stat.st_mtime_ns, stat.st_size) or fallback
    except OSError:
        return fallback


def html_402(offer_document: OfferDocument, teaser: str, status: int = 402, asset: Asset | None = None) -> web.Response:
    """The 402 response for a browser; the caller adds `PAYMENT-REQUIRED` as for JSON."""
    return web.Response(
        text=paywall_page(offer_document, teaser, asset),
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store", "Vary": "Accept"},
    )


@lru_cache(maxsize=1)
def wallet_js() -> bytes:
    """The committed bundle from package data."""
    return resources.files("channel_node.server").joinpath("static/wallet.js").read_bytes()


def wallet_js_handler() -> Handler:
    """The handler of `GET /_channel/wallet.js` (ETag, 304 on a match)."""
    body = wallet_js()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    async def serve_wallet_js(request: web.Request) -> web.Response:
        headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if etag in re.split(r"\s*,\s*", request.headers.get("If-None-Match", "")):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type="application/javascript", charset="utf-8", headers=headers)

    return serve_wallet_js


def add_browser_routes(app: web.Application) -> None:
    """`GET /_channel/wallet.js`. Add before the paywall's catch-all route (aiohttp matches routes
    in the order they were added). The paywall itself dispatches it on the canonical path."""
    app.router.add_get(WALLET_JS_PATH, wallet_js_handler())


def browser_instructions(base_url: str, rpc_url: str, chain_id: int, reader_key: bytes, article: str) -> list[str]:
    """What `channel-node dev` prints for a browser wallet on the dev chain."""
    return [
        "",
        "Browser: open an article and unlock it with a browser wallet (MetaMask or any EIP-1193 wallet):",
        f"  {base_url}{article}",
        f"  add the network: RPC URL {rpc_url}, chain id {chain_id} (0x{chain_id:x}), currency ETH;",
        f"  import the dev reader's key (public, dev only): 0x{reader_key.hex()}",
        "  The page opens a channel with the deposit you choose (one wallet confirmation), then signs each",
        "  article's voucher itself; the panel under the article shows what is left and closes the channel.",
    ]


__all__ = [
    "WALLET_JS_PATH",
    "Teaser",
    "add_browser_routes",
    "browser_instructions",
    "exact_unlock_html",
    "format_amount",
    "html_402",
    "paywall_page",
    "spending_html",
    "teaser_for",
    "teaser_from_html",
    "wants_html",
    "wallet_js",
    "wallet_js_handler",
]
