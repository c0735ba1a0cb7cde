"""Reorgs against the node's chain figures, over a fake chain (tests/fake_chain.py).

The class (docs/security.md, "Reorganisations"): a figure the node relies on was read at a block a
reorg removes. Scenarios put a channel's deposit, the node's first voucher (the direct read) and the
watcher's cursor in every order, then reorg at every depth from 0 to beyond the confirmation depth
(confirmations 1, 2 and 3), with the deposit removed, reduced, re-included later, or kept in blocks
with new hashes. The assertions in every case:

- once the watcher has polled after the reorg, no voucher is charged above the deposit the
  canonical chain shows at the confirmation depth;
- after the chain settles, the node's figures (store, runtime, what the admin API shows) are the
  canonical chain's, and a deposit that reappeared is known again;
- charges made before the reorg stay recorded.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from channel_node.chain.view import Web3ChainView
from channel_node.chain.watcher import Watcher
from channel_node.node.runtime import ChainUnavailable, PaymentRequest, Runtime
from channel_node.signing import (
    ChannelConfig,
    Domain,
    address_of_key,
    channel_id,
    keccak256,
    sign_digest,
    voucher_digest,
)
from channel_node.store import Cursor, MemoryStore, Pin, SQLiteStore
from fake_chain import CONTRACT, Deposit, FakeChain, FakeClient, FakeWeb3, RequestClose

PRICE = 100
DEPOSIT = 5 * PRICE
VOUCHER_KEY = keccak256(b"reorg test voucher key")
RECEIVER = keccak256(b"reorg test receiver")[:20]
PAYER = keccak256(b"reorg test payer")[:20]
DOMAIN = Domain(31337, bytes.fromhex(CONTRACT[2:]))
TOKEN = b"\0" * 20
VARIANTS = ("removed", "reduced", "reincluded_later", "kept")
POSITIONS = ("cursor_before_deposit", "cursor_after_deposit", "cursor_after_voucher")

_salts = itertools.count(1)


def new_config() -> ChannelConfig:
    return ChannelConfig.create(PAYER, address_of_key(VOUCHER_KEY), RECEIVER, None, 3600, next(_salts))


@dataclass
class Node:
    chain: FakeChain
    store: MemoryStore | SQLiteStore
    runtime: Runtime
    watcher: Watcher
    confirmations: int
    now: float = 1_700_000_000.0
    violations: int = 0
    accepted_after_poll: int = 0

    async def pay(self, config: ChannelConfig, checked: bool = True, amount: int | None = None):
        """Pays one new resource with a voucher of charged + PRICE (or `amount`). With `checked`, an
        accepted voucher must be covered by the canonical chain's deposit at the confirmation depth."""
        cid = channel_id(DOMAIN, config)
        self.now += 10  # past the runtime's refresh interval and unknown-channel memory
        state = await self.runtime.channel(cid)
        amount = amount or (state.charged if state else 0) + PRICE
        signature = sign_digest(VOUCHER_KEY, voucher_digest(DOMAIN, cid, amount))
        request = PaymentRequest(cid, amount, signature, f"/r/{self.now}", PRICE, True, config=config)
        try:
            outcome = await self.runtime.pay(request)
        except ChainUnavailable:
            return None
        if outcome.accepted and checked:
            self.accepted_after_poll += 1
            if amount > self.chain.confirmed_deposited(cid, self.confirmations):
                self.violations += 1
        return outcome

    async def settle(self) -> None:
        """The chain moves on without reorgs; the watcher follows it."""
        self.chain.mine_empty(self.confirmations + 1)
        await self.watcher.poll()
        await self.watcher.poll()

    async def assert_figures_are_the_chains(self, *configs: ChannelConfig) -> None:
        for config in configs:
            cid = channel_id(DOMAIN, config)
            canonical = self.chain.confirmed_deposited(cid, self.confirmations)
            stored = await self.store.load_channel(cid)
            assert (stored.state.deposited if stored else 0) == canonical, "store figure is the canonical chain's"
            state = await self.runtime.channel(cid)
            assert (state.deposited if state else 0) == canonical, "runtime (admin API) figure is the chain's"
            if canonical:
                assert stored is not None, "a deposit on the canonical chain is known (again)"
            deadline = self.chain.close_deadline(cid, self.confirmations)
            assert (stored.state.close_deadline if stored else None) == deadline, "close deadline is the chain's"
        assert await self.store.anchored_channels() == [], "every direct read was re-validated"
        assert not self.runtime.suspended


