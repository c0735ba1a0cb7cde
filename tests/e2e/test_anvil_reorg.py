"""The reported reorg on a real chain (Foundry's anvil, `anvil_reorg`), through the node as `serve`
builds it: a channel first learnt from its first voucher (read at the confirmation depth) loses its
deposit to a reorg before the watcher's cursor reaches that block, at depth 1 with one confirmation
and at depth 2 with the default two. Afterwards no voucher is served against it, the admin API shows
the chain's figures, the charge made before stays recorded, and a deposit made again on the new
branch is learnt again (docs/security.md, "Reorganisations")."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from channel_node.chain import Sender
from channel_node.config import load_settings
from channel_node.node.assembly import build_node
from channel_node.node.runtime import PaymentRequest
from channel_node.server.admin import create_admin_app
from channel_node.signing import channel_id
from paywall_helpers import write_site
from test_anvil import PRICE, World, anvil, world  # noqa: F401 (fixtures)

TOKEN = "reorg-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("confirmations", [1, 2])
async def test_a_deposit_removed_by_a_reorg_after_the_first_voucher_is_no_longer_trusted(
    world: World, tmp_path, confirmations
):
    depth = confirmations
    settings = load_settings(
        rpc_url=world.anvil.http_url, contract=world.client.address, receiver=world.receiver, database=tmp_path / "n.db",
        confirmations=confirmations, admin_token=TOKEN, claim_key=world.receiver_key.hex(),
        paywall={"content_dir": write_site(tmp_path / "site"), "prices": [{"path": "/articles/*", "price": PRICE}]},
    )  # fmt: skip
    node = await build_node(settings, world.w3)
    admin = TestClient(TestServer(create_admin_app(node)))
    await admin.start_server()
    try:
        await node.watcher.poll()  # the cursor sits below the deposit to come
        config = await world.open(10 * PRICE)  # mined in a block of its own
        world.anvil.mine(confirmations - 1)  # now exactly at the confirmation depth
        cid = channel_id(node.domain, config)
        spent = 0

        async def pay():
            nonlocal spent
            amount = spent + PRICE
            request = PaymentRequest(
                cid, amount, world.signature(node.domain, config, amount), f"/articles/{amount}.html", PRICE, True,
                config=config,
            )  # fmt: skip
            outcome = await node.runtime.pay(request)
            spent += PRICE if outcome.accepted else 0
            return outcome

        assert (await pay()).accepted, "the first voucher, against the deposit read at the confirmation depth"
        assert node.watcher.stats.cursor < (await world.w3.eth.block_number) - confirmations + 1
        world.anvil.rpc("anvil_reorg", [depth, []])  # the deposit's block is replaced by an empty one
        assert (await world.state(config)).deposited == 0
        await node.watcher.poll()
        for _ in range(3):
            refused = await pay()
            assert not refused.accepted and refused.effect.code.value == "exceeds_deposit"
        response = await admin.get(f"/admin/channels/0x{cid.hex()}", headers=AUTH)
        shown = await response.json()
        assert response.status == 200 and shown["deposited"] == "0", "the admin API no longer shows the deposit"
        assert [c["amount"] for c in shown["charges"]] == [str(PRICE)], "the charge made before stays recorded"

        # The payer deposits again on the new branch: learnt again once confirmed.
        await world.client.deposit_eth(config, 10 * PRICE, sender=Sender.unlocked(world.payer))
        world.anvil.mine(confirmations)
        await node.watcher.poll()
        await node.watcher.poll()
        response = await admin.get(f"/admin/channels/0x{cid.hex()}", headers=AUTH)
        assert (await response.json())["deposited"] == str(10 * PRICE)
        assert (await pay()).accepted
    finally:
        await admin.close()
        await node.close()


@pytest.mark.parametrize("confirmations", [1, 2])
async def test_a_deposit_reduced_by_a_reorg_is_lowered_and_the_smaller_one_sold_against(
    world: World, tmp_path, confirmations
):
    """The winning branch carries the payer's deposit again, smaller and one block higher (anvil
    mines the given transaction into the new blocks): the node lowers the figure to it."""
    from channel_node.chain.view import Web3ChainView
    from channel_node.chain.watcher import Watcher
    from channel_node.node.runtime import Runtime
    from channel_node.store import Pin, SQLiteStore

    domain = await world.client.domain()
    store = SQLiteStore(tmp_path / "node.db")
    receiver = bytes.fromhex(world.receiver[2:])
    await store.open(Pin(domain.chain_id, domain.verifying_contract, receiver))
    world.now = (await world.w3.eth.get_block("latest"))["timestamp"]
    view = Web3ChainView(world.w3, world.client.address, confirmations)
    runtime = Runtime(store, domain, receiver, b"\0" * 20, view, close_margin=60, clock=lambda: world.now)
    watcher = Watcher(world.w3, world.client, runtime, store, confirmations, defence_interval=3600)
    try:
        await watcher.poll()
        config = await world.open(10 * PRICE)
        world.anvil.mine(confirmations - 1)
        cid = channel_id(domain, config)

        async def pay(amount: int, resource: str):
            signature = world.signature(domain, config, amount)
            return await runtime.pay(PaymentRequest(cid, amount, signature, resource, PRICE, True, config=config))

        assert (await pay(PRICE, "/a")).accepted
        calldata = world.client.contract.encode_abi("depositEth", [config.as_abi_tuple()])
        smaller = {
            "from": world.payer, "to": world.client.address, "value": hex(3 * PRICE), "data": calldata, "gas": hex(300_000)
        }
        world.anvil.rpc("anvil_reorg", [confirmations, [[smaller, confirmations - 1]]])
        assert (await world.state(config)).deposited == 3 * PRICE
        world.anvil.mine(confirmations)  # the smaller deposit is confirmed now
        world.now += 10
        await watcher.poll()
        await watcher.poll()
        assert (await store.load_channel(cid)).state.deposited == 3 * PRICE
        assert not (await pay(4 * PRICE, "/b")).accepted, "above the deposit that is left"
        assert (await pay(2 * PRICE, "/c")).accepted
        assert await store.anchored_channels() == []
    finally:
        await store.close()
