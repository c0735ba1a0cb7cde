"""Crash safety of an x402 `exact` sale with real processes: `channel-node serve` on anvil records a
sale and broadcasts its transfer, which stays unmined; the node is SIGKILLed and the transfer is
dropped from anvil's mempool (a broadcast lost with the process); the restarted node re-sends the
very bytes it recorded before they left, the chain mines exactly one transfer, and the same header
sent again gets the article with that transaction. Anvil's blocks are dated by wall clock, as the
x402 clients' authorizations are."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import time

import aiohttp
from eth_account import Account
from web3 import Web3

from anvil import anvil_fixture
from channel_node.chain.artifacts import channel_deposit_artifact, demo_dollar_artifact
from channel_node.signing import keccak256
from channel_node.signing.eip3009 import TokenDomain, TransferAuthorization, sign_authorization
from channel_node.wire.envelope import decode_header
from channel_node.wire.exact import exact_payment_signature

PRICE = 5_000
PAYER_KEY = keccak256(b"exact crash payer")
CLAIM_KEY = keccak256(b"exact crash claim key")


anvil = anvil_fixture()


def deploy(w3: Web3, deployer: str, artifact, *args) -> str:
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor(*args).transact({"from": deployer}))
    return receipt["contractAddress"]


async def serve(toml) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "channel_node.cli.main", "serve", "--config", str(toml), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    seen = []
    while not (line := (await asyncio.wait_for(process.stdout.readline(), 30)).decode()).startswith("channel-node serving"):
        assert line, "".join(seen)
        seen.append(line)
    return process, line.split("serving ")[1].split()[0]


async def test_a_killed_node_resends_its_recorded_transfer_once_and_serves_the_retry(anvil, tmp_path):
    w3 = Web3(Web3.HTTPProvider(anvil.http_url))
    deployer, receiver = w3.eth.accounts[:2]
    payer, claimer = Account.from_key(PAYER_KEY), Account.from_key(CLAIM_KEY)
    contract = deploy(w3, deployer, channel_deposit_artifact(), 0)
    dollar_artifact = demo_dollar_artifact()
    token_address = deploy(w3, deployer, dollar_artifact)
    token = w3.eth.contract(address=token_address, abi=dollar_artifact.abi)
    w3.eth.wait_for_transaction_receipt(token.functions.mint(payer.address, 10 * PRICE).transact({"from": deployer}))
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": deployer, "to": claimer.address, "value": 10**18}))
    site = tmp_path / "site"
    (site / "articles").mkdir(parents=True)
    (site / "articles" / "a.html").write_text("paid words")
    toml = tmp_path / "node.toml"
    toml.write_text(
        f'rpc_url = "{anvil.http_url}"\ncontract = "{contract}"\nreceiver = "{receiver}"\ntoken = "{token_address}"\n'
        f'database = "{tmp_path / "node.db"}"\nconfirmations = 1\npoll_interval = 0.2\nclaim_key = "{CLAIM_KEY.hex()}"\n'
        f'auto_claim = false\n\n[exact]\nenabled = true\nsettle_timeout = 1\n\n'
        f'[paywall]\ncontent_dir = "{site}"\n\n[[paywall.prices]]\npath = "/articles/*"\nprice = {PRICE}\n'
    )
    anvil.rpc("evm_setAutomine", [False])  # the transfer is broadcast and stays in the mempool
    process, base = await serve(toml)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/articles/a.html") as offer:
                document = decode_header(offer.headers["PAYMENT-REQUIRED"])
            [entry] = [e for e in document["accepts"] if e["scheme"] == "exact"]
            auth = TransferAuthorization(payer.address, entry["payTo"], PRICE, 0, int(time.time()) + 120, keccak256(b"n1"))
            domain = TokenDomain("Demo Dollar", "1", w3.eth.chain_id, token_address)
            header = exact_payment_signature(entry, auth, sign_authorization(PAYER_KEY, domain, auth), document["resource"])
            async with http.get(base + "/articles/a.html", headers={"PAYMENT-SIGNATURE": header}) as pending:
                assert pending.status == 402 and (await pending.json())["error"] == "settlement_pending"
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()

    with sqlite3.connect(tmp_path / "node.db") as db:
        status, tx_hash, raw = db.execute("SELECT status, tx_hash, raw_tx FROM outbox").fetchone()
    assert status == "sent" and keccak256(raw) == tx_hash, "signed and recorded before it left"
    assert anvil.rpc("anvil_dropTransaction", ["0x" + tx_hash.hex()]) is not None, "the broadcast is lost"
    assert w3.eth.get_transaction_count(claimer.address, "pending") == 0

    process, base = await serve(toml)
    try:
        await asyncio.sleep(1.0)  # the restarted sender re-broadcasts what it recorded
        anvil.rpc("evm_setAutomine", [True])
        anvil.mine(1)
        async with aiohttp.ClientSession() as http:
            for _ in range(10):  # the same header again until the transfer is confirmed (as a client would)
                async with http.get(base + "/articles/a.html", headers={"PAYMENT-SIGNATURE": header}) as paid:
                    body = await paid.text()
                    if paid.status == 402 and "settlement_pending" in body:
                        continue
                    assert paid.status == 200 and body == "paid words", body
                    assert decode_header(paid.headers["PAYMENT-RESPONSE"])["transaction"] == "0x" + tx_hash.hex()
                    break
            else:
                raise AssertionError("never confirmed")
            async with http.get(base + "/articles/a.html", headers={"PAYMENT-SIGNATURE": header}) as replay:
                assert (await replay.json())["error"] == "authorization_used"
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 20)
    assert token.functions.balanceOf(receiver).call() == PRICE, "exactly one transfer"
    assert w3.eth.get_transaction_count(claimer.address) == 1, "one transaction from the claim key, ever"
