"""Stablecoin channels in a real browser (Chromium, tests/browser_helpers.py) against
`channel-node dev --token` (the site priced in DemoDollar, an EIP-2612 and EIP-3009 token):

- the reader opens a DUSD channel with one permit deposit (the wallet signs the Permit as typed data
  and sends one transaction), unlocks two articles, re-reads one for free and tops up the same way;
- with a wallet that refuses typed data, the page approves exactly the deposit and deposits it (two
  transactions each time), and leaves no allowance behind;
- issue 16's done-when: on a site with caps and a day pass (tests/browser_dev.py's test knobs), the
  reader buys up to the news cap and reads on free, buys the sport day pass with one click and reads
  sport free under it, and once the clocks are moved a day on, pays for sport again.

Screenshots: tests/artifacts/browser/2*.png (token channels) and 3*.png (caps and passes), described
in docs/browser.md ("Token channels", "Caps and passes").
"""

from __future__ import annotations

import json
import shutil

from browser_helpers import (
    ARTICLES,
    ARTIFACTS,
    CHROMIUM,
    DevWallet,
    browser_page,
    dev_token_node,
    move_clock,
    need,
    shot,
    start_dev,
)

__all__ = ["dev_token_node"]  # a fixture, found by name in this module

UNIT = 10**6  # DemoDollar has 6 decimals


def _asked(wallet: DevWallet) -> list[str]:
    """What the reader would see a wallet prompt for (reads such as eth_call are not)."""
    return [c for c in wallet.calls if c in ("eth_requestAccounts", "eth_sendTransaction", "eth_signTypedData_v4")]


def _stored(page) -> dict:
    return page.evaluate("""() => JSON.parse(localStorage.getItem(Object.keys(localStorage)
        .find(k => k.startsWith("channel-node:v1:") && !k.includes(":exact:") && k.split(":").length <= 7)))""")


def test_token_channel_by_permit_and_by_exact_approve_in_chromium(dev_token_node):
    need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import expect
    except ImportError:
        need(False, "the playwright Python package is missing (pip install -e '.[dev]')")
    from web3 import HTTPProvider, Web3

    from channel_node.chain.artifacts import channel_deposit_artifact, demo_dollar_artifact
    from channel_node.dev.devchain import DevChain
    from channel_node.dev.stack import TOKEN_ARTICLE_PRICE

    base, rpc_url, token = dev_token_node
    assert token is not None and TOKEN_ARTICLE_PRICE == 20_000
    reader = DevChain().accounts[2]  # the dev chain's well-known keys: the same in every run
    w3 = Web3(HTTPProvider(rpc_url))
    dollar = w3.eth.contract(address=token, abi=demo_dollar_artifact().abi)
    reader_before = dollar.functions.balanceOf(reader.address).call()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    titles = ["Why micropayments finally work", "Payment channels in five minutes"]
    channels = []

    # 1. By permit: one typed-data signature and one transaction per deposit.
    wallet = DevWallet(rpc_url, reader.private_key)
    with browser_page(wallet, rpc_url, reader.address) as (page, errors):
        expect.set_options(timeout=30_000)
        assert page.goto(base + ARTICLES[0]).status == 402
        expect(page.locator("#channel-unlock")).to_have_text("Open a channel and unlock for 0.02 DUSD")
        expect(page.locator("#channel-deposit")).to_have_value("1")  # 50 prices, in DUSD
        expect(page.locator("#channel-deposit-unit")).to_have_text("DUSD")
        shot(page, "21-token-paywall")
        page.fill("#channel-deposit", "0.5")
        page.click("#channel-unlock")
        expect(page.locator("#channel-content h1")).to_have_text(titles[0])
        expect(page.locator("#channel-remaining")).to_have_text("0.48 DUSD")
        assert wallet.calls.count("eth_signTypedData_v4") == 1 and wallet.calls.count("eth_sendTransaction") == 1
        shot(page, "22-token-opened-by-permit")

        assert page.goto(base + ARTICLES[1]).status == 402
        expect(page.locator("#channel-unlock")).to_have_text("Unlock for 0.02 DUSD")
        page.click("#channel-unlock")
        expect(page.locator("#channel-content h1")).to_have_text(titles[1])
        expect(page.locator("#channel-remaining")).to_have_text("0.46 DUSD")

        asked_before = _asked(wallet)
        page.goto(base + ARTICLES[0])  # bought on this channel: shown again for free, by itself
        expect(page.locator("#channel-content h1")).to_have_text(titles[0])
        expect(page.locator("#channel-unlocks li").last).to_have_attribute("data-cost", "0")
        assert _asked(wallet) == asked_before, "nothing asked of the wallet (it only reads the token's decimals)"

        page.fill("#channel-topup-amount", "0.2")
        page.click("#channel-topup")
        expect(page.locator("#channel-remaining")).to_have_text("0.66 DUSD")
        assert wallet.calls.count("eth_signTypedData_v4") == 2 and wallet.calls.count("eth_sendTransaction") == 2
        shot(page, "23-token-topped-up-by-permit")
        stored = _stored(page)
        assert stored["funded"] == "permit" and stored["config"]["token"].lower() == token.lower()
        assert stored["charged"] == str(2 * TOKEN_ARTICLE_PRICE)
        channels.append((stored["channelId"], stored["contract"], 700_000))
        assert errors == [], errors

    # 2. A wallet that refuses typed data: approve exactly the deposit, then deposit it.
    wallet = DevWallet(rpc_url, reader.private_key)
    with browser_page(wallet, rpc_url, reader.address, refuse_typed_data=True) as (page, errors):
        expect.set_options(timeout=30_000)
        assert page.goto(base + ARTICLES[2]).status == 402
        page.fill("#channel-deposit", "0.1")
        page.click("#channel-unlock")
        expect(page.locator("#channel-content h1")).to_have_text("What a voucher is, and why it is a running total")
        expect(page.locator("#channel-remaining")).to_have_text("0.08 DUSD")
        assert wallet.calls.count("eth_signTypedData_v4") == 1, "asked once, refused"
        assert wallet.calls.count("eth_sendTransaction") == 2, "approve, then depositToken"
        page.fill("#channel-topup-amount", "0.05")
        page.click("#channel-topup")
        expect(page.locator("#channel-remaining")).to_have_text("0.13 DUSD")
        assert wallet.calls.count("eth_sendTransaction") == 4
        shot(page, "24-token-approve-fallback")
        stored = _stored(page)
        assert stored["funded"] == "approve"
        channels.append((stored["channelId"], stored["contract"], 150_000))
        approvals = wallet.transactions
        assert errors == [], errors

    # On chain: both channels hold exactly what was deposited, the reader paid exactly that, and the
    # contract holds no allowance of the reader's (an exact approve each time, and permits).
    contract = w3.eth.contract(address=channels[0][1], abi=channel_deposit_artifact().abi)
    for channel, _, deposited in channels:
        on_chain, claimed, _, settled = contract.functions.getChannel(bytes.fromhex(channel[2:])).call()
        assert (on_chain, claimed, settled) == (deposited, 0, False)
    assert reader_before - dollar.functions.balanceOf(reader.address).call() == 850_000
    assert dollar.functions.allowance(reader.address, contract.address).call() == 0
    for tx in approvals:
        assert w3.eth.get_transaction_receipt(tx)["status"] == 1


