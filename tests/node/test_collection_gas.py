"""What collection costs, over the in-process chain (docs/economics.md, "Cost of collection"): a
defence against a payer's close is sent by the real sender, mined, and its receipt's gas lands on
its outbox row and, once, in the insights beside the revenue it collected."""

from __future__ import annotations

import pytest

from channel_node.amounts import ETH
from channel_node.chain import ChannelDepositClient
from channel_node.chain.outbox import GasSpent, OutboxSender
from channel_node.chain.watcher import Watcher
from channel_node.config import SettingsError, load_settings
from channel_node.insights import economics as econ
from channel_node.insights.recorder import Recorder
from channel_node.insights.schema import connect
from channel_node.node.runtime import PaymentRequest, Runtime
from channel_node.signing import Domain
from channel_node.store import OutboxStatus, Pin, SQLiteStore
from paywall_helpers import async_web3, start_node, write_site

PRICE = 1_000


async def test_a_defences_receipt_is_metered_on_its_row_and_in_the_insights(chain, deployed, parties, channels, tmp_path):
    w3 = async_web3(chain.tester)
    client = ChannelDepositClient(w3, deployed.address)
    store = SQLiteStore(tmp_path / "node.db")
    receiver = bytes.fromhex(parties.receiver.address[2:])
    await store.open(Pin(chain.chain_id, bytes.fromhex(deployed.address[2:]), receiver))
    clock = lambda: chain.tester.get_block_by_number("pending")["timestamp"]  # noqa: E731
    runtime = Runtime(store, Domain(chain.chain_id, deployed.address), receiver, b"\0" * 20, None, close_margin=60,
                      clock=clock)  # fmt: skip
    watcher = Watcher(w3, client, runtime, store, confirmations=1, defence_interval=0)
    sender = OutboxSender(w3, client, store, parties.receiver.private_key, bump_after=3600)
    recorder = Recorder(tmp_path / "insights.db", flush_interval=3600, asset=ETH)
    await recorder.start()
    spent: list[GasSpent] = []

    def on_gas(gas: GasSpent) -> None:  # what node/assembly.py wires
        spent.append(gas)
        recorder.gas(gas.tx_hash, gas.kind, gas.gas_used, gas.gas_price, gas.rows, gas.at)

    sender.on_gas = on_gas
    try:
        config = channels.open_eth(10 * PRICE, channels.config(close_delay=3600))
        await watcher.poll()
        for n in (1, 2, 3):
            request = PaymentRequest(channels.id(config), n * PRICE, channels.signature(config, n * PRICE), f"/a{n}",
                                     PRICE, True)  # fmt: skip
            assert (await runtime.pay(request)).accepted
            recorder.unlock(f"/a{n}", PRICE, {}, channels.id(config), clock())
        channels.chain.transact(channels.contract.functions.requestClose(config.as_abi_tuple()), parties.payer.address)
        await watcher.poll()
        await sender.tick()  # sends the defence; eth-tester mines it at once
        await watcher.poll()  # the watcher may close the row before the sender looks again
        await sender.tick()
        await sender.tick()
        [row] = await store.outbox((OutboxStatus.DONE,))
        receipt = await w3.eth.get_transaction_receipt(row.tx_hash)
        assert (row.gas_used, row.gas_price) == (receipt["gasUsed"], receipt["effectiveGasPrice"])
        assert row.gas_used > 21_000 and row.gas_price > 0
        [gas] = spent
        assert gas.kind == "defence" and gas.wei == row.gas_used * row.gas_price
        await recorder.flush()
        conn = connect(tmp_path / "insights.db", readonly=True)
        try:
            now = int(clock())
            f = econ.figures(conn, "day", now - 86400, now + 3600, ETH)
        finally:
            conn.close()
        total = f["total"]
        assert total["gas_by_kind"]["defence"] == gas.wei and total["revenue"] == 3 * PRICE
        assert total["gas_percent"] == econ.share(gas.wei, 3 * PRICE)
    finally:
        await recorder.close()
        await store.close()


async def test_the_node_wires_its_sender_into_its_insights_with_the_configured_prices(chain, deployed, parties, tmp_path):
    settings = load_settings(
        contract=deployed.address, receiver=parties.receiver.address, database=tmp_path / "node.db", confirmations=1,
        claim_key="11" * 32, insights_database=tmp_path / "insights.db",
        economics={"eth_price": "3000.00", "gas_price_gwei": "0.05"},
        paywall={"content_dir": write_site(tmp_path / "site"), "prices": []},
    )  # fmt: skip
    running = await start_node(chain.tester, settings)
    try:
        node = running.node
        await node.insights.start()
        node.sender.on_gas(GasSpent(b"w" * 32, "close", 53_793, 10**9, 1, 1_767_225_600.0))
        await node.insights.flush()
        conn = connect(tmp_path / "insights.db", readonly=True)
        try:
            f = econ.figures(conn, "month", 1_767_225_600, 1_767_225_600 + 86400, ETH)
        finally:
            conn.close()
        assert f["total"]["gas_by_kind"]["close"] == 53_793 * 10**9
        assert (f["eth_price"], f["gas_price_gwei"]) == ("3000", "0.05"), "recorded from [economics]"
    finally:
        await node.insights.close()
        await running.stop()


def test_economics_prices_are_exact_decimal_text_or_refused():
    base = {"contract": "0x" + "11" * 20, "receiver": "0x" + "22" * 20, "paywall": {"content_dir": "/tmp"}}
    settings = load_settings(**base, economics={"eth_price": "3000.00", "gas_price_gwei": 2})
    assert (settings.economics.eth_price, settings.economics.gas_price_gwei) == ("3000.00", "2")
    assert load_settings(**base).economics.eth_price is None
    for wrong in ({"eth_price": 3000.5}, {"eth_price": "3e3"}, {"eth_price": "0"}, {"eth_price": "-1"},
                  {"gas_price_gwei": "0.0"}, {"eth_price": True}, {"eth": "1"}):  # fmt: skip
        with pytest.raises(SettingsError):
            load_settings(**base, economics=wrong)
