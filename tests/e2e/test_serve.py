"""`channel-node serve` against a real JSON-RPC chain (anvil), over WebSocket and HTTP, and its
refusals of a bad configuration."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest
from web3 import AsyncWeb3
from web3.providers import AsyncHTTPProvider

from anvil import anvil_fixture
from channel_node.chain import ChannelDepositClient, Sender
from channel_node.config import load_settings
from channel_node.node.assembly import build_node
from channel_node.signing import ChannelConfig, address_of_key, keccak256, sign_digest, voucher_digest
from channel_node.store import MemoryStore
from channel_node.wire.channel import payment_signature
from channel_node.wire.envelope import decode_header

VOUCHER_KEY = keccak256(b"serve test voucher key")
PRICE = 5_000


anvil = anvil_fixture("module")


@pytest.fixture
async def deployment(anvil):
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.http_url))
    deployer, receiver, payer = (await w3.eth.accounts)[:3]
    client = await ChannelDepositClient.deploy(w3, Sender.unlocked(deployer), poll_latency=0.05)
    config = ChannelConfig.create(payer, address_of_key(VOUCHER_KEY), receiver, None, 3600, 7)
    await client.deposit_eth(config, 10 * PRICE, sender=Sender.unlocked(payer))
    domain = await client.domain()
    yield w3, client, config, domain, receiver
    await w3.provider.disconnect()


def voucher(domain, config: ChannelConfig, amount: int, first: bool) -> str:
    from channel_node.signing import channel_id

    channel = channel_id(domain, config)
    signature = sign_digest(VOUCHER_KEY, voucher_digest(domain, channel, amount))
    contract = "0x" + domain.verifying_contract.hex()
    return payment_signature(f"eip155:{domain.chain_id}", contract, channel, amount, signature, config=config if first else None)


def write_config(path, rpc_url: str, contract: str, receiver: str, site) -> None:
    path.write_text(
        f'rpc_url = "{rpc_url}"\ncontract = "{contract}"\nreceiver = "{receiver}"\n'
        f'database = "{path.parent / "node.db"}"\nconfirmations = 2\n\n'
        f'[paywall]\ncontent_dir = "{site}"\nfree = ["/"]\n\n'
        f'[[paywall.prices]]\npath = "/articles/*"\nprice = {PRICE}\n'
    )


async def run_cli(*args: str, env: dict | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "channel_node.cli.main", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip


async def test_serve_over_websocket_pays_after_confirmations(anvil, deployment, tmp_path):
    w3, client, config, domain, receiver = deployment
    site = tmp_path / "site"
    (site / "articles").mkdir(parents=True)
    (site / "articles" / "a.html").write_text("paid words")
    toml = tmp_path / "node.toml"
    write_config(toml, anvil.ws_url, client.address, receiver, site)
    process = await run_cli("serve", "--config", str(toml), "--port", "0")
    try:
        seen = []
        while not (line := (await asyncio.wait_for(process.stdout.readline(), 30)).decode()).startswith("channel-node serving"):
            assert line, "".join(seen)
            seen.append(line)
        assert any("no claim_key" in l for l in seen), "the operator is told the node cannot defend channels"
        base = line.split("serving ")[1].split()[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/articles/a.html") as offer:
                assert offer.status == 402
                assert (await offer.json())["accepts"][0]["network"] == f"eip155:{domain.chain_id}"
            headers = {"PAYMENT-SIGNATURE": voucher(domain, config, PRICE, first=True)}
            async with http.get(base + "/articles/a.html", headers=headers) as early:
                # The deposit is in the head block only: with 2 confirmations the node does not know it yet.
                assert (await early.json())["error"] == "channel_unknown"
            anvil.mine(1)
            await asyncio.sleep(5.1)  # the node remembers an unknown channel for 5 s
            async with http.get(base + "/articles/a.html", headers=headers) as paid:
                assert paid.status == 200 and await paid.text() == "paid words"
                assert decode_header(paid.headers["PAYMENT-RESPONSE"])["chargedTotal"] == str(PRICE)
    finally:
        process.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(process.communicate(), 20))[0].decode()
    assert process.returncode == 0, output


async def test_node_over_http_json_rpc(anvil, deployment, tmp_path):
    w3, client, config, domain, receiver = deployment
    anvil.mine(1)
    site = tmp_path / "site"
    (site / "articles").mkdir(parents=True)
    (site / "articles" / "b.html").write_text("more words")
    settings = load_settings(
        rpc_url=anvil.http_url, contract=client.address, receiver=receiver, confirmations=2,
        paywall={"content_dir": site, "prices": [{"path": "/articles/*", "price": PRICE}]},
    )  # fmt: skip
    node = await build_node(settings, w3, store=MemoryStore())
    from aiohttp.test_utils import TestClient, TestServer

    async with TestClient(TestServer(node.app)) as http:
        paid = await http.get("/articles/b.html", headers={"PAYMENT-SIGNATURE": voucher(domain, config, PRICE, True)})
        assert paid.status == 200 and await paid.text() == "more words"
        health = await (await http.get("/healthz")).json()
        assert health["chainId"] == domain.chain_id and health["status"] == "ok"
    await node.close()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"price": "0.5"}, "invalid configuration"),
        ({"rpc_url": "http://127.0.0.1:9"}, "cannot reach the chain"),
        ({"contract": "0x" + "12" * 20}, "no contract at"),
    ],
)
async def test_serve_refuses_a_bad_configuration_clearly(anvil, deployment, tmp_path, change, message):
    _, client, _, _, receiver = deployment
    (tmp_path / "site").mkdir()
    toml = tmp_path / "node.toml"
    write_config(toml, change.get("rpc_url", anvil.http_url), change.get("contract", client.address), receiver, tmp_path / "site")
    if "price" in change:
        toml.write_text(toml.read_text().replace(f"price = {PRICE}", f"price = {change['price']}"))
    process = await run_cli("serve", "--config", str(toml), "--port", "0")
    output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 2 and message in output, output
    assert "Traceback" not in output
