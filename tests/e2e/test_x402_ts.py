"""The official x402 TypeScript client pays the node: `@x402/fetch` with `@x402/evm`'s exact scheme
and a viem account (tools/x402_ts_client.mjs, packages pinned in tools/package.json), spend
controls allowing DemoDollar, against `channel-node serve` with `[exact] enabled = true` on a chain
of its own (anvil: block time is wall clock, which the client dates its authorizations by).

The 402 lists both `channel` and `exact`; the client picks `exact` (it has no `channel` scheme), pays
several articles with one signature each, the node settles each with a transferWithAuthorization
before it serves, and the receiver's balance grows by exactly the prices. The first authorization,
replayed by hand to another article, is refused and moves nothing."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from eth_account import Account

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import x402_interop as interop  # noqa: E402

NODE = shutil.which("node")
SDK = ROOT / "tools" / "node_modules" / "@x402" / "fetch" / "package.json"
ARTICLES = 3


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide this: {reason}")
        pytest.skip(reason)


def _decode(value: str | None):
    return json.loads(base64.b64decode(value)) if value else None


@pytest.fixture
def site(tmp_path):
    _need(NODE is not None, "node is not installed")
    _need(interop.ANVIL.exists() and SDK.exists(), "tools/node_modules is missing: npm ci --prefix tools --no-audit --no-fund")
    with interop.anvil_chain() as rpc_url:
        deployment = interop.deploy(rpc_url)
        paths = interop.write_site(tmp_path / "site", ARTICLES + 1)
        config = interop.node_config(tmp_path, deployment, tmp_path / "site")
        with interop.serving(config, tmp_path / "node.log") as base:
            yield deployment, base, paths, tmp_path / "site"


def run_ts_client(deployment, base: str, paths: list[str], replay: str | None) -> dict:
    job = {
        "key": "0x" + interop.TS_PAYER_KEY.hex(), "network": deployment.network, "asset": deployment.token,
        "maxAmountPerPayment": interop.CAP, "base": base, "paths": paths, "replay": replay, "timeoutMs": 60_000,
    }  # fmt: skip
    result = subprocess.run(
        [NODE, str(interop.TS_CLIENT)], input=json.dumps(job), capture_output=True, text=True, timeout=90, cwd=ROOT / "tools"
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_official_typescript_client_pays_under_exact_and_a_replay_is_refused(site):
    deployment, base, paths, folder = site
    payable, other = paths[:ARTICLES], paths[ARTICLES]
    payer = Account.from_key(interop.TS_PAYER_KEY).address

    # The offer lists both schemes, the channel first; the exact entry carries what the TS SDK needs.
    with pytest.raises(urllib.error.HTTPError) as offered:
        urllib.request.urlopen(base + payable[0], timeout=10)
    assert offered.value.code == 402
    document = _decode(offered.value.headers["PAYMENT-REQUIRED"])
    assert [entry["scheme"] for entry in document["accepts"]] == ["channel", "exact"]
    exact = document["accepts"][1]
    assert exact["amount"] == str(interop.PRICE) and exact["asset"] == deployment.token
    assert exact["extra"]["name"] and exact["extra"]["version"] and exact["maxTimeoutSeconds"] > 0

    receiver_before = deployment.token_balance(deployment.receiver)
    payer_before = deployment.token_balance(payer)
    report = run_ts_client(deployment, base, payable, replay=other)

    assert report["payer"] == payer
    nonces = set()
    for item, path in zip(report["paid"], payable, strict=True):
        assert item["path"] == path and item["status"] == 200, item
        assert item["scheme"] == "exact"  # picked over the channel entry listed first
        assert item["bodyBytes"] == len((folder / path.lstrip("/")).read_bytes())
        auth = item["authorization"]
        assert auth["value"] == str(interop.PRICE) and auth["to"].lower() == deployment.receiver.lower()
        nonces.add(auth["nonce"])
        receipt = item["receipt"]
        assert receipt["success"] is True and receipt["network"] == deployment.network
        assert receipt["payer"].lower() == payer.lower()
        # settled before it was served: the transfer is mined and moved the price to the receiver
        mined = deployment.w3.eth.get_transaction_receipt(receipt["transaction"])
        assert mined["status"] == 1 and mined["to"].lower() == deployment.token.lower()
    assert len(nonces) == ARTICLES  # one fresh authorization per article

    replay = report["replay"]
    assert replay["status"] == 402 and replay["error"] == "authorization_used", replay
    assert not (replay["receipt"] or {}).get("success")

    assert deployment.token_balance(deployment.receiver) - receiver_before == ARTICLES * interop.PRICE
    assert payer_before - deployment.token_balance(payer) == ARTICLES * interop.PRICE
    assert deployment.w3.eth.get_balance(payer) == 0  # the reader paid no gas: it holds no ETH at all