async def make_node(chain: FakeChain, confirmations: int, store=None) -> Node:
    store = store or MemoryStore()
    await store.open(Pin(DOMAIN.chain_id, DOMAIN.verifying_contract, RECEIVER))
    w3, client = FakeWeb3(chain), FakeClient(chain)
    view = Web3ChainView(w3, CONTRACT, confirmations, client=client)
    node = Node(chain, store, None, None, confirmations)  # type: ignore[arg-type]
    node.runtime = Runtime(store, DOMAIN, RECEIVER, TOKEN, view, close_margin=60, clock=lambda: node.now)
    node.watcher = Watcher(w3, client, node.runtime, store, confirmations, defence_interval=3600)
    # As a new node starts: watching from the confirmed head; older channels come from vouchers.
    start = max(0, chain.head - confirmations + 1)
    await store.set_cursor(Cursor(start, chain.canonical[start].hash))
    return node


def replacement(dropped, config: ChannelConfig, variant: str, extra: int) -> list[list[Deposit]]:
    """New blocks for a reorg that dropped `dropped`: one per dropped block plus `extra`."""
    count = max(0, len(dropped) + extra)
    ours = [tx for block in dropped for tx in block.txs]
    blocks: list[list[Deposit]] = [[] for _ in range(count)]
    if not ours or variant == "removed":
        return blocks
    if variant == "kept":  # the same deposits in the same places, in blocks with other hashes
        for i, block in enumerate(dropped[:count]):
            blocks[i] = list(block.txs)
        return blocks
    if variant == "reduced":  # the payer's deposit lands smaller on the winning branch
        smaller = [replace(tx, amount=max(PRICE, tx.amount - 3 * PRICE)) for tx in ours]
        (blocks[0] if blocks else blocks.append([]) or blocks[0]).extend(smaller)
        return blocks
    # re-included later than before: in the last new block, one block higher than the chain had
    blocks.append(list(ours))
    return blocks


async def scenario(confirmations, position, gap, after, depth, variant, extra, store=None) -> Node:
    chain = FakeChain(DOMAIN)
    chain.mine_empty(confirmations + 2)
    node = await make_node(chain, confirmations, store)
    config = new_config()
    cid = channel_id(DOMAIN, config)
    chain.mine([Deposit(config, DEPOSIT)])
    chain.mine_empty(confirmations - 1 + gap)  # the deposit is confirmed (gap blocks more)
    if position == "cursor_after_deposit":
        await node.watcher.poll()  # learnt from its log; the cursor is past the deposit's block
    first = await node.pay(config, checked=False)
    assert first is not None and first.accepted, "the first voucher against a confirmed deposit is served"
    chain.mine_empty(after)
    if position == "cursor_after_voucher":
        await node.watcher.poll()
    dropped = chain.reorg(depth, [])
    for txs in replacement(dropped, config, variant, extra):
        chain.mine(txs)
    await node.watcher.poll()  # the node sees the chain move
    for _ in range(3):
        await node.pay(config)
    await node.settle()
    await node.assert_figures_are_the_chains(config)
    for _ in range(2):
        await node.pay(config)
    assert node.violations == 0, "a voucher was charged against a deposit not on the canonical chain"
    charges = await node.store.charges(cid)
    assert charges and charges[0].amount == PRICE, "the charge made before the reorg stays recorded"
    return node


