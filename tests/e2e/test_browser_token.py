"""Stablecoin channels in a real browser (Chromium, tests/browser_helpers.py) against
`channel-node dev --token` (the site priced in DemoDollar, an EIP-2612 and EIP-3009 token):

- the reader opens a DUSD channel with one permit deposit (the wallet signs the Permit as typed data
  and sends one transaction), unlocks two articles, re-reads one for free and tops up the same way;
- with a wallet that refuses typed data, the page approves exactly the deposit and deposits it (two
  transactions each time), and leaves no allowance behind.

Screenshots: tests/artifacts/browser/2*.png (docs/browser.md, "Token channels").
"""

from __future__ import annotations

from browser_helpers import ARTICLES, ARTIFACTS, CHROMIUM, DevWallet, browser_page, dev_token_node, need, shot

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
