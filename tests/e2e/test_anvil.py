"""The chain side against a real node (Foundry's anvil): defence of a payer's close with the node
running and with the node down until halfway through the delay, reorgs within and beyond the
confirmation depth, a batched claim of 50 channels, a fee bump of a stuck transaction, and a
restart with a sent-but-unmined outbox row."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import pytest
from eth_account import Account
from web3 import AsyncWeb3
from web3.providers import AsyncHTTPProvider

from anvil import anvil_fixture
from channel_node.chain import ChannelDepositClient, Sender
from channel_node.chain.outbox import OutboxSender
from channel_node.chain.view import Web3ChainView
from channel_node.chain.watcher import Watcher
from channel_node.core import OperatorClaim
from channel_node.node.runtime import PaymentRequest, Runtime
from channel_node.node.settlement import SettlementPolicy
from channel_node.signing import ChannelConfig, address_of_key, channel_id, keccak256, sign_digest, voucher_digest
from channel_node.store import Pin, SQLiteStore

PRICE = 10**12
DELAY = 3600
CONFIRMATIONS = 2
DEFENCE_RUNS = int(os.environ.get("ANVIL_DEFENCE_RUNS", "3"))


anvil = anvil_fixture()


@dataclass
class World:
    anvil: object
    w3: AsyncWeb3
    client: ChannelDepositClient
    receiver_key: bytes
    receiver: str
    payer: str
    voucher_key: bytes
    salt: int = 0

    def config(self, close_delay: int = DELAY) -> ChannelConfig:
        self.salt += 1
        return ChannelConfig.create(self.payer, address_of_key(self.voucher_key), self.receiver, None, close_delay, self.salt)

    async def open(self, amount: int = 100 * PRICE, close_delay: int = DELAY) -> ChannelConfig:
        config = self.config(close_delay)
        await self.client.deposit_eth(config, amount, sender=Sender.unlocked(self.payer))
        return config

    def signature(self, domain, config: ChannelConfig, amount: int) -> bytes:
        return sign_digest(self.voucher_key, voucher_digest(domain, channel_id(domain, config), amount))

    async def state(self, config: ChannelConfig):
        return await self.client.get_channel(config)

    def advance(self, seconds: int) -> None:
        self.anvil.rpc("evm_increaseTime", [seconds])
        self.anvil.mine(1)


@pytest.fixture
async def world(anvil):
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.http_url))
    accounts = await w3.eth.accounts
    receiver_key = keccak256(b"anvil test receiver")
    receiver = Account.from_key(receiver_key).address
    anvil.rpc("anvil_setBalance", [receiver, hex(10**20)])
    client = await ChannelDepositClient.deploy(w3, Sender.unlocked(accounts[0]), poll_latency=0.02)
    yield World(anvil, w3, client, receiver_key, receiver, accounts[1], keccak256(b"anvil voucher key"))
    await w3.provider.disconnect()


@dataclass
class Node:
    store: SQLiteStore
    runtime: Runtime
    watcher: Watcher
    sender: OutboxSender

    async def sync(self) -> None:
        await self.watcher.poll()
        await self.sender.tick()

    async def pay(self, world: World, config: ChannelConfig, amount: int, resource: str):
        domain = self.runtime.domain
        request = PaymentRequest(
            channel_id(domain, config), amount, world.signature(domain, config, amount), resource, PRICE, True, config=config
        )
        return await self.runtime.pay(request)


async def start_node(world: World, path, bump_after: float = 3600) -> Node:
    domain = await world.client.domain()
    store = SQLiteStore(path)
    receiver = bytes.fromhex(world.receiver[2:])
    await store.open(Pin(domain.chain_id, domain.verifying_contract, receiver))
    view = Web3ChainView(world.w3, world.client.address, CONFIRMATIONS)
    runtime = Runtime(store, domain, receiver, b"\0" * 20, view, close_margin=60, clock=lambda: world.now)
    watcher = Watcher(world.w3, world.client, runtime, store, CONFIRMATIONS, defence_interval=0)
    sender = OutboxSender(world.w3, world.client, store, world.receiver_key, bump_after=bump_after)
    return Node(store, runtime, watcher, sender)


async def chain_now(world: World) -> int:
    return (await world.w3.eth.get_block("latest"))["timestamp"]


async def settle_until(node: Node, world: World, predicate, rounds: int = 10) -> None:
    for _ in range(rounds):
        await node.sync()
        world.anvil.mine(1)  # confirmations: the claim's block needs one on top
        if await predicate():
            await node.watcher.poll()
            return
    raise AssertionError("condition not reached")


@pytest.mark.parametrize("run", range(DEFENCE_RUNS))
async def test_close_requested_while_running_is_defended_before_the_deadline(world, tmp_path, run):
    world.now = await chain_now(world)
    node = await start_node(world, tmp_path / "node.db")
    config = await world.open()
    world.anvil.mine(1)
    assert (await node.pay(world, config, 3 * PRICE, "/a")).accepted
    await world.client.request_close(config, sender=Sender.unlocked(world.payer))
    deadline = (await world.state(config)).close_deadline
    await settle_until(node, world, lambda: _claimed(world, config, PRICE))
    assert await chain_now(world) < deadline, "answered before the deadline"
    assert (await world.state(config)).claimed == PRICE, "the defence claims what was charged, not the voucher of 3"
    assert await node.store.outbox() == []
    await node.store.close()


@pytest.mark.parametrize("run", range(DEFENCE_RUNS))
async def test_close_requested_while_the_node_was_down_is_defended_after_restart(world, tmp_path, run):
    world.now = await chain_now(world)
    node = await start_node(world, tmp_path / "node.db")
    config = await world.open()
    world.anvil.mine(1)
    assert (await node.pay(world, config, 5 * PRICE, "/a")).accepted
    await node.watcher.poll()
    await node.store.close()  # down

    await world.client.request_close(config, sender=Sender.unlocked(world.payer))
    deadline = (await world.state(config)).close_deadline
    world.advance(DELAY // 2)  # back halfway through the close delay
    node = await start_node(world, tmp_path / "node.db")
    await settle_until(node, world, lambda: _claimed(world, config, PRICE))
    assert await chain_now(world) < deadline
    assert (await world.state(config)).claimed == PRICE, "charged, not the voucher of 5"
    await node.store.close()


async def _claimed(world: World, config: ChannelConfig, amount: int) -> bool:
    return (await world.state(config)).claimed >= amount


async def test_reorgs_within_the_depth_are_invisible_and_deeper_ones_resync(world, tmp_path):
    world.now = await chain_now(world)
    node = await start_node(world, tmp_path / "node.db")
    config = await world.open()
    world.anvil.mine(10)
    await node.watcher.poll()
    cursor = await node.store.cursor()
    # A one-block reorg of the head: the node reads only confirmed blocks, so nothing changes.
    world.anvil.rpc("anvil_reorg", [1, []])
    await node.watcher.poll()
    assert node.watcher.stats.resyncs == 0
    # A reorg deeper than the confirmations replaces the block of the node's cursor.
    world.anvil.rpc("anvil_reorg", [4, []])
    await node.watcher.poll()
    assert node.watcher.stats.resyncs == 1 and (await node.store.cursor()).block_hash != cursor.block_hash
    assert (await node.pay(world, config, PRICE, "/a")).accepted, "the channel survived: its deposit is older"
    await node.store.close()


async def test_fifty_channels_claimed_in_one_batch(world, tmp_path):
    world.now = await chain_now(world)
    node = await start_node(world, tmp_path / "node.db")
    configs = [await world.open(10 * PRICE) for _ in range(50)]
    world.anvil.mine(1)
    for config in configs:
        assert (await node.pay(world, config, 2 * PRICE, "/a")).accepted
    assert await SettlementPolicy(node.runtime, node.store).tick(0) == (50, 0)
    await settle_until(node, world, lambda: _claimed(world, configs[-1], PRICE))
    assert node.sender.stats.sent == 1
    assert [(await world.state(c)).claimed for c in configs] == [PRICE] * 50, "charged, not the vouchers of 2"
    await node.sender.tick()  # meters the batch if the watcher closed its rows first (docs/economics.md)
    rows = await node.store.outbox(("done",))
    receipt = await world.w3.eth.get_transaction_receipt(rows[0].tx_hash)
    assert sum(r.gas_used for r in rows) == receipt["gasUsed"], "the batch's gas, shared exactly over its 50 rows"
    assert {r.gas_price for r in rows} == {receipt["effectiveGasPrice"]}
    await node.store.close()


async def test_a_stuck_claim_is_replaced_with_higher_fees(world, tmp_path):
    world.now = await chain_now(world)
    node = await start_node(world, tmp_path / "node.db", bump_after=0.2)
    config = await world.open()
    world.anvil.mine(1)
    assert (await node.pay(world, config, PRICE, "/a")).accepted
    await node.watcher.poll()
    world.anvil.rpc("evm_setAutomine", [False])
    try:
        await node.runtime.operator(channel_id(node.runtime.domain, config), OperatorClaim())
        await node.sender.tick()
        [first] = await node.store.outbox()
        await asyncio.sleep(0.3)
        await node.sender.tick()  # not mined after bump_after: replaced
        [second] = await node.store.outbox()
        assert second.nonce == first.nonce and second.tx_hash != first.tx_hash
        assert second.max_fee >= first.max_fee * 1125 // 1000 and second.priority_fee > first.priority_fee
        assert node.sender.stats.bumped == 1
    finally:
        world.anvil.rpc("evm_setAutomine", [True])
    world.anvil.mine(2)
    receipt = await world.w3.eth.get_transaction_receipt(second.tx_hash)
    assert receipt["status"] == 1 and (await world.state(config)).claimed == PRICE
    await node.watcher.poll()
    assert await node.store.outbox() == []
    await node.sender.tick()  # the replacement that was mined is metered; the lost one is not looked for again
    await node.sender.tick()
    [done] = await node.store.outbox(("done",))
    assert done.gas_used == receipt["gasUsed"] and done.gas_price == receipt["effectiveGasPrice"]
    assert node.sender.stats.gas_spent_wei == receipt["gasUsed"] * receipt["effectiveGasPrice"], "metered once"
    await node.store.close()


async def test_restart_with_a_sent_but_unmined_row_lands_the_same_transaction(world, tmp_path):
    world.now = await chain_now(world)
    node = await start_node(world, tmp_path / "node.db")
    config = await world.open()
    world.anvil.mine(1)
    assert (await node.pay(world, config, PRICE, "/a")).accepted
    await node.watcher.poll()
    world.anvil.rpc("evm_setAutomine", [False])
    await node.runtime.operator(channel_id(node.runtime.domain, config), OperatorClaim())
    await node.sender.tick()
    [row] = await node.store.outbox()
    world.anvil.rpc("anvil_dropAllTransactions", [])  # the node dies and its transaction is lost
    await node.store.close()
    world.anvil.rpc("evm_setAutomine", [True])

    node = await start_node(world, tmp_path / "node.db")
    await node.sender.tick()  # re-broadcasts the recorded bytes
    world.anvil.mine(2)
    receipt = await world.w3.eth.get_transaction_receipt(row.tx_hash)
    assert receipt["status"] == 1 and node.sender.stats.sent == 0
    await node.watcher.poll()
    assert await node.store.outbox() == []
    await node.store.close()


async def test_a_node_over_websocket_wakes_on_new_heads(world, tmp_path):
    from web3 import WebSocketProvider

    from channel_node.config import load_settings
    from channel_node.node.assembly import build_node
    from paywall_helpers import write_site

    ws = AsyncWeb3(WebSocketProvider(world.anvil.ws_url))
    await ws.provider.connect()
    settings = load_settings(
        rpc_url=world.anvil.ws_url, contract=world.client.address, receiver=world.receiver, database=tmp_path / "n.db",
        confirmations=CONFIRMATIONS, poll_interval=60, claim_key=world.receiver_key.hex(),
        paywall={"content_dir": write_site(tmp_path / "site"), "prices": []},
    )  # fmt: skip
    node = await build_node(settings, ws)
    await node.start()
    try:
        await asyncio.sleep(0.5)  # the first poll places the cursor; the next one waits 60 s unless woken
        config = await world.open()
        world.anvil.mine(1)
        cid = channel_id(node.domain, config)
        for _ in range(50):
            if cid in await node.store.channel_ids():
                break
            await asyncio.sleep(0.1)
        assert cid in await node.store.channel_ids(), "a new head woke the watcher long before its 60 s poll"
    finally:
        await node.close()
        await ws.provider.disconnect()


async def test_a_reader_wallet_buys_articles_and_leaves_cooperatively_on_anvil(world, tmp_path):
    from aiohttp.test_utils import TestServer

    from channel_node.client import PayingSession, Policy, Wallet, WalletStore
    from channel_node.config import load_settings
    from channel_node.node.assembly import build_node
    from paywall_helpers import ARTICLES, write_site

    settings = load_settings(
        rpc_url=world.anvil.http_url, contract=world.client.address, receiver=world.receiver, database=tmp_path / "n.db",
        confirmations=1, claim_key=world.receiver_key.hex(),
        paywall={"content_dir": write_site(tmp_path / "site"), "prices": [{"path": "/articles/*", "price": PRICE}]},
    )  # fmt: skip
    node = await build_node(settings, world.w3)
    server = TestServer(node.app)
    await server.start_server()
    reader_key = keccak256(b"anvil reader main key")
    reader = Account.from_key(reader_key).address
    world.anvil.rpc("anvil_setBalance", [reader, hex(10**20)])
    store = WalletStore(tmp_path / "wallet.db")
    wallet = Wallet(world.w3, reader_key, store, Policy(deposit_multiple=10, topup_below=2))
    try:
        async with PayingSession(wallet) as session:
            for path, text in ARTICLES.items():
                result = await session.get(str(server.make_url(path)))
                assert result.status == 200 and result.text() == text and result.charged == PRICE
            again = await session.get(str(server.make_url("/articles/1.html")))
            assert again.status == 200 and again.charged == 0
        [record] = wallet.channels()
        assert (record.charged, record.deposited) == (5 * PRICE, 10 * PRICE)
        before = await world.w3.eth.get_balance(reader)
        done = await wallet.close_via_node(record.channel_id, str(server.make_url("/")))
        fee = done.tx.gas_used * done.tx.effective_gas_price
        assert (done.refunded, done.claimed) == (5 * PRICE, 5 * PRICE), "the node was paid what it charged"
        assert await world.w3.eth.get_balance(reader) - before == 5 * PRICE - fee, "exactly the unspent credit, at once"
    finally:
        store.close()
        await server.close()
        await node.close()