def _sweep():
    for confirmations in (1, 2, 3):
        for position in POSITIONS:
            for after in (0, 1, 2):
                for depth in range(0, confirmations + after + 3):
                    for variant in VARIANTS:
                        for extra in (0, -1):  # as many new blocks as dropped, or one fewer
                            yield confirmations, position, 0, after, depth, variant, extra


def test_every_depth_at_every_position_removed_reduced_reincluded_or_kept():
    """The exhaustive grid: confirmations 1-3, three cursor positions, 0-2 blocks after the first
    voucher, every reorg depth from 0 to past the deposit's block, four fates of the deposit, and a
    new branch as long as the old one or one block shorter."""

    async def run() -> int:
        count = 0
        for case in _sweep():
            try:
                await scenario(*case)
            except AssertionError as exc:
                raise AssertionError(f"case {case}: {exc}") from exc
            count += 1
        return count

    assert asyncio.run(run()) > 1000


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    confirmations=st.integers(1, 3),
    position=st.sampled_from(POSITIONS),
    gap=st.integers(0, 2),
    after=st.integers(0, 3),
    depth=st.integers(0, 9),
    variant=st.sampled_from(VARIANTS),
    extra=st.integers(-2, 2),
)
@example(confirmations=2, position="cursor_after_deposit", gap=0, after=0, depth=1, variant="removed", extra=-1)
def test_reorgs_of_any_shape_never_leave_a_vanished_deposit_trusted(
    confirmations, position, gap, after, depth, variant, extra
):
    """The same class with the chain also getting shorter or longer, and more blocks between deposit,
    voucher and reorg."""
    asyncio.run(scenario(confirmations, position, gap, after, depth, variant, extra))


def rpc_down_for_channel_reads(chain: FakeChain) -> None:
    """A `FakeChain.on_call` hook: every channel read fails as an RPC that is down."""
    import inspect

    if any(frame.function == "get_channel" for frame in inspect.stack()[1:4]):
        raise ConnectionError("the chain's RPC is down")


@pytest.mark.parametrize("confirmations, depth", [(1, 1), (2, 2)])
async def test_the_reported_example_over_sqlite(tmp_path, confirmations, depth):
    """The finding as reported, on the durable store: the first voucher reads the deposit at the
    confirmation depth, a reorg of `depth` removes it before the cursor gets there; later vouchers
    must be refused and the figures must be zero, also after a restart."""
    chain = FakeChain(DOMAIN)
    chain.mine_empty(3)
    node = await make_node(chain, confirmations, SQLiteStore(tmp_path / "node.db"))
    config = new_config()
    cid = channel_id(DOMAIN, config)
    chain.mine([Deposit(config, DEPOSIT)])
    chain.mine_empty(confirmations - 1)
    assert (await node.pay(config, checked=False)).accepted
    [(anchored, anchor)] = await node.store.anchored_channels()
    assert anchored == cid and anchor.block == chain.head - confirmations + 1
    assert anchor.block_hash == chain.canonical[anchor.block].hash, "the figure is tied to the block it was read at"
    chain.reorg(depth, [[] for _ in range(depth)])
    await node.watcher.poll()
    refused = await node.pay(config)
    assert refused is not None and not refused.accepted and refused.effect.code.value == "exceeds_deposit"
    assert (await node.store.load_channel(cid)).state.deposited == 0
    assert node.watcher.stats.reverified == 1 and node.violations == 0
    await node.store.close()
    reopened = await make_node(chain, confirmations, SQLiteStore(tmp_path / "node.db"))
    state = (await reopened.store.load_channel(cid)).state
    assert (state.deposited, state.charged) == (0, PRICE), "durably zero; the charge stays recorded"
    # The payer deposits again on the new branch: the node learns it again from the watcher.
    chain.mine([Deposit(config, DEPOSIT)])
    await reopened.settle()
    await reopened.assert_figures_are_the_chains(config)
    assert (await reopened.pay(config)).accepted
    await reopened.store.close()