# ---------------------------------------------------------------- issue 16's done-when, in the browser

NEWS = [f"/news/{n}.html" for n in range(1, 6)]
SPORT = [f"/sport/{n}.html" for n in range(1, 4)]


def _write_site(folder) -> None:
    """A site of news and sport articles: news capped at $0.05 a month, sport sold by the article
    (capped at $1.00 a month) or with a day pass for $0.30."""
    from channel_node.dev.stack import site_root

    shutil.copytree(site_root(), folder)  # the sample site, whose article `dev` pays for as its self-check
    for section, paths in (("news", NEWS), ("sport", SPORT)):
        (folder / section).mkdir()
        for path in paths:
            n = path.rsplit("/", 1)[1].split(".")[0]
            words = " ".join(f"{section} word {i} of the long story number {n}." for i in range(40))
            (folder / path.lstrip("/")).write_text(
                f"<!doctype html><html><head><title>{section.title()} story {n}</title></head>"
                f"<body><h1>{section.title()} story {n}</h1><p>{words}</p><p>{words}</p></body></html>"
            )


SPENDING_SITE = {
    "free": ["/", "/index.html", "/static/*"],
    "prices": [
        {"path": "/articles/*", "price": 20_000, "description": "an article of The Daily Channel"},
        {"path": "/news/*", "price": 20_000, "description": "a news story"},
        {"path": "/sport/*", "price": 20_000, "description": "a sport story"},
    ],
    "caps": [
        {"name": "news", "pattern": "/news/*", "cap": "0.05", "period": "month"},
        {"name": "sport", "pattern": "/sport/*", "cap": "1.00", "period": "month"},
    ],
    "passes": [
        {"name": "sport-day", "pattern": "/sport/*", "price": "0.30", "duration": "1d", "description": "All of today's sport"}
    ],
    "display": {"symbol": "$", "decimals_shown": 2},
}


