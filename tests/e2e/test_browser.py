"""One-click unlock in a real browser: Debian's headless Chromium driven by Playwright (its Python
package, pointed at /usr/bin/chromium: no browser is ever downloaded), against `channel-node dev`.

A test EIP-1193 provider is injected into every page: it forwards JSON-RPC to the dev chain's
loopback endpoint and has transactions and typed data signed in Python with the dev reader's
(public) key. The reader opens a channel, unlocks three articles, tops up, reloads one and reads it again
without paying, then closes the channel. Screenshots of each step: tests/artifacts/browser/.

On a site priced in DemoDollar with x402's `exact` offered too (`channel-node dev --token`), the
reader unlocks two articles with one typed-data signature each and sends no transaction.
"""

from __future__ import annotations

import base64
import json
import time

from browser_helpers import (
    ARTICLES,
    ARTIFACTS,
    CHROMIUM,
    PRICE,
    DevWallet,
    browser_page,
    dev_node,
    dev_token_node,
    need,
    shot,
)

__all__ = ["dev_node", "dev_token_node"]  # fixtures, found by name in this module

def test_open_unlock_three_reread_and_close_in_chromium(dev_node):
    need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import expect
    except ImportError:
        need(False, "the playwright Python package is missing (pip install -e '.[dev]')")
    from web3 import HTTPProvider, Web3

    from channel_node.chain.artifacts import channel_deposit_artifact
    from channel_node.dev.devchain import DevChain

    base, rpc_url = dev_node
    reader = DevChain().accounts[2]  # the dev chain's well-known keys: the same in every run
    wallet = DevWallet(rpc_url, reader.private_key)
    w3 = Web3(HTTPProvider(rpc_url))
    balance_before = w3.eth.get_balance(reader.address)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("0*.png"):  # this test's own screenshots
        old.unlink()

    started = time.monotonic()
    with browser_page(wallet, rpc_url, reader.address) as (page, errors):
        expect.set_options(timeout=30_000)

        # 1. The paywall: a browser gets an HTML 402 that still carries the machine-readable offer.
        response = page.goto(base + ARTICLES[0])
        assert response.status == 402
        assert "payment-required" in response.headers and response.headers["content-type"].startswith("text/html")
        expect(page.locator("#channel-unlock")).to_have_text("Open a channel and unlock for 0.00002 ETH")
        expect(page.locator("#channel-price")).to_have_text("0.00002 ETH")
        expect(page.locator("#channel-deposit")).to_have_value("0.001")  # 50 prices suggested
        expect(page.locator("#channel-exact-unlock")).to_have_count(0)  # an ETH site offers no exact
        shot(page, "01-paywall")

        # 2. Open with a deposit the reader chooses, and unlock the first article in place.
        page.fill("#channel-deposit", "0.0005")
        page.click("#channel-unlock")
        expect(page.locator("#channel-content h1")).to_have_text("Why micropayments finally work")
        expect(page.locator("#channel-remaining")).to_have_text("0.00048 ETH")
        assert wallet.calls.count("eth_sendTransaction") == 1
        shot(page, "02-opened-and-unlocked-first")

        # 3. Two more articles: vouchers are signed in the page, the wallet is not asked again.
        titles = ["Payment channels in five minutes", "What a voucher is, and why it is a running total"]
        for n, (path, title) in enumerate(zip(ARTICLES[1:], titles, strict=True), start=2):
            assert page.goto(base + path).status == 402
            expect(page.locator("#channel-unlock")).to_have_text("Unlock for 0.00002 ETH")
            page.click("#channel-unlock")
            expect(page.locator("#channel-content h1")).to_have_text(title)
            expect(page.locator("#channel-remaining")).to_have_text(f"0.000{50 - 2 * n}".rstrip("0") + " ETH")
            shot(page, f"0{n + 1}-unlocked-article-{n}")
        assert wallet.calls.count("eth_sendTransaction") == 1
        costs = page.locator("#channel-unlocks li").evaluate_all("items => items.map(i => i.dataset.cost)")
        assert costs == [str(PRICE)] * 3

        # 4. Top up from the panel (one more wallet confirmation).
        page.fill("#channel-topup-amount", "0.0001")
        page.click("#channel-topup")
        expect(page.locator("#channel-remaining")).to_have_text("0.00054 ETH")
        assert wallet.calls.count("eth_sendTransaction") == 2
        shot(page, "05-topped-up")

        # 5. Reload: the page shows the article again by itself, for free.
        calls_before = list(wallet.calls)
        page.reload()
        expect(page.locator("#channel-content h1")).to_have_text(titles[1])
        expect(page.locator("#channel-unlocks li").last).to_have_attribute("data-cost", "0")
        expect(page.locator("#channel-remaining")).to_have_text("0.00054 ETH")
        assert wallet.calls == calls_before  # no wallet involvement at all
        stored = page.evaluate("""() => JSON.parse(localStorage.getItem(Object.keys(localStorage)
            .find(k => k.startsWith("channel-node:v1:"))))""")
        assert stored["charged"] == str(3 * PRICE) and stored["status"] == "open"
        shot(page, "06-reloaded-and-reread-free")

        # 6. Close: the node consents, the reader's wallet sends closeCooperative.
        page.click("#channel-close")
        expect(page.locator("#channel-closed")).to_have_text(
            "Closed: 0.00006 ETH paid, 0.00054 ETH returned.", timeout=60_000
        )
        assert wallet.calls.count("eth_signTypedData_v4") == 1 and wallet.calls.count("eth_sendTransaction") == 3
        shot(page, "07-closed")
        assert errors == [], errors
    elapsed = time.monotonic() - started

    # On chain: the channel is settled, and the reader is out exactly three prices plus gas.
    artifact = channel_deposit_artifact()
    contract = w3.eth.contract(address=stored["contract"], abi=artifact.abi)
    deposited, claimed, _, settled = contract.functions.getChannel(bytes.fromhex(stored["channelId"][2:])).call()
    assert settled and deposited == 600_000_000_000_000 and claimed == 3 * PRICE
    fees = 0
    for tx_hash in wallet.transactions:
        receipt = w3.eth.get_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        fees += receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert balance_before - w3.eth.get_balance(reader.address) == 3 * PRICE + fees
    assert elapsed < 120, f"the browser flow took {elapsed:.0f} s"