async def test_a_reorg_between_two_calls_of_a_poll_is_caught():
    """The chain moves while the watcher is in the middle of a poll (between any two of its calls):
    the figures it keeps still match the canonical chain once it settles."""
    for confirmations in (1, 2):
        for trigger in range(1, 12):
            chain = FakeChain(DOMAIN)
            chain.mine_empty(3)
            node = await make_node(chain, confirmations)
            config = new_config()
            chain.mine([Deposit(config, DEPOSIT)])
            chain.mine_empty(confirmations - 1)
            assert (await node.pay(config, checked=False)).accepted
            chain.mine_empty(1)
            start = chain.calls

            def hook(c: FakeChain, start=start, trigger=trigger, depth=confirmations + 1) -> None:
                if c.calls == start + trigger:
                    c.on_call = None
                    c.reorg(depth, [[] for _ in range(depth)])

            chain.on_call = hook
            await node.watcher.poll()
            chain.on_call = None
            await node.watcher.poll()
            for _ in range(2):
                await node.pay(config)
            await node.settle()
            await node.assert_figures_are_the_chains(config)
            assert node.violations == 0, (confirmations, trigger)


class ReorgMachine(RuleBasedStateMachine):
    """Random interleavings of mining, deposits, vouchers, polls and reorgs on two channels."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()

    @initialize(confirmations=st.integers(1, 3))
    def start(self, confirmations):
        self.confirmations = confirmations
        self.chain = FakeChain(DOMAIN)
        self.chain.mine_empty(4)
        self.node = self.loop.run_until_complete(make_node(self.chain, self.confirmations))
        self.configs = [new_config(), new_config()]
        self.dirty = False  # a reorg the watcher has not polled since

    def teardown(self) -> None:
        self.loop.close()

    @rule(blocks=st.integers(1, 3))
    def mine(self, blocks):
        self.chain.mine_empty(blocks)

    @rule(which=st.integers(0, 1), units=st.integers(1, 4))
    def deposit(self, which, units):
        self.chain.mine([Deposit(self.configs[which], units * PRICE)])

    @rule(which=st.integers(0, 1))
    def pay(self, which):
        self.loop.run_until_complete(self.node.pay(self.configs[which], checked=not self.dirty))

    @rule()
    def poll(self):
        self.loop.run_until_complete(self.node.watcher.poll())
        self.dirty = False

    @rule(depth=st.integers(1, 5), extra=st.integers(-1, 2), variant=st.sampled_from(VARIANTS), which=st.integers(0, 1))
    def reorg(self, depth, extra, variant, which):
        anchored = self.loop.run_until_complete(self.node.store.anchored_channels())
        cursor = self.loop.run_until_complete(self.node.store.cursor())
        if any(a.block > self.chain.head - depth for _, a in anchored) and cursor.block <= self.chain.head - depth:
            event("reorg removes a direct read above the cursor")
        dropped = self.chain.reorg(depth, [])
        for txs in replacement(dropped, self.configs[which], variant, extra):
            self.chain.mine(txs)
        self.dirty = True

    @rule(
        which=st.integers(0, 1), units=st.integers(1, 4), after=st.integers(0, 2), depth=st.integers(0, 5),
        extra=st.integers(-1, 2), variant=st.sampled_from(VARIANTS),
    )  # fmt: skip
    def deposit_pay_then_reorg(self, which, units, after, depth, extra, variant):
        """The reported shape inside any history: a deposit, a voucher as soon as it is confirmed
        (before the watcher polls), then a reorg."""
        self.deposit(which, units)
        self.chain.mine_empty(self.confirmations - 1)
        self.loop.run_until_complete(self.node.pay(self.configs[which], checked=not self.dirty))
        self.chain.mine_empty(after)
        self.reorg(depth, extra, variant, which)

    @invariant()
    def never_charged_above_the_canonical_deposit(self):
        assert not hasattr(self, "node") or self.node.violations == 0

    @rule()
    def settle_and_compare(self):
        self.loop.run_until_complete(self.node.settle())
        self.dirty = False
        self.loop.run_until_complete(self.node.assert_figures_are_the_chains(*self.configs))


ReorgMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=25, deadline=None)
test_random_interleavings_of_reorgs_polls_and_vouchers = ReorgMachine.TestCase


async def test_a_top_up_learnt_from_a_voucher_and_then_reorged_away_is_taken_back():
    """A voucher above the deposit makes the node read the channel again (a top-up it has not seen
    in logs); that read is tied to its block too, and a reorg removing the top-up lowers the figure."""
    for confirmations in (1, 2, 3):
        chain = FakeChain(DOMAIN)
        chain.mine_empty(4)
        node = await make_node(chain, confirmations)
        config = new_config()
        cid = channel_id(DOMAIN, config)
        chain.mine([Deposit(config, 2 * PRICE)])
        await node.settle()  # learnt from its log; the cursor is past it
        assert [await node.pay(config) for _ in range(2)][-1].accepted
        chain.mine([Deposit(config, 3 * PRICE)])  # the top-up
        chain.mine_empty(confirmations - 1)
        assert (await node.pay(config, checked=False)).accepted, "the refresh saw the confirmed top-up"
        assert (await node.store.load_channel(cid)).anchor is not None
        chain.reorg(confirmations, [[] for _ in range(confirmations)])
        await node.watcher.poll()
        assert (await node.store.load_channel(cid)).state.deposited == 2 * PRICE
        refused = await node.pay(config)
        assert refused is not None and refused.effect.code.value == "exceeds_deposit"
        await node.settle()
        await node.assert_figures_are_the_chains(config)
        assert node.violations == 0


async def test_a_refresh_over_a_read_whose_block_is_gone_replaces_it():
    """Before the watcher notices, a voucher above the deposit reads the channel again; the earlier
    read's block is gone, so the new figures replace the old ones instead of adding to them."""
    chain = FakeChain(DOMAIN)
    chain.mine_empty(4)
    node = await make_node(chain, 1)
    config = new_config()
    cid = channel_id(DOMAIN, config)
    chain.mine([Deposit(config, 2 * PRICE)])
    assert (await node.pay(config, checked=False)).accepted  # read at the head, anchored there
    chain.reorg(1, [[Deposit(config, PRICE)]])  # the winning branch has a deposit of one price
    # A voucher above the old deposit makes the node read again: the old figure is not kept (as the
    # larger of the two reads would be), it is replaced, and the voucher is refused.
    refused = await node.pay(config, amount=3 * PRICE)
    assert refused is not None and refused.effect.code.value == "exceeds_deposit"
    stored = await node.store.load_channel(cid)
    assert stored.state.deposited == PRICE and stored.anchor.block_hash == chain.canonical[-1].hash
    await node.settle()
    await node.assert_figures_are_the_chains(config)


