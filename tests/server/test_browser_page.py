"""The browser paywall's server side: the HTML 402 page, its teaser, and the wallet script route
(no browser needed; tests/e2e/test_browser.py drives the whole flow in Chromium)."""

from __future__ import annotations

import json
import re

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.amounts import Asset
from channel_node.server.browser import (
    WALLET_JS_PATH,
    add_browser_routes,
    browser_instructions,
    format_amount,
    html_402,
    paywall_page,
    teaser_for,
    teaser_from_html,
    wallet_js,
    wants_html,
)
from channel_node.server.content import StaticSource
from channel_node.server.protocol import Offer, payment_required

OFFER = Offer(
    network="eip155:31337",
    asset="0x0000000000000000000000000000000000000000",
    pay_to="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    min_deposit=0,
    close_delay_min=900,
    close_delay_max=2592000,
)


def document(**overrides) -> dict:
    arguments = dict(
        url="http://127.0.0.1:8402/articles/a.html", price=20_000_000_000_000, description="an <article>",
        mime_type="text/html", once=True, error="payment_required", message="this resource costs a payment",
    )  # fmt: skip
    arguments.update(overrides)
    return payment_required(OFFER, **arguments)


def embedded_offer(page: str) -> dict:
    raw = re.search(r'<script type="application/json" id="channel-offer">(.*?)</script>', page, re.S).group(1)
    return json.loads(raw)


def test_page_shows_price_teaser_button_and_loads_the_wallet():
    offer = document()
    page = paywall_page(offer, "Title. The first words <b>bold</b> ...")
    assert 'id="channel-price">0.00002 ETH<' in page
    assert 'id="channel-unlock"' in page and f'<script src="{WALLET_JS_PATH}"></script>' in page
    assert "The first words &lt;b&gt;bold&lt;/b&gt; ..." in page  # the teaser is text, never markup
    assert "an &lt;article&gt;" in page
    assert embedded_offer(page) == offer


def test_embedded_offer_cannot_close_its_script_element():
    offer = document(url="http://x/</script><script>alert(1)</script>", description="</script><!--")
    page = paywall_page(offer, "")
    assert page.count("</script>") == 2  # the offer's own and the wallet's
    assert embedded_offer(page) == offer


def test_corrective_refusal_is_shown():
    page = paywall_page(document(error="exceeds_deposit", message="top up"), "")
    assert "exceeds_deposit: top up" in page


def test_amounts_are_exact():
    zero = "0x" + "00" * 20
    assert format_amount(20_000_000_000_000, zero) == "0.00002 ETH"
    assert format_amount(10**18, zero) == "1 ETH"
    assert format_amount(10**18 + 1, zero) == "1.000000000000000001 ETH"
    assert format_amount(7, "0x" + "11" * 20) == f"7 base units of token 0x{'11' * 20}"
    # The node's token (its symbol and decimals read from the contract): whole tokens.
    dusd = Asset("DUSD", 6, "0x" + "11" * 20)
    assert format_amount(20_000, "0x" + "11" * 20, dusd) == "0.02 DUSD"
    assert format_amount(20_000, zero, dusd) == "0.00000000000002 ETH"  # another asset than the node's: not named DUSD


def test_the_page_shows_the_price_in_the_nodes_token():
    dusd = Asset("DUSD", 6, "0x" + "11" * 20)
    offer = document()
    offer["accepts"][0].update(amount="20000", asset="0x" + "11" * 20)
    page = paywall_page(offer, "", dusd)
    assert '<strong id="channel-price">0.02 DUSD</strong>' in page and "Unlock for 0.02 DUSD" in page


