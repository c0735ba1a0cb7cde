"""Hypothesis stateful test: random sequences of deposits, vouchers, claims, batched claims, closes of
every kind and time travel against the real contract, checked after every step against a model.

Invariants: on-chain state equals the model; `claimed` is monotonic and never above `deposited`;
for every settled channel receiver payouts + payer refunds == total deposited; no account receives
more than its due; the contract holds exactly the unsettled balance; a reverted call changes nothing.

CI runs STATEFUL_EXAMPLES (default 200) examples; scripts/stateful_contract.py runs more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from channel_node.signing import (
    ChannelConfig,
    Domain,
    address_of_key,
    channel_id,
    cooperative_close_digest,
    keccak256,
    sign_digest,
    to_compact,
    voucher_digest,
)

EXAMPLES = int(os.environ.get("STATEFUL_EXAMPLES", "200"))
GAS = 2_000_000
MIN_DELAY, MAX_TEST_DELAY = 900, 4 * 3600
UNIT = 10**15


@dataclass
class ModelChannel:
    config: ChannelConfig
    cid: bytes
    deposited: int
    claimed: int = 0
    deadline: int = 0
    settled: bool = False
    vouchers: list[int] = field(default_factory=list)
    paid_to_receiver: int = 0
    refunded: int = 0


class ChannelMachine(RuleBasedStateMachine):
    chain = None  # set by the test: the session DevChain
    contract = None

    def __init__(self) -> None:
        super().__init__()
        self.snapshot = self.chain.tester.take_snapshot()
        accounts = self.chain.accounts
        self.receiver, self.payers, self.relayer = accounts[1], accounts[2:4], accounts[4]
        self.key = keccak256(b"stateful voucher key")
        self.signer = to_checksum_address(address_of_key(self.key))
        self.domain = Domain(self.chain.chain_id, self.contract.address)
        self.channels: list[ModelChannel] = []
        self.salt = 0
        self.received = {a.address: 0 for a in accounts[1:5]}  # from the contract, per account

    def teardown(self) -> None:
        self.chain.tester.revert_to_snapshot(self.snapshot)

    # ---------------------------------------------------------------- helpers

    def send(self, call, sender, value: int = 0) -> bool:
        """Sends; records what each tracked account received from the contract (gas and value out excluded)."""
        w3 = self.chain.w3
        before = {a: w3.eth.get_balance(a) for a in self.received}
        contract_before = w3.eth.get_balance(self.contract.address)
        try:
            tx = call.transact({"from": sender.address, "value": value, "gas": GAS})
            receipt = w3.eth.wait_for_transaction_receipt(tx)
            ok = receipt["status"] == 1
        except Exception:  # web3 raises on a revert it can see before mining
            receipt, ok = None, False
        for account in self.received:
            delta = w3.eth.get_balance(account) - before[account]
            if account == sender.address and receipt is not None:
                delta += receipt["gasUsed"] * receipt["effectiveGasPrice"] + (value if ok else 0)
            assert delta >= 0, "no account ever loses funds to the contract except what it deposits"
            if not ok:
                assert delta == 0, "a reverted call moves nothing"
            self.received[account] += delta
        if not ok:
            assert w3.eth.get_balance(self.contract.address) == contract_before
        return ok

    def voucher(self, ch: ModelChannel, amount: int) -> tuple[bytes, bytes]:
        return to_compact(sign_digest(self.key, voucher_digest(self.domain, ch.cid, amount)))

    def now(self) -> int:
        return self.chain.w3.eth.get_block("latest")["timestamp"]

    def settle(self, ch: ModelChannel, final_claimed: int) -> None:
        ch.paid_to_receiver += final_claimed - ch.claimed
        ch.claimed = final_claimed
        ch.refunded = ch.deposited - final_claimed
        ch.settled = True

    channels_exist = precondition(lambda self: bool(self.channels))

    # ---------------------------------------------------------------- rules

    @initialize()
    def start(self) -> None:
        pass

    @rule(payer=st.integers(0, 1), units=st.integers(1, 50), delay=st.integers(MIN_DELAY, MAX_TEST_DELAY))
    def open(self, payer, units, delay):
        self.salt += 1
        config = ChannelConfig.create(self.payers[payer].address, self.signer, self.receiver.address, None, delay, self.salt)
        amount = units * UNIT
        assert self.send(self.contract.functions.depositEth(config.as_abi_tuple()), self.payers[payer], amount)
        self.channels.append(ModelChannel(config, channel_id(self.domain, config), amount))

    @channels_exist
    @rule(data=st.data(), units=st.integers(1, 20))
    def top_up(self, data, units):
        ch = data.draw(st.sampled_from(self.channels))
        payer = self.payer_of(ch)
        ok = self.send(self.contract.functions.depositEth(ch.config.as_abi_tuple()), payer, units * UNIT)
        assert ok == (not ch.settled and ch.deadline == 0), "top-ups only while open, never during a close"
        if ok:
            ch.deposited += units * UNIT

    @channels_exist
    @rule(data=st.data(), fraction=st.integers(0, 200))
    def sign_voucher(self, data, fraction):
        ch = data.draw(st.sampled_from(self.channels))
        ch.vouchers.append(ch.deposited * fraction // 100)  # up to twice the deposit

    @precondition(lambda self: any(ch.vouchers for ch in self.channels))
    @rule(data=st.data())
    def claim(self, data):
        ch = data.draw(st.sampled_from([c for c in self.channels if c.vouchers]))
        amount = data.draw(st.sampled_from(ch.vouchers))
        ok = self.send(self.contract.functions.claim(ch.config.as_abi_tuple(), amount, *self.voucher(ch, amount)), self.relayer)
        target = min(amount, ch.deposited)
        assert ok == (not ch.settled and target > ch.claimed)
        if ok:
            ch.paid_to_receiver += target - ch.claimed
            ch.claimed = target

    @precondition(lambda self: any(ch.vouchers for ch in self.channels))
    @rule(data=st.data())
    def claim_batch(self, data):
        candidates = [c for c in self.channels if c.vouchers]
        chosen = data.draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=6, unique_by=lambda c: c.cid))
        items, expected = [], {}
        for ch in chosen:
            amount = data.draw(st.sampled_from(ch.vouchers))
            c = ch.config
            items.append((to_checksum_address(c.payer), to_checksum_address(c.signer), c.close_delay, c.salt, amount, *self.voucher(ch, amount)))
            if not ch.settled and min(amount, ch.deposited) > ch.claimed:
                expected[ch.cid] = min(amount, ch.deposited)
        eth = "0x" + "00" * 20
        ok = self.send(self.contract.functions.claimBatch(self.receiver.address, eth, items), self.relayer)
        assert ok == bool(expected), "a batch succeeds exactly when some channel has something new"
        if ok:
            for ch in chosen:
                if ch.cid in expected:
                    ch.paid_to_receiver += expected[ch.cid] - ch.claimed
                    ch.claimed = expected[ch.cid]

    @channels_exist
    @rule(data=st.data(), use_voucher=st.booleans())
    def receiver_close(self, data, use_voucher):
        ch = data.draw(st.sampled_from(self.channels))
        amount = data.draw(st.sampled_from(ch.vouchers)) if use_voucher and ch.vouchers else 0
        r, vs = self.voucher(ch, amount)
        ok = self.send(self.contract.functions.closeByReceiver(ch.config.as_abi_tuple(), amount, r, vs), self.receiver)
        assert ok == (not ch.settled)
        if ok:
            self.settle(ch, max(ch.claimed, min(amount, ch.deposited)))

    @channels_exist
    @rule(data=st.data(), fraction=st.integers(0, 150))
    def cooperative_close(self, data, fraction):
        ch = data.draw(st.sampled_from(self.channels))
        amount = ch.deposited * fraction // 100
        receiver_sig = sign_digest(self.receiver.private_key, cooperative_close_digest(self.domain, ch.cid, amount))
        call = self.contract.functions.closeCooperative(ch.config.as_abi_tuple(), amount, b"", receiver_sig)
        ok = self.send(call, self.payer_of(ch))
        assert ok == (not ch.settled)
        if ok:
            self.settle(ch, max(ch.claimed, min(amount, ch.deposited)))

    @channels_exist
    @rule(data=st.data())
    def request_close(self, data):
        ch = data.draw(st.sampled_from(self.channels))
        w3 = self.chain.w3
        ok = self.send(self.contract.functions.requestClose(ch.config.as_abi_tuple()), self.payer_of(ch))
        assert ok == (not ch.settled and ch.deadline == 0)
        if ok:
            ch.deadline = w3.eth.get_block("latest")["timestamp"] + ch.config.close_delay

    @rule(seconds=st.sampled_from([60, 600, 1800, 3600, 4 * 3600]))
    def time_travel(self, seconds):
        self.chain.time_travel(seconds)

    @precondition(lambda self: any(ch.deadline and not ch.settled for ch in self.channels))
    @rule(data=st.data())
    def finalize(self, data):
        ch = data.draw(st.sampled_from([c for c in self.channels if c.deadline and not c.settled]))
        now = self.now()
        if ch.deadline - 120 < now < ch.deadline:
            return  # the next block's timestamp is not exactly predictable this close to the deadline
        ok = self.send(self.contract.functions.finalizeClose(ch.config.as_abi_tuple()), self.relayer)
        assert ok == (now >= ch.deadline)
        if ok:
            self.settle(ch, ch.claimed)

    def payer_of(self, ch: ModelChannel):
        return next(p for p in self.payers if bytes.fromhex(p.address[2:]) == ch.config.payer)

    # ---------------------------------------------------------------- invariants

    @invariant()
    def chain_matches_model(self):
        for ch in self.channels:
            deposited, claimed, deadline, settled = self.contract.functions.getChannel(ch.cid).call()
            assert (deposited, claimed, settled) == (ch.deposited, ch.claimed, ch.settled)
            assert deadline == (0 if ch.settled else ch.deadline)
            assert claimed <= deposited

    @invariant()
    def money_adds_up(self):
        for ch in self.channels:
            if ch.settled:
                assert ch.paid_to_receiver + ch.refunded == ch.deposited
        held = sum(ch.deposited - ch.claimed for ch in self.channels if not ch.settled)
        assert self.chain.w3.eth.get_balance(self.contract.address) == held
        assert self.received[self.receiver.address] == sum(ch.paid_to_receiver for ch in self.channels)
        for payer in self.payers:
            due = sum(ch.refunded for ch in self.channels if self.payer_of(ch) is payer)
            assert self.received[payer.address] == due, "a payer gets back exactly what was never claimed"
        assert self.received[self.relayer.address] == 0, "a relayer is never paid"


def run(chain, contract, examples: int, steps: int = 25) -> None:
    ChannelMachine.chain, ChannelMachine.contract = chain, contract
    run_state_machine_as_test(
        ChannelMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=False,
        ),
    )


@pytest.mark.slow
def test_contract_invariants_hold_over_random_sequences(dev_chain, deployed):
    run(dev_chain, deployed, EXAMPLES)