async def test_nothing_is_sold_on_a_reorged_read_while_the_chain_cannot_be_read_again():
    chain = FakeChain(DOMAIN)
    chain.mine_empty(4)
    node = await make_node(chain, 2)
    config = new_config()
    cid = channel_id(DOMAIN, config)
    chain.mine([Deposit(config, DEPOSIT)])
    chain.mine_empty(1)
    assert (await node.pay(config, checked=False)).accepted
    chain.reorg(2, [[], []])

    chain.on_call = rpc_down_for_channel_reads
    with pytest.raises(ConnectionError):
        await node.watcher.poll()
    assert cid in node.runtime.suspended
    assert await node.pay(config) is None, "answered chain_unavailable (503), not served"
    chain.on_call = None
    await node.watcher.poll()
    assert cid not in node.runtime.suspended
    assert (await node.store.load_channel(cid)).state.deposited == 0
    refused = await node.pay(config)
    assert refused is not None and refused.effect.code.value == "exceeds_deposit"
    assert node.violations == 0


async def test_a_channel_opened_only_on_the_new_branch_of_a_deep_reorg_is_learnt_from_its_log():
    """A reorg deeper than the confirmation depth re-syncs; the logs of the new branch below the old
    cursor are read too, so a deposit that exists only there is known without waiting for a voucher."""
    for confirmations in (1, 2, 3):
        chain = FakeChain(DOMAIN)
        chain.mine_empty(4)
        node = await make_node(chain, confirmations)
        chain.mine_empty(confirmations + 1)
        await node.watcher.poll()
        config = new_config()
        depth = confirmations + 2
        chain.reorg(depth, [[Deposit(config, DEPOSIT)]] + [[] for _ in range(depth - 1)])
        await node.watcher.poll()
        assert node.watcher.stats.resyncs == 1
        stored = await node.store.load_channel(channel_id(DOMAIN, config))
        assert stored is not None and stored.state.deposited == DEPOSIT
        await node.assert_figures_are_the_chains(config)


