"""What the Chromium tests share (tests/e2e/test_browser.py, tests/e2e/test_browser_token.py):
Debian's headless Chromium driven by Playwright (its Python package, pointed at /usr/bin/chromium:
no browser is ever downloaded), `channel-node dev` started through tests/browser_dev.py, and a test
EIP-1193 provider injected into every page that forwards JSON-RPC to the dev chain and has
transactions and typed data signed in Python with the dev reader's (public) key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
ARTICLES = ["/articles/micropayments.html", "/articles/channels.html", "/articles/vouchers.html"]
PRICE = 20_000_000_000_000
CHROMIUM_ARGS = [
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip

PROVIDER = r"""
(() => {
  const RPC = %(rpc)s, ACCOUNT = %(account)s;
  let id = 0;
  async function forward(method, params) {
    const response = await fetch(RPC, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({jsonrpc: "2.0", id: ++id, method, params}),
    });
    const answer = await response.json();
    if (answer.error) throw Object.assign(new Error(answer.error.message), {code: answer.error.code});
    return answer.result;
  }
  window.ethereum = {
    isChannelNodeTestProvider: true,
    async request({method, params = []}) {
      await window.__devWalletCall(method);
      switch (method) {
        case "eth_requestAccounts":
        case "eth_accounts":
          return [ACCOUNT];
        case "eth_sendTransaction":
          return forward("eth_sendRawTransaction", [await window.__devSignTransaction(JSON.stringify(params[0]))]);
        case "eth_signTypedData_v4":
          // A wallet that will not sign typed data (browser_page(refuse_typed_data=True)).
          if (%(refuse)s) throw Object.assign(new Error("User rejected the request."), {code: 4001});
          return window.__devSignTypedData(params[0], params[1]);
        case "wallet_switchEthereumChain":
          throw Object.assign(new Error("the test wallet has one chain"), {code: 4902});
        default:
          return forward(method, params);
      }
    },
    on() {}, removeListener() {},
  };
})();
"""


# The page's clock, moved with the node's (move_clock): Date.now runs `test:clock-offset` seconds
# (in the origin's localStorage, so it survives navigations) ahead of the real one.
MOVED_CLOCK = r"""
(() => {
  const real = Date.now.bind(Date);
  const offset = () => { try { return Number(localStorage.getItem("test:clock-offset") || 0) * 1000; } catch (e) { return 0; } };
  Date.now = () => real() + offset();
})();
"""


def move_clock(rpc_url: str, page, seconds: int) -> None:
    """Moves the node's clock and the dev chain's time (tests/browser_dev.py's `test_moveClock`)
    and the page's Date.now `seconds` ahead."""
    total = rpc_call(rpc_url, "test_moveClock", [seconds])  # the node's offset in all, in seconds
    page.evaluate("(total) => localStorage.setItem('test:clock-offset', String(total))", total)


def need(condition: bool, reason: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide this: {reason}")
        pytest.skip(reason)


def rpc_call(url: str, method: str, params: list):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise RuntimeError(answer["error"])
    return answer["result"]


class DevWallet:
    """The Python half of the injected provider: signs with the dev reader's key."""

    def __init__(self, rpc_url: str, key: bytes):
        from eth_account import Account

        self.rpc_url = rpc_url
        self.account = Account.from_key(key)
        self.calls: list[str] = []
        self.transactions: list[str] = []

    def call(self, method: str) -> None:
        self.calls.append(method)

    def sign_transaction(self, tx_json: str) -> str:
        tx = json.loads(tx_json)
        assert tx["from"].lower() == self.account.address.lower(), tx
        chain_id = int(rpc_call(self.rpc_url, "eth_chainId", []), 16)
        call = {"from": tx["from"], "to": tx["to"], "value": tx.get("value", "0x0"), "data": tx.get("data", "0x")}
        gas = int(rpc_call(self.rpc_url, "eth_estimateGas", [call]), 16)
        signed = self.account.sign_transaction({
            "chainId": chain_id,
            "nonce": int(rpc_call(self.rpc_url, "eth_getTransactionCount", [self.account.address, "pending"]), 16),
            "to": tx["to"], "value": int(tx.get("value", "0x0"), 16), "data": tx.get("data", "0x"),
            "gas": gas * 5 // 4, "gasPrice": int(rpc_call(self.rpc_url, "eth_gasPrice", []), 16),
        })  # fmt: skip
        self.transactions.append("0x" + signed.hash.hex().removeprefix("0x"))
        return "0x" + signed.raw_transaction.hex().removeprefix("0x")

    def sign_typed_data(self, address: str, typed_json: str) -> str:
        from eth_account.messages import encode_typed_data

        assert address.lower() == self.account.address.lower()
        signed = self.account.sign_message(encode_typed_data(full_message=json.loads(typed_json)))
        return "0x" + signed.signature.hex().removeprefix("0x")


def start_dev(tmp_path, *extra: str, env: dict[str, str] | None = None):
    """Runs `channel-node dev` (through tests/browser_dev.py, with its test knobs in `env`) and
    yields (base URL, JSON-RPC URL, token address or None) once it serves."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "browser_dev.py"), "dev", "--port", "0", "--rpc-port", "0",
         "--data-dir", str(tmp_path), "--log-format", "json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if "wallet get" in line:
                break
        text = "\n".join(lines)
        base = re.search(r"^serving (http://\S+)", text, re.M)
        rpc = re.search(r"JSON-RPC at (http://[0-9.]+:[0-9]+)", text)
        token = re.search(r"^token\s+(0x[0-9a-fA-F]{40})", text, re.M)
        assert base and rpc, text
        yield base.group(1), rpc.group(1), token.group(1) if token else None
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def dev_node(tmp_path):
    for base, rpc, _ in start_dev(tmp_path):
        yield base, rpc


@pytest.fixture
def dev_token_node(tmp_path):
    yield from start_dev(tmp_path, "--token")


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@contextmanager
def browser_page(
    wallet: DevWallet, rpc_url: str, account: str, refuse_typed_data: bool = False
) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page whose EIP-1193 provider is `wallet` on `rpc_url`, and the page errors seen;
    with `refuse_typed_data`, the provider refuses every eth_signTypedData_v4 (code 4001)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1000, "height": 800})
            context.expose_function("__devWalletCall", wallet.call)
            context.expose_function("__devSignTransaction", wallet.sign_transaction)
            context.expose_function("__devSignTypedData", wallet.sign_typed_data)
            context.add_init_script(MOVED_CLOCK)
            context.add_init_script(PROVIDER % {"rpc": json.dumps(rpc_url), "account": json.dumps(account), "refuse": json.dumps(refuse_typed_data)})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page, errors
        finally:
            browser.close()