def test_html_only_for_browsers():
    assert wants_html("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
    assert not wants_html("*/*") and not wants_html(None) and not wants_html("application/json")


def test_teaser_is_title_and_the_start_of_the_first_paragraph(tmp_path):
    words = " ".join(f"word{n}" for n in range(100))
    html = f"<html><head><title>A title</title></head><body><h1>A title</h1><p>{words}</p><p>second</p></body></html>"
    teaser = teaser_from_html(html)
    assert teaser.startswith("A title. word0 word1") and teaser.endswith(" ...") and len(teaser) < 200
    assert "second" not in teaser
    (tmp_path / "a.html").write_text(html)
    (tmp_path / "data.json").write_text("{}")
    source = StaticSource(tmp_path)
    assert teaser_for(source, "/a.html", "fallback") == teaser
    assert teaser_for(source, "/data.json", "fallback") == "fallback"
    assert teaser_for(source, "/missing.html", "fallback") == "fallback"
    assert teaser_for(object(), "/a.html", "fallback") == "fallback"


async def test_wallet_script_route_and_html_402():
    app = web.Application()
    add_browser_routes(app)

    async def priced(request):
        return html_402(document(), "teaser")

    app.router.add_route("*", "/{tail:.*}", priced)
    async with TestClient(TestServer(app)) as client:
        response = await client.get(WALLET_JS_PATH)
        assert response.status == 200 and response.content_type == "application/javascript"
        body = await response.read()
        assert body == wallet_js() and b"var ChannelWallet" in body
        again = await client.get(WALLET_JS_PATH, headers={"If-None-Match": response.headers["ETag"]})
        assert again.status == 304
        page = await client.get("/articles/a.html")
        assert page.status == 402 and page.content_type == "text/html"
        assert page.headers["Vary"] == "Accept" and "channel-unlock" in await page.text()


def test_dev_instructions_name_the_rpc_and_chain():
    lines = browser_instructions("http://127.0.0.1:8402", "http://127.0.0.1:8545", 31337, b"\x01" * 32, "/articles/a.html")
    text = "\n".join(lines)
    assert "http://127.0.0.1:8402/articles/a.html" in text and "RPC URL http://127.0.0.1:8545" in text
    assert "chain id 31337 (0x7a69)" in text and "0x" + "01" * 32 in text


_words = st.lists(st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=9), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(headline=_words.map(" ".join), paragraph=st.lists(_words.map(" ".join), min_size=1, max_size=3).map(" ".join))
def test_the_page_title_is_the_headline_and_the_teaser_keeps_it_apart(headline, paragraph):
    """Issue 15: the page's <title> is the article's headline (not the price's description), the
    headline is its own heading above the teaser's words, never run into them; and the terminal
    alternative is on the page, visible, not only inside <noscript>."""
    article = f"<html><head><title>{headline}</title></head><body><h1>{headline}</h1><p>{paragraph}</p></body></html>"
    teaser = teaser_from_html(article)
    page = paywall_page(document(), teaser)
    title = re.search(r"<title>(.*?)</title>", page).group(1)
    if teaser.headline:
        assert title == headline and f'<h1 class="channel-headline">{headline}</h1>' in page
        assert "(payment required)" not in title
    else:
        assert title == "an &lt;article&gt;"  # no headline to spare: the price's description
    teaser_paragraph = re.search(r'<p class="channel-teaser">(.*?)</p>', page)
    if teaser.words:
        assert teaser_paragraph.group(1) == teaser.words and not teaser_paragraph.group(1).startswith(headline + ".")
    visible = re.sub(r"<noscript>.*?</noscript>", "", page, flags=re.S)
    assert 'id="channel-terminal"' in visible and "<code>channel-node wallet get http://127.0.0.1:8402/articles/a.html</code>" in visible


def test_without_a_headline_the_page_names_the_resource_and_a_relative_url_is_described():
    page = paywall_page(document(url="/articles/a.html"), "plain fallback")
    assert "<title>an &lt;article&gt;</title>" in page and '<p class="channel-teaser">plain fallback</p>' in page
    assert "channel-headline" not in page and "<var>this page's address</var>" in page