def test_exact_unlock_with_one_signature_per_article_in_chromium(dev_token_node):
    need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import expect
    except ImportError:
        need(False, "the playwright Python package is missing (pip install -e '.[dev]')")
    from web3 import HTTPProvider, Web3

    from channel_node.chain.artifacts import demo_dollar_artifact
    from channel_node.dev.devchain import DevChain
    from channel_node.dev.stack import TOKEN_ARTICLE_PRICE

    base, rpc_url, token = dev_token_node
    assert token is not None
    chain_accounts = DevChain().accounts  # the dev chain's well-known keys: the same in every run
    reader, publisher = chain_accounts[2], chain_accounts[1]
    wallet = DevWallet(rpc_url, reader.private_key)
    w3 = Web3(HTTPProvider(rpc_url))
    dollar = w3.eth.contract(address=token, abi=demo_dollar_artifact().abi)
    eth_before = w3.eth.get_balance(reader.address)
    reader_before = dollar.functions.balanceOf(reader.address).call()
    publisher_before = dollar.functions.balanceOf(publisher.address).call()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    price_text = f"{TOKEN_ARTICLE_PRICE} units of token {token}"

    with browser_page(wallet, rpc_url, reader.address) as (page, errors):
        expect.set_options(timeout=30_000)

        titles = ["Why micropayments finally work", "Payment channels in five minutes"]
        transactions = []
        for n, (path, title) in enumerate(zip(ARTICLES[:2], titles, strict=True), start=1):
            response = page.goto(base + path)
            assert response.status == 402
            offer = json.loads(base64.b64decode(response.headers["payment-required"]))
            assert [entry["scheme"] for entry in offer["accepts"]] == ["channel", "exact"]
            # the page names the price in the node's token (server/browser.py); the script's receipt in base units
            expect(page.locator("#channel-exact-unlock")).to_have_text("Unlock with one signature for 0.02 DUSD")
            # The channel button opens a token channel beside it (tests/e2e/test_browser_token.py).
            expect(page.locator("#channel-unlock")).to_have_text("Open a channel and unlock for 0.02 DUSD")
            if n == 1:
                shot(page, "11-exact-paywall")
            page.click("#channel-exact-unlock")
            expect(page.locator("#channel-content h1")).to_have_text(title)
            receipt = page.locator("#channel-exact-receipt")
            expect(receipt).to_contain_text(f"Paid {price_text} with one signature")
            transactions.append(receipt.get_attribute("data-transaction"))
            shot(page, f"1{n + 1}-exact-unlocked-article-{n}")
            assert wallet.calls.count("eth_signTypedData_v4") == n
        assert "eth_sendTransaction" not in wallet.calls  # the reader sends no transaction
        stored = page.evaluate("""() => JSON.parse(localStorage.getItem(Object.keys(localStorage)
            .find(k => k.startsWith("channel-node:v1:exact:"))))""")
        assert [(r["path"], r["status"], r["value"]) for r in stored] == [
            (path, "paid", str(TOKEN_ARTICLE_PRICE)) for path in ARTICLES[:2]
        ]
        assert [r["transaction"] for r in stored] == transactions
        assert errors == [], errors

    # On chain: each article is one mined transfer of exactly the price to the publisher; the
    # reader's ETH is untouched (the node paid the gas).
    for tx in transactions:
        assert w3.eth.get_transaction_receipt(tx)["status"] == 1
    assert len(set(transactions)) == 2
    assert publisher_before + 2 * TOKEN_ARTICLE_PRICE == dollar.functions.balanceOf(publisher.address).call()
    assert reader_before - 2 * TOKEN_ARTICLE_PRICE == dollar.functions.balanceOf(reader.address).call()
    assert w3.eth.get_balance(reader.address) == eth_before
