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
from channel_node.node import build_node
from channel_node.runtime import PaymentRequest
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