async def test_a_channel_suspended_by_a_failed_re_read_is_released_once_the_chain_grows_back():
    """The chain gets one block shorter, so the channel learnt from the last confirmed block is
    suspended and read again, but that read fails; then the chain grows back and the cursor is
    confirmed again. The channel is read again anyway (at the cursor's block), not left refusing
    every voucher."""
    chain = FakeChain(DOMAIN)
    chain.mine_empty(4)
    node = await make_node(chain, 2)
    config = new_config()
    cid = channel_id(DOMAIN, config)
    chain.mine([Deposit(config, DEPOSIT)])
    chain.mine_empty(1)
    await node.watcher.poll()  # learnt from its log; the cursor is the deposit's block
    chain.reorg(1, [])  # one block shorter: the deposit's block is no longer confirmed

    chain.on_call = rpc_down_for_channel_reads
    with pytest.raises(ConnectionError):
        await node.watcher.poll()
    assert cid in node.runtime.suspended and node.watcher.stats.stepped_back == 1
    assert await node.pay(config) is None, "answered chain_unavailable (503)"
    chain.on_call = None
    chain.mine_empty(1)  # the cursor's block is confirmed again: no step back this time
    await node.watcher.poll()
    assert not node.runtime.suspended
    assert (await node.pay(config)).accepted
    await node.settle()
    await node.assert_figures_are_the_chains(config)
    assert node.violations == 0


async def test_a_close_request_removed_by_a_reorg_is_forgotten_and_one_kept_is_defended():
    """The close deadline is a chain figure too: a payer's close request the node learnt (from logs
    or from a read) and a reorg then removed is no longer believed; one that stays still is."""
    for confirmations in (1, 2, 3):
        for depth in range(0, confirmations + 3):
            for learnt_by_read in (False, True):
                chain = FakeChain(DOMAIN)
                chain.mine_empty(4)
                node = await make_node(chain, confirmations)
                config = new_config()
                cid = channel_id(DOMAIN, config)
                chain.mine([Deposit(config, 2 * PRICE)])
                chain.mine_empty(confirmations - 1)
                if not learnt_by_read:
                    await node.watcher.poll()
                    assert (await node.pay(config, checked=False)).accepted
                chain.mine([RequestClose(config)])
                chain.mine_empty(confirmations - 1)
                if learnt_by_read:  # the first voucher reads the pending close along with the deposit
                    assert (await node.pay(config, checked=False)).accepted
                else:
                    await node.watcher.poll()
                assert (await node.store.load_channel(cid)).state.close_deadline is not None
                chain.reorg(depth, [[] for _ in range(depth)])
                await node.watcher.poll()
                await node.settle()
                try:
                    await node.assert_figures_are_the_chains(config)
                except AssertionError as exc:
                    raise AssertionError(f"confirmations {confirmations}, depth {depth}, read {learnt_by_read}: {exc}") from exc
