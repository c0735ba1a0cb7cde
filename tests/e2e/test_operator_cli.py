"""`channel-node channels ...` and `status`: through a running node's admin API, and directly on
the database and chain when the node is stopped (against anvil)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from eth_account import Account
from web3 import AsyncWeb3
from web3.providers import AsyncHTTPProvider

from anvil import start_anvil
from channel_node.chain import ChannelDepositClient, Sender
from channel_node.config import load_settings
from channel_node.node.assembly import build_node
from channel_node.node.runtime import PaymentRequest
from channel_node.signing import ChannelConfig, address_of_key, channel_id, keccak256, sign_digest, voucher_digest
from paywall_helpers import PRICE, Payer, async_web3, write_site

TOKEN = "operator-cli-test-token"


async def cli(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "channel_node.cli.main", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(f"channel-node {' '.join(args)} did not finish: {err.decode()[-2000:]}") from None
    return process.returncode, out.decode(), err.decode()


async def test_commands_through_the_admin_api(chain, deployed, parties, channels, tmp_path):
    settings = load_settings(
        contract=deployed.address, receiver=parties.receiver.address, database=tmp_path / "node.db",
        confirmations=1, admin_token=TOKEN, claim_key=parties.receiver.private_key.hex(),
        paywall={"content_dir": write_site(tmp_path / "site"), "prices": [{"path": "/articles/*", "price": PRICE}]},
    )  # fmt: skip
    node = await build_node(settings, async_web3(chain.tester))
    admin = TestServer(node.admin_app)
    await admin.start_server()
    url = str(admin.make_url("")).rstrip("/")
    env = {"CHANNEL_NODE_ADMIN_TOKEN": TOKEN}
    try:
        payer = Payer(channels, channels.open_eth(10 * PRICE, channels.config()))
        request = PaymentRequest(payer.id, 2 * PRICE, channels.signature(payer.config, 2 * PRICE), "/a", PRICE, True, config=payer.config)
        assert (await node.runtime.pay(request)).accepted

        code, out, err = await cli("channels", "list", "--admin-url", url, "--json", env=env)
        assert code == 0, err
        [row] = json.loads(out)
        assert (row["channelId"], row["charged"], row["unclaimed"]) == ("0x" + payer.id.hex(), str(PRICE), str(PRICE))
        code, out, _ = await cli("channels", "show", row["channelId"], "--admin-url", url, "--json", env=env)
        assert [c["resource"] for c in json.loads(out)["charges"]] == ["/a"]
        code, out, _ = await cli("channels", "claim", "--all", "--min", f"{2 * PRICE}wei", "--admin-url", url, "--json", env=env)
        assert json.loads(out)["queued"] == 0, "below --min"
        code, out, _ = await cli("channels", "claim", row["channelId"], "--admin-url", url, "--json", env=env)
        assert code == 0 and json.loads(out)["kind"] == "claim"
        await node.sender.tick()
        await node.watcher.poll()
        assert channels.state(payer.config)[1] == PRICE, "what was charged, not the voucher of two"
        code, out, _ = await cli("status", "--admin-url", url, "--json", env=env)
        assert json.loads(out)["totals"]["revenue"] == str(PRICE)
        code, _, err = await cli("channels", "list", "--admin-url", url, env={"CHANNEL_NODE_ADMIN_TOKEN": "wrong"})
        assert code == 2 and "unauthorized" in err and "wrong" not in err
        code, _, err = await cli("channels", "list", "--admin-url", "http://127.0.0.1:9", env=env)
        assert code == 2 and "no node answered" in err
    finally:
        await admin.close()
        await node.close()


@pytest.fixture
def anvil():
    chain = start_anvil()
    yield chain
    chain.stop()


async def test_direct_mode_on_a_stopped_node_settles_its_channels(anvil, tmp_path):
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.http_url))
    deployer, payer = (await w3.eth.accounts)[:2]
    receiver_key = keccak256(b"operator cli receiver")
    receiver = Account.from_key(receiver_key).address
    anvil.rpc("anvil_setBalance", [receiver, hex(10**20)])
    client = await ChannelDepositClient.deploy(w3, Sender.unlocked(deployer), poll_latency=0.02)
    voucher_key = keccak256(b"operator cli voucher")
    configs = [ChannelConfig.create(payer, address_of_key(voucher_key), receiver, None, 3600, salt) for salt in (1, 2)]
    for config in configs:
        await client.deposit_eth(config, 10 * PRICE, sender=Sender.unlocked(payer))
    anvil.mine(1)
    toml = tmp_path / "node.toml"
    toml.write_text(
        f'rpc_url = "{anvil.http_url}"\ncontract = "{client.address}"\nreceiver = "{receiver}"\n'
        f'database = "{tmp_path / "node.db"}"\nclaim_key = "{receiver_key.hex()}"\nwatch_from_block = 0\nconfirmations = 1\n'
        f'[paywall]\ncontent_dir = "{write_site(tmp_path / "site")}"\n'
        f'[[paywall.prices]]\npath = "/articles/*"\nprice = {PRICE}\n'
    )
    from channel_node.config import load_settings as load

    node = await build_node(load(toml), w3)
    domain = await client.domain()
    for n, config in enumerate(configs, start=1):
        cid = channel_id(domain, config)
        signature = sign_digest(voucher_key, voucher_digest(domain, cid, n * PRICE))
        assert (await node.runtime.pay(PaymentRequest(cid, n * PRICE, signature, "/a", PRICE, True, config=config))).accepted
    await node.close()  # the node is stopped

    code, out, err = await cli("channels", "list", "--config", str(toml), "--json")
    assert code == 0, err
    assert sorted(int(r["unclaimed"]) for r in json.loads(out)) == [PRICE, PRICE]
    code, out, err = await cli("channels", "settle", "--config", str(toml), "--json", "--wait", "40")
    assert code == 0, err
    assert json.loads(out) == {"queued": 2, "open": 0, "abandoned": 0}
    assert [(await client.get_channel(c)).claimed for c in configs] == [PRICE, PRICE], "charged, not the vouchers"
    await w3.provider.disconnect()


async def test_close_all_makes_the_same_choice_through_the_api_and_on_a_stopped_node(anvil, tmp_path):
    """Two nodes over the same chain and the same vouchers: `channels close --all` through one's admin
    API and directly on the other, stopped, close the same channels for the same amounts and skip the
    same ones: the voucherless channel (nothing to close with) and the one already closing."""
    from channel_node.node.operations import Operations

    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.http_url))
    deployer, payer = (await w3.eth.accounts)[:2]
    receiver_key = keccak256(b"operator cli receiver")
    receiver = Account.from_key(receiver_key).address
    client = await ChannelDepositClient.deploy(w3, Sender.unlocked(deployer), poll_latency=0.02)
    voucher_key = keccak256(b"operator cli voucher")
    paid, credit, voucherless, closing = configs = [
        ChannelConfig.create(payer, address_of_key(voucher_key), receiver, None, 3600, salt) for salt in (11, 12, 13, 14)
    ]
    for config in configs:
        await client.deposit_eth(config, 10 * PRICE, sender=Sender.unlocked(payer))
    anvil.mine(1)
    domain = await client.domain()
    site = write_site(tmp_path / "site")

    def toml(name: str, extra: str = "") -> str:
        path = tmp_path / f"{name}.toml"
        path.write_text(
            f'rpc_url = "{anvil.http_url}"\ncontract = "{client.address}"\nreceiver = "{receiver}"\n'
            f'database = "{tmp_path / name}.db"\nclaim_key = "{receiver_key.hex()}"\nwatch_from_block = 0\n'
            f'confirmations = 1\n{extra}[paywall]\ncontent_dir = "{site}"\n[[paywall.prices]]\npath = "/articles/*"\nprice = {PRICE}\n'
        )
        return str(path)

    answers = {}
    for name in ("api", "direct"):
        path = toml(name, f'admin_token = "{TOKEN}"\n' if name == "api" else "")
        node = await build_node(load_settings(Path(path)), w3)
        await node.watcher.poll()  # learns all four channels, the voucherless one included
        for config, voucher in ((paid, PRICE), (credit, 2 * PRICE), (closing, PRICE)):
            cid = channel_id(domain, config)
            signature = sign_digest(voucher_key, voucher_digest(domain, cid, voucher))
            assert (await node.runtime.pay(PaymentRequest(cid, voucher, signature, "/a", PRICE, True))).accepted
        assert (await Operations(node.runtime, node.store).one("close", channel_id(domain, closing))).kind == "close"
        if name == "api":
            admin = TestServer(node.admin_app)
            await admin.start_server()
            url = str(admin.make_url("")).rstrip("/")
            code, out, err = await cli("channels", "close", "--all", "--admin-url", url, "--json",
                                       env={"CHANNEL_NODE_ADMIN_TOKEN": TOKEN})  # fmt: skip
            await admin.close()
            await node.close()
        else:
            await node.close()  # the node is stopped
            code, out, err = await cli("channels", "close", "--all", "--config", path, "--json")
        assert code == 0, err
        answers[name] = json.loads(out)
    assert answers["api"] == answers["direct"]
    chosen = {c["channelId"]: c["amount"] for c in answers["api"]["channels"]}
    assert chosen == {"0x" + channel_id(domain, paid).hex(): str(PRICE), "0x" + channel_id(domain, credit).hex(): str(PRICE)}
    assert answers["api"]["rejected"] == [], "the voucherless and the closing channel are not even tried"
    await w3.provider.disconnect()
