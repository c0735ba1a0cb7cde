"""Our wallet pays the official x402 Python SDK's own site (tests/client/x402_sdk_site.py: its
FastAPI middleware with its in-process `exact` facilitator) on anvil, with DemoDollar deployed: the
library (PayingSession) and the CLI (`wallet get --scheme exact`) pay several articles, the payee's
balance grows by exactly the prices, the limits refuse an over-cap offer before anything is signed,
and a replayed header is refused by the site and counted once by the wallet.

Needs `x402[evm,httpx]==2.25.0`, `fastapi` and `uvicorn` (the dev extra): missing, the test FAILS
(it does not skip). Without anvil (npm ci --prefix tools) it skips, except under CI where it fails.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from eth_account import Account
from web3 import AsyncWeb3, Web3
from web3.providers import AsyncHTTPProvider

from anvil import ANVIL, Anvil, start_anvil
from channel_node.chain.artifacts import demo_dollar_artifact
from channel_node.client import PayingSession, Policy, SpendingLimitExceeded, Wallet, WalletStore
from channel_node.client.exact import ExactHeader, exact_payer
from channel_node.client.store import EXACT_CONFIRMED, EXACT_PAID, EXACT_REFUSED
from channel_node.client.wallet import _today

PRICES = {"a": 1500, "b": 2500, "c": 700, "dear": 5000}
# anvil's well-known dev accounts 0 (deploys, mints) and 1 (the SDK facilitator: pays the gas)
FACILITATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
READER_KEY = bytes.fromhex("3c" * 32)  # holds tokens, no ETH: an exact payment needs no gas
PAY_TO = Account.from_key(bytes.fromhex("4d" * 32)).address
MINTED = 10**9


def _require_dependencies() -> None:
    missing = [m for m in ("x402", "fastapi", "uvicorn", "httpx") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"the SDK-site test needs {', '.join(missing)}: install the dev extra "
                    "(x402[evm,httpx]==2.25.0, fastapi, uvicorn)")  # fmt: skip
    if not ANVIL.exists():
        if os.environ.get("CI"):
            pytest.fail(f"anvil is missing at {ANVIL} under CI: run `npm ci --prefix tools`")
        pytest.skip(f"anvil is missing at {ANVIL} (run `npm ci --prefix tools`)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SdkSite:
    anvil: Anvil
    token: str
    url: str
    chain_id: int
    w3: Web3

    def balance(self, who: str) -> int:
        return self.w3.eth.contract(self.token, abi=demo_dollar_artifact().abi).functions.balanceOf(who).call()


@pytest.fixture(scope="module")
def sdk_site(tmp_path_factory) -> Iterator[SdkSite]:
    _require_dependencies()
    chain = start_anvil()
    site = None
    try:
        w3 = Web3(Web3.HTTPProvider(chain.http_url))
        artifact = demo_dollar_artifact()
        deployer = w3.eth.accounts[0]
        tx = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode).constructor().transact({"from": deployer})
        token = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
        dollar = w3.eth.contract(token, abi=artifact.abi)
        w3.eth.wait_for_transaction_receipt(
            dollar.functions.mint(Account.from_key(READER_KEY).address, MINTED).transact({"from": deployer})
        )
        port = _free_port()
        env = dict(os.environ, RPC=chain.http_url, CHAIN=str(w3.eth.chain_id), TOKEN=token, PAYTO=PAY_TO,
                   FACILITATOR_KEY=FACILITATOR_KEY, PORT=str(port), TOKEN_NAME=dollar.functions.name().call(),
                   TOKEN_VERSION=dollar.functions.version().call(),
                   PRICES=",".join(f"{k}={v}" for k, v in PRICES.items()))  # fmt: skip
        log = tmp_path_factory.mktemp("sdk-site") / "site.log"
        with log.open("wb") as out:
            site = subprocess.Popen([sys.executable, str(Path(__file__).with_name("x402_sdk_site.py"))], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if site.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the SDK site did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield SdkSite(chain, token, url, w3.eth.chain_id, w3)
    finally:
        if site is not None and site.poll() is None:
            site.terminate()
            try:
                site.wait(timeout=10)
            except subprocess.TimeoutExpired:
                site.kill()
                site.wait()
        chain.stop()


def _wallet(site: SdkSite, tmp_path: Path, **policy) -> Wallet:
    w3 = AsyncWeb3(AsyncHTTPProvider(site.anvil.http_url))
    return Wallet(w3, READER_KEY, WalletStore(tmp_path / "wallet.db"), Policy(asset=site.token, **policy))


def _spent(wallet: Wallet) -> int:
    return wallet.store.spent(_today())


async def test_the_library_pays_several_articles_and_the_payee_gets_exactly_the_prices(sdk_site: SdkSite, tmp_path):
    wallet = _wallet(sdk_site, tmp_path, daily_limit=10**6)
    before = sdk_site.balance(PAY_TO)
    async with PayingSession(wallet, scheme="exact", confirm_exact=True) as session:
        results = [await session.get(f"{sdk_site.url}/articles/{name}") for name in ("a", "b", "c")]
    for name, result in zip(("a", "b", "c"), results, strict=True):
        assert result.status == 200, result.text()
        assert result.text() == f"the text of article {name}"
        assert result.charged == PRICES[name]
        assert result.receipt is not None and result.receipt["success"] is True
    total = PRICES["a"] + PRICES["b"] + PRICES["c"]
    assert sdk_site.balance(PAY_TO) - before == total
    records = wallet.store.exact_payments()
    assert [r.value for r in records] == [PRICES["a"], PRICES["b"], PRICES["c"]]
    assert {r.status for r in records} == {EXACT_CONFIRMED}  # each transfer found on chain
    assert _spent(wallet) == total
    await wallet.w3.provider.disconnect()


async def test_limits_refuse_an_over_cap_offer_before_signing(sdk_site: SdkSite, tmp_path):
    before = sdk_site.balance(PAY_TO)
    for policy in ({"per_request_limit": 4999}, {"exact_max_amount": 4999}, {"daily_limit": 4999}):
        folder = tmp_path / next(iter(policy))
        folder.mkdir()
        wallet = _wallet(sdk_site, folder, **policy)
        async with PayingSession(wallet, scheme="exact") as session:
            with pytest.raises(SpendingLimitExceeded):
                await session.get(f"{sdk_site.url}/articles/dear")
        assert wallet.store.exact_payments() == []  # nothing signed, nothing recorded
        assert _spent(wallet) == 0
        await wallet.w3.provider.disconnect()
    assert sdk_site.balance(PAY_TO) == before


async def test_a_replayed_header_is_refused_by_the_site_and_counted_once(sdk_site: SdkSite, tmp_path):
    wallet = _wallet(sdk_site, tmp_path)
    before = sdk_site.balance(PAY_TO)
    async with PayingSession(wallet, scheme="exact") as session:
        first = await session.get(f"{sdk_site.url}/articles/a")
    assert first.status == 200 and first.charged == PRICES["a"]
    (record,) = wallet.store.exact_payments()
    assert record.status == EXACT_PAID
    again = {"PAYMENT-SIGNATURE": record.header}
    async with aiohttp.ClientSession() as http, http.get(f"{sdk_site.url}/articles/a", headers=again) as replay:
        assert replay.status == 402
        refusal = json.loads(base64.b64decode(replay.headers["PAYMENT-REQUIRED"]))
    assert "nonce" in refusal["error"]  # invalid_exact_evm_nonce_already_used
    # The wallet counts it once, even when the same settlement is reported to it again.
    payer = exact_payer(wallet)
    header = ExactHeader(record.header, record.nonce, record.value, record.pay_to, record.valid_before, record.site)
    assert payer.settle(header, first.receipt) == 0
    assert sdk_site.balance(PAY_TO) - before == PRICES["a"]
    assert _spent(wallet) == PRICES["a"]
    assert len(wallet.store.exact_payments()) == 1
    await wallet.w3.provider.disconnect()


async def test_an_unfunded_reader_signs_nothing(sdk_site: SdkSite, tmp_path):
    w3 = AsyncWeb3(AsyncHTTPProvider(sdk_site.anvil.http_url))
    poor = Wallet(w3, bytes.fromhex("5e" * 32), WalletStore(tmp_path / "poor.db"), Policy(asset=sdk_site.token))
    from channel_node.client import InsufficientFunds

    async with PayingSession(poor, scheme="exact") as session:
        with pytest.raises(InsufficientFunds):
            await session.get(f"{sdk_site.url}/articles/c")
    assert poor.store.exact_payments() == []
    await w3.provider.disconnect()


def test_the_cli_pays_an_article(sdk_site: SdkSite, tmp_path, monkeypatch):
    from channel_node import keys

    monkeypatch.setattr(keys, "SCRYPT_N", 2**12)  # a cheap keystore: each CLI run unlocks it
    folder = tmp_path / "wallet"
    folder.mkdir()
    keys.import_key(folder / "keystore.json", "pw-for-the-test", READER_KEY.hex())
    before = sdk_site.balance(PAY_TO)
    cli = Path(sys.executable).with_name("channel-node")
    env = dict(os.environ, CHANNEL_NODE_KEYSTORE_PASSWORD="pw-for-the-test")
    # 3000 base units: typed with the base-unit suffix where the CLI reads amounts in the asset's unit (docs/amounts.md)
    cap = "3000base" if importlib.util.find_spec("channel_node.amounts") else "3000"
    run = subprocess.run(
        [str(cli), "wallet", "get", f"{sdk_site.url}/articles/b", "--scheme", "exact", "--wallet", str(folder),
         "--rpc-url", sdk_site.anvil.http_url, "--token", sdk_site.token, "--max-price", cap],
        capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout == b"the text of article b"
    assert "charged" in run.stderr.decode()
    assert sdk_site.balance(PAY_TO) - before == PRICES["b"]
    # over the cap: refused, nothing moves
    run = subprocess.run(
        [str(cli), "wallet", "get", f"{sdk_site.url}/articles/dear", "--scheme", "exact", "--wallet", str(folder),
         "--rpc-url", sdk_site.anvil.http_url, "--token", sdk_site.token, "--max-price", cap],
        capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and b"per-request limit" in run.stderr
    assert sdk_site.balance(PAY_TO) - before == PRICES["b"]
    with WalletStore(folder / "wallet.db") as store:
        assert [r.value for r in store.exact_payments()] == [PRICES["b"]]
        assert store.exact_payments(EXACT_REFUSED) == []


async def test_reconcile_reads_the_tokens_authorization_state_after_expiry(sdk_site: SdkSite, tmp_path):
    """Last in the module: it moves anvil's clock past the authorizations' validBefore."""
    wallet = _wallet(sdk_site, tmp_path, exact_max_validity=30)
    payer = exact_payer(wallet)
    async with PayingSession(wallet, scheme="exact") as session:
        assert (await session.get(f"{sdk_site.url}/articles/c")).charged == PRICES["c"]
    # A crash right after recording: signed, never sent (the site never saw it).
    async with aiohttp.ClientSession() as http, http.get(f"{sdk_site.url}/articles/a") as response:
        required = json.loads(base64.b64decode(response.headers["PAYMENT-REQUIRED"]))
    lost = await payer.pay(required["accepts"][0], required, f"{sdk_site.url}/articles/a")
    assert _spent(wallet) == PRICES["c"] + PRICES["a"]
    assert await payer.reconcile() == []  # both still valid on chain
    sdk_site.anvil.rpc("evm_increaseTime", [60])
    sdk_site.anvil.mine()
    decided = {r.nonce: r.status for r in await payer.reconcile()}
    (paid,) = [r for r in wallet.store.exact_payments() if r.nonce != lost.nonce]
    assert decided == {paid.nonce: "used", lost.nonce: "unused"}
    assert _spent(wallet) == PRICES["c"]  # the unused one no longer counts
    await wallet.w3.provider.disconnect()