def test_buy_up_to_the_cap_read_on_free_then_a_day_pass_until_it_expires_in_chromium(tmp_path):
    """Issue 16's done-when in the browser, paid in DemoDollar: news stories bought up to the news
    cap ($0.05 a month: $0.02, $0.02, then $0.01 at the boundary), the next read free; a sport story's
    paywall offers the article, the day pass and the cap progress, one click buys the pass, the next
    sport story is read free under it; a day later (the node's, the chain's and the page's clocks
    moved) the pass has expired and a sport story costs its price again."""
    need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import expect
    except ImportError:
        need(False, "the playwright Python package is missing (pip install -e '.[dev]')")
    from channel_node.dev.devchain import DevChain

    site = tmp_path / "site"
    _write_site(site)
    (tmp_path / "node").mkdir()
    env = {"CHANNEL_NODE_TEST_PAYWALL": json.dumps({**SPENDING_SITE, "content_dir": str(site)}), "CHANNEL_NODE_TEST_CLOCK": "1"}
    reader = DevChain().accounts[2]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for base, rpc_url, token in start_dev(tmp_path / "node", "--token", env=env):
        assert token is not None
        wallet = DevWallet(rpc_url, reader.private_key)
        with browser_page(wallet, rpc_url, reader.address) as (page, errors):
            expect.set_options(timeout=30_000)
            costs = lambda: page.locator("#channel-unlocks li").evaluate_all(  # noqa: E731
                "items => items.map(i => [i.dataset.cost, i.dataset.kind])"
            )

            # 1. Up to the news cap: the paywall shows the progress and the effective price.
            assert page.goto(base + NEWS[0]).status == 402
            expect(page.locator("#channel-cap")).to_contain_text("$0.00 of $0.05 this month, resets ")
            page.fill("#channel-deposit", "2")
            page.click("#channel-unlock")
            expect(page.locator("#channel-content h1")).to_have_text("News story 1")
            assert page.goto(base + NEWS[1]).status == 402
            expect(page.locator("#channel-cap")).to_contain_text("$0.02 of $0.05 this month, resets ")
            expect(page.locator("#channel-unlock")).to_have_text("Unlock for $0.02")
            page.click("#channel-unlock")
            expect(page.locator("#channel-content h1")).to_have_text("News story 2")
            assert page.goto(base + NEWS[2]).status == 402
            expect(page.locator("#channel-cap")).to_contain_text("$0.04 of $0.05 this month, resets ")
            expect(page.locator("#channel-unlock")).to_have_text("Unlock for $0.01")  # the room left under the cap
            expect(page.locator("#channel-price")).to_have_text("$0.01")
            shot(page, "31-cap-progress-on-the-paywall")
            page.click("#channel-unlock")
            expect(page.locator("#channel-content h1")).to_have_text("News story 3")

            # 2. The cap is reached: the next story is shown by itself, for free.
            page.goto(base + NEWS[3])
            expect(page.locator("#channel-content h1")).to_have_text("News story 4")
            expect(page.locator("#channel-panel-cap")).to_contain_text(
                "Cap news: $0.05 of $0.05 this month, resets "
            )
            expect(page.locator("#channel-panel-cap")).to_contain_text("reading on is free until then")
            shot(page, "32-cap-reached-read-on-free")
            assert costs() == [["20000", "article"], ["20000", "article"], ["10000", "capped"], ["0", "capped"]]

            # 3. Sport: the article, the day pass and the cap progress side by side; one click buys the pass.
            assert page.goto(base + SPORT[0]).status == 402
            offer = page.locator("#channel-paywall .channel-box p").first
            expect(offer).to_contain_text("$0.02 for this article, or $0.30 for a 1-day pass (All of today's sport)")
            expect(page.locator("#channel-cap")).to_contain_text("$0.00 of $1.00 this month, resets ")
            expect(page.locator("#channel-unlock")).to_have_text("Unlock for $0.02")
            expect(page.locator("#channel-pass-sport-day")).to_have_text("Buy the 1-day pass for $0.30")
            shot(page, "33-paywall-article-pass-and-cap")
            page.click("#channel-pass-sport-day")
            expect(page.locator("#channel-content h1")).to_have_text("Sport story 1")
            expect(page.locator("#channel-panel-pass")).to_contain_text("Your sport-day pass: free reading until ")
            page.goto(base + SPORT[1])
            expect(page.locator("#channel-content h1")).to_have_text("Sport story 2")  # under the pass, by itself
            shot(page, "34-read-free-under-the-pass")
            assert costs()[4:] == [["300000", "pass"], ["0", "pass_read"]]

            # 4. A day later the pass has expired: a sport story costs its price again.
            move_clock(rpc_url, page, 86_400 + 60)
            assert page.goto(base + SPORT[2]).status == 402
            expect(page.locator("#channel-unlock")).to_have_text("Unlock for $0.02")
            expect(page.locator("#channel-pass-sport-day")).to_be_visible()
            page.click("#channel-unlock")
            expect(page.locator("#channel-content h1")).to_have_text("Sport story 3")
            shot(page, "35-pass-expired-charged-again")
            assert costs()[6:] == [["20000", "article"]]
            stored = _stored(page)
            assert stored["charged"] == str(20_000 * 2 + 10_000 + 300_000 + 20_000)
            assert stored["funded"] == "permit"
            assert errors == [], errors
