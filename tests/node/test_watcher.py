"""The chain side over the in-process chain: the watcher feeds confirmed logs into the core, a
payer's close is defended by a claim from the durable outbox, with the node running and after
downtime, and a restart re-sends a transaction that was recorded but never broadcast."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from channel_node.chain import ChannelDepositClient
from channel_node.chain.outbox import OutboxSender
from channel_node.chain.watcher import Watcher
from channel_node.core import ContractSendClaim, OperatorClaim
from channel_node.node.runtime import PaymentRequest, Runtime
from channel_node.signing import Domain
from channel_node.store import ChannelWrite, Cursor, Pin, SQLiteStore
from paywall_helpers import async_web3

PRICE = 1_000
HOUR = 3600


@dataclass
class NodeParts:
    store: SQLiteStore
    runtime: Runtime
    watcher: Watcher
    sender: OutboxSender

    async def sync(self) -> None:
        """One round of what the node's background tasks do: follow the chain, send, follow again."""
        await self.watcher.poll()
        await self.sender.tick()
        await self.watcher.poll()


@pytest.fixture
async def make_node(chain, deployed, parties, tmp_path):
    opened: list[NodeParts] = []

    async def make() -> NodeParts:
        w3 = async_web3(chain.tester)
        client = ChannelDepositClient(w3, deployed.address)
        domain = Domain(chain.chain_id, deployed.address)
        store = SQLiteStore(tmp_path / "node.db")
        receiver = bytes.fromhex(parties.receiver.address[2:])
        await store.open(Pin(chain.chain_id, bytes.fromhex(deployed.address[2:]), receiver))
        runtime = Runtime(store, domain, receiver, b"\0" * 20, None, close_margin=60, clock=lambda: chain_time(chain))
        watcher = Watcher(w3, client, runtime, store, confirmations=1, defence_interval=0)
        sender = OutboxSender(w3, client, store, parties.receiver.private_key, bump_after=3600)
        parts = NodeParts(store, runtime, watcher, sender)
        opened.append(parts)
        return parts

    yield make
    for parts in opened:  # closing twice is harmless: tests close stores to simulate a stop
        await parts.store.close()


def chain_time(chain) -> int:
    return chain.tester.get_block_by_number("pending")["timestamp"]


async def pay(node: NodeParts, channels, config, amount: int, resource: str):
    request = PaymentRequest(channels.id(config), amount, channels.signature(config, amount), resource, PRICE, True)
    return await node.runtime.pay(request)


async def test_watcher_learns_channels_opened_to_this_receiver_only(make_node, channels, parties):
    node = await make_node()
    ours = channels.open_eth(10 * PRICE)
    theirs = channels.open_eth(10 * PRICE, channels.config(receiver=parties.other.address))
    await node.watcher.poll()
    assert await node.store.channel_ids() == {channels.id(ours)}
    channels.chain.transact(channels.contract.functions.depositEth(ours.as_abi_tuple()), parties.payer.address, value=5)
    await node.watcher.poll()
    assert (await node.store.load_channel(channels.id(ours))).state.deposited == 10 * PRICE + 5
    assert (await pay(node, channels, ours, PRICE, "/a")).accepted, "known from the chain before its first voucher"
    cursor = await node.store.cursor()
    assert cursor.block == channels.chain.w3.eth.block_number
    await node.store.close()
    assert theirs


async def test_a_payers_close_is_claimed_from_the_outbox_while_running(make_node, channels, parties):
    node = await make_node()
    config = channels.open_eth(10 * PRICE, channels.config(close_delay=HOUR))
    await node.watcher.poll()
    for n in (1, 2, 3):
        assert (await pay(node, channels, config, n * PRICE, f"/article-{n}")).accepted
    channels.chain.transact(channels.contract.functions.requestClose(config.as_abi_tuple()), parties.payer.address)
    await node.watcher.poll()
    [row] = await node.store.outbox()
    assert (row.kind, row.amount, row.status) == ("claim", 3 * PRICE, "pending") and row.deadline is not None
    await node.sender.tick()
    assert (await node.store.outbox())[0].status == "sent"
    # The deadline is an hour away, beyond the node's margin: it still sells, and defends that too.
    assert (await pay(node, channels, config, 4 * PRICE, "/late")).accepted
    await node.watcher.poll()
    [row] = await node.store.outbox()
    assert (row.amount, row.status) == (4 * PRICE, "pending"), "the first claim is done; the higher voucher is next"
    await node.sync()
    assert await node.store.outbox() == [], "confirmed ChannelClaimed events closed the rows"
    deposited, claimed, deadline, settled = channels.state(config)
    assert claimed == 4 * PRICE and deadline > chain_time(channels.chain)
    await node.store.close()


