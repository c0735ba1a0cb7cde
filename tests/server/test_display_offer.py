"""A node whose asset carries a display form (`[paywall.display]`, docs/amounts.md "Display forms"):
the offer's `extra.display` names it, the paywall page reads `2¢`, and `channel-node report` shows
the revenue the same way; the wire's amounts stay base units."""

from __future__ import annotations

import aiohttp
import pytest

from channel_node.cli.main import main
from channel_node.wire.envelope import decode_header
from contract_helpers import deploy_test_token
from paywall_helpers import Payer, node_settings, start_node, write_site

CENT = 10**16  # TestToken has 18 decimals: a hundredth of a token
PRICE = 2 * CENT


@pytest.fixture
async def shown_node(chain, deployed, parties, tmp_path):
    token = deploy_test_token(chain)
    settings = node_settings(
        deployed.address, parties.receiver.address, tmp_path / "node.db", token=token.address,
        content_dir=write_site(tmp_path / "site"),
        prices=[{"path": "/articles/*", "price": PRICE, "description": "an article"}],
        display={"symbol": "$", "cents_below": "0.10"},
    )  # fmt: skip
    settings = settings.model_copy(update={"insights_database": tmp_path / "insights.db"})
    running = await start_node(chain.tester, settings)
    assert running.node.insights is not None
    await running.node.insights.start()  # the recorder alone: no watcher needed here
    yield running, token
    await running.stop()


async def test_the_offer_page_and_report_show_the_display_form(shown_node, chain, channels, parties, tmp_path, capsys):
    running, token = shown_node
    response = await running.client.get("/articles/1.html", headers={"Accept": "text/html"})
    assert response.status == 402
    accepts = decode_header(response.headers["PAYMENT-REQUIRED"])["accepts"][0]
    assert accepts["amount"] == str(PRICE), "the wire keeps base units"
    assert accepts["extra"]["display"] == {"symbol": "$", "centsBelow": str(10 * CENT), "decimals": 18, "shown": 2}
    page = await response.text()
    assert '<strong id="channel-price">2¢</strong>' in page and "Unlock for 2¢" in page

    # One paid unlock, then the report reads the revenue in the same form.
    assert chain.transact(token.functions.mint(parties.payer.address, 10**20), parties.deployer.address)["status"] == 1
    config = channels.config(token=token.address)
    assert chain.transact(token.functions.approve(channels.contract.address, 10**18), parties.payer.address)["status"] == 1
    assert chain.transact(channels.contract.functions.depositToken(config.as_abi_tuple(), 10**18), parties.payer.address)["status"] == 1
    payer = Payer(channels, config)
    paid = await running.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})
    assert paid.status == 200, await paid.text()
    await running.stop()
    capsys.readouterr()
    assert main(["report", "--insights", str(tmp_path / "insights.db"), "--since", "30d"]) == 0
    out = capsys.readouterr().out
    assert "2¢" in out, out


async def test_a_node_without_a_form_sends_none(chain, deployed, parties, tmp_path):
    settings = node_settings(deployed.address, parties.receiver.address, tmp_path / "node.db",
                             content_dir=write_site(tmp_path / "site"))  # fmt: skip
    running = await start_node(chain.tester, settings)
    try:
        async with aiohttp.ClientSession() as plain, plain.get(str(running.client.make_url("/articles/1.html"))) as response:
            assert "display" not in decode_header(response.headers["PAYMENT-REQUIRED"])["accepts"][0]["extra"]
    finally:
        await running.stop()
