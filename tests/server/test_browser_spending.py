"""The paywall page's cap line and pass offer (server/browser.py `spending_html`, docs/browser.md
"Caps and passes"): the pass beside the article price with one button each, the cap's limit (and the
channel's figures when the offer states them), nothing when the offer has neither, and text from
the offer escaped, never markup."""

from __future__ import annotations

import html

from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.amounts import Asset, Display
from channel_node.server.browser import paywall_page, spending_html

TOKEN = "0x" + "11" * 20
DOLLAR = Asset("DUSD", 6, TOKEN, Display("$", None, 2))


def offer(**extra) -> dict:
    return {
        "x402Version": 2, "error": "payment_required", "resource": {"url": "http://news.example/sport/1.html", "description": "a story"},
        "accepts": [{"scheme": "channel", "network": "eip155:31337", "amount": "20000", "asset": TOKEN, "payTo": "0x" + "22" * 20,
                     "extra": {"contract": "0x" + "33" * 20, "receiverAuthorizer": "0x" + "00" * 20, "once": True, **extra}}],
    }  # fmt: skip


PASS = {"name": "sport-day", "price": "300000", "duration": 86400, "description": "All of today's sport"}
CAP = {"name": "sport", "cap": "1000000", "period": "month", "periodEndsAt": 1_800_000_000}


def test_the_pass_is_offered_beside_the_article_price_with_a_button_each():
    page = paywall_page(offer(passes=[PASS, {**PASS, "name": "sport-week", "price": "1500000", "duration": 604800}]), "", DOLLAR)
    assert ('<strong id="channel-price">$0.02</strong> for this article, or <strong id="channel-pass-price" '
            'data-pass="sport-day">$0.30</strong> for a 1-day pass (All of today&#x27;s sport)') in page  # fmt: skip
    assert '<button id="channel-unlock" type="button">Unlock for $0.02</button>' in page
    assert '<button id="channel-pass-sport-day" data-pass="sport-day" type="button">Buy the 1-day pass for $0.30</button>' in page
    assert '<button id="channel-pass-sport-week" data-pass="sport-week" type="button">Buy the 1-week pass for $1.50</button>' in page


def test_the_cap_line_names_the_limit_and_the_channels_figures_when_stated():
    assert '<p id="channel-cap" class="channel-cap" data-cap="1000000">Never more than $1.00 this month on sport</p>' in paywall_page(
        offer(cap=CAP), "", DOLLAR
    )
    _, _, line = spending_html(offer(cap={**CAP, "paid": "400000", "resetsAt": 1_800_000_000}), DOLLAR)
    assert ">$0.40 of $1.00 this month<" in line
    _, _, rolling = spending_html(offer(cap={**CAP, "period": "7d"}), DOLLAR)
    assert "Never more than $1.00 in any 7 days on sport" in rolling


def test_an_offer_without_caps_or_passes_gets_the_page_it_always_had():
    assert spending_html(offer(), DOLLAR) == ("", "", "")
    page = paywall_page(offer(), "", DOLLAR)
    assert "Read the whole of a story for <strong" in page and "data-pass" not in page and "id=\"channel-cap\"" not in page


@settings(max_examples=50, deadline=None)
@given(
    name=st.text(min_size=1, max_size=40),
    description=st.text(max_size=60),
    price=st.one_of(st.integers(0, 10**9).map(str), st.text(max_size=8), st.integers(), st.none()),
    duration=st.one_of(st.integers(-5, 10**6), st.text(max_size=4), st.none()),
)
def test_whatever_the_offer_says_the_page_gets_no_markup_from_it(name, description, price, duration):
    """Names go into ids and attributes, descriptions and amounts into text: a name outside
    [a-z0-9-], an amount that is not base-unit digits or a duration that is not a positive integer
    leaves the pass out, and every description is escaped."""
    entry = {"name": name, "price": price, "duration": duration, "description": description}
    offer_text, buttons, _ = spending_html(offer(passes=[entry]), DOLLAR)
    well_formed = (
        all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in name) and len(name) <= 32
        and isinstance(price, str) and price.isdigit() and isinstance(duration, int) and duration > 0
        and not isinstance(duration, bool)
    )  # fmt: skip
    assert bool(buttons) is well_formed
    if well_formed:
        assert f'data-pass="{name}"' in buttons and html.escape(description) in offer_text
    for fragment in (offer_text, buttons):
        assert "<script" not in fragment.lower()
        if description:
            assert description not in fragment or html.escape(description) == description