async def test_a_close_requested_while_the_node_was_down_is_found_on_catch_up(make_node, channels, parties):
    first = await make_node()
    config = channels.open_eth(10 * PRICE, channels.config(close_delay=HOUR))
    await first.watcher.poll()
    assert (await pay(first, channels, config, 2 * PRICE, "/a")).accepted
    await first.store.close()  # the node goes down

    channels.chain.transact(channels.contract.functions.requestClose(config.as_abi_tuple()), parties.payer.address)
    for _ in range(5):  # the chain moves on without the node
        channels.open_eth(PRICE, channels.config(receiver=parties.other.address))
    channels.chain.time_travel(HOUR // 2)

    second = await make_node()
    await second.sync()
    assert channels.state(config)[1] == PRICE, "claimed what was charged before the deadline, half the delay late"
    assert await second.store.outbox() == []
    # the payer finalizes: its unspent credit (the voucher said 2, one article was charged) comes back
    channels.chain.time_travel(HOUR)
    before = channels.chain.w3.eth.get_balance(parties.payer.address)
    receipt = channels.chain.transact(channels.contract.functions.finalizeClose(config.as_abi_tuple()), parties.payer.address)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert channels.chain.w3.eth.get_balance(parties.payer.address) - before + fee == 9 * PRICE
    await second.store.close()


async def test_a_recorded_but_unsent_claim_is_sent_after_a_restart(make_node, channels, parties, monkeypatch):
    first = await make_node()
    config = channels.open_eth(10 * PRICE, channels.config())
    await first.watcher.poll()
    assert (await pay(first, channels, config, PRICE, "/a")).accepted
    assert isinstance(await first.runtime.operator(channels.id(config), OperatorClaim()), ContractSendClaim)

    async def crash_before_broadcast(raw: bytes) -> None:
        raise SystemExit("killed between recording and broadcasting")

    monkeypatch.setattr(first.sender, "_broadcast", crash_before_broadcast)
    with pytest.raises(SystemExit):
        await first.sender.tick()
    [row] = await first.store.outbox()
    assert row.status == "sent" and row.raw_tx and channels.state(config)[1] == 0
    await first.store.close()

    second = await make_node()
    await second.sync()
    assert channels.state(config)[1] == PRICE
    assert await second.store.outbox() == [] and second.sender.stats.sent == 0, "the same bytes, not a new tx"
    await second.store.close()


async def test_a_cursor_no_longer_on_chain_triggers_a_resync(make_node, channels):
    node = await make_node()
    config = channels.open_eth(10 * PRICE, channels.config())
    await node.watcher.poll()
    cursor = await node.store.cursor()
    await node.store.set_cursor(Cursor(cursor.block, b"\x66" * 32))  # as if a deep reorg replaced that block
    # The node also believes in a deposit the chain no longer shows.
    stored = await node.store.load_channel(channels.id(config))
    await node.store.commit(ChannelWrite(replace(stored.state, deposited=99 * PRICE), stored.version))
    node.runtime._cache.clear()
    await node.watcher.poll()
    assert node.watcher.stats.resyncs == 1
    assert (await node.store.load_channel(channels.id(config))).state.deposited == 10 * PRICE
    assert (await node.store.cursor()).block_hash != b"\x66" * 32
    await node.store.close()


async def test_settlement_policy_claims_fifty_channels_in_one_batched_transaction(make_node, channels):
    from channel_node.node.settlement import SettlementPolicy

    node = await make_node()
    configs = [channels.open_eth(10 * PRICE, channels.config()) for _ in range(50)]
    await node.watcher.poll()
    for n, config in enumerate(configs):
        assert (await pay(node, channels, config, (n % 3 + 1) * PRICE, "/a")).accepted
    policy = SettlementPolicy(node.runtime, node.store, claim_min_unclaimed=PRICE)
    assert await policy.tick(0) == (50, 0)
    assert await policy.tick(0) == (0, 0), "an open row is not queued twice"
    await node.sender.tick()
    hashes = {row.tx_hash for row in await node.store.outbox()}
    assert len(hashes) == 1 and node.sender.stats.sent == 1, "one claimBatch for all fifty"
    receipt = channels.chain.w3.eth.get_transaction_receipt(hashes.pop())
    await node.watcher.poll()
    assert await node.store.outbox() == []
    assert [channels.state(c)[1] for c in configs] == [PRICE] * 50, "what was charged, whatever the voucher"
    assert receipt["gasUsed"] / 50 < 16_000


async def test_idle_channels_are_closed_claiming_what_was_charged(make_node, channels, parties):
    from channel_node.node.settlement import SettlementPolicy

    node = await make_node()
    config = channels.open_eth(10 * PRICE, channels.config())
    await node.watcher.poll()
    assert (await pay(node, channels, config, 2 * PRICE, "/a")).accepted
    balance_before = channels.chain.w3.eth.get_balance(parties.payer.address)
    policy = SettlementPolicy(node.runtime, node.store, idle_close_after=3600)
    assert await policy.tick(__import__("time").time() + 7200) == (0, 1)
    assert not (await pay(node, channels, config, 3 * PRICE, "/b")).accepted, "nothing sold once closing"
    await node.sync()
    deposited, claimed, _, settled = channels.state(config)
    assert settled and claimed == PRICE, "one article charged under a voucher for two"
    assert channels.chain.w3.eth.get_balance(parties.payer.address) - balance_before == 9 * PRICE


async def test_logs_of_a_channel_opened_in_the_same_range_are_all_applied(make_node, channels, parties):
    node = await make_node()
    config = channels.open_eth(10 * PRICE, channels.config())
    channels.chain.transact(channels.contract.functions.depositEth(config.as_abi_tuple()), parties.payer.address, value=7)
    r, vs = channels.voucher(config, 3 * PRICE)
    channels.chain.transact(channels.contract.functions.claim(config.as_abi_tuple(), 3 * PRICE, 3 * PRICE, r, vs), parties.receiver.address)
    await node.watcher.poll()  # opened, topped up and claimed, all in one range the node has not seen
    state = (await node.store.load_channel(channels.id(config))).state
    assert (state.deposited, state.claimed) == (10 * PRICE + 7, 3 * PRICE)


async def test_a_defence_without_gas_money_warns_and_is_sent_once_funded(make_node, channels, parties):
    from eth_account import Account

    from channel_node.chain.outbox import OutboxSender
    from channel_node.signing import keccak256

    node = await make_node()
    poor_key = keccak256(b"a claim key with no gas money")
    node.sender = OutboxSender(node.sender.w3, node.sender.client, node.store, poor_key, bump_after=3600)
    node.runtime.settler = bytes.fromhex(Account.from_key(poor_key).address[2:])  # the node holds that key
    # the claim key is the channel's receiver authorizer, not the receiver (which stays cold)
    config = channels.open_eth(10 * PRICE, channels.config(close_delay=HOUR, receiver_authorizer=Account.from_key(poor_key).address))
    await node.watcher.poll()
    assert (await pay(node, channels, config, 2 * PRICE, "/a")).accepted
    channels.chain.transact(channels.contract.functions.requestClose(config.as_abi_tuple()), parties.payer.address)
    await node.sync()
    [row] = await node.store.outbox()
    assert row.status == "pending" and not node.sender.stats.gas_ok and node.sender.stats.open_rows == 1
    assert channels.state(config)[1] == 0
    channels.chain.w3.eth.send_transaction(
        {"from": parties.deployer.address, "to": Account.from_key(poor_key).address, "value": 10**18, "gas": 21_000}
    )
    await node.sync()
    await node.watcher.poll()
    assert channels.state(config)[1] == PRICE and await node.store.outbox() == []
    assert node.sender.stats.gas_ok


async def test_batched_claims_are_split_by_receiver_authorizer(make_node, channels, parties):
    """claimBatch names one authorizer (it is part of each channel's id): channels naming different
    ones go in different transactions, and each claims what was charged. (The node sells only on
    authorizers it holds: here the zero address and the receiver itself.)"""
    from channel_node.node.settlement import SettlementPolicy

    node = await make_node()
    alone = [channels.open_eth(10 * PRICE, channels.config()) for _ in range(2)]
    named = [channels.open_eth(10 * PRICE, channels.config(receiver_authorizer=parties.receiver.address)) for _ in range(2)]
    await node.watcher.poll()
    for config in alone + named:
        assert (await pay(node, channels, config, 3 * PRICE, "/a")).accepted
    assert await SettlementPolicy(node.runtime, node.store, claim_min_unclaimed=PRICE).tick(0) == (4, 0)
    await node.sender.tick()
    assert len({row.tx_hash for row in await node.store.outbox()}) == 2 and node.sender.stats.sent == 2
    await node.watcher.poll()
    assert await node.store.outbox() == []
    assert [channels.state(c)[1] for c in alone + named] == [PRICE] * 4
