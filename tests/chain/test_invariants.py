"""Hypothesis stateful test: random sequences of deposits, vouchers, claims, batched claims, closes of
every kind and time travel against the real contract, checked after every step against a model.

Claims and receiver closes name a claim amount up to their voucher (what was charged) and come from
the receiver, the channel's receiver authorizer, or a third party (who must always fail); channels
name no authorizer or one of two.

Invariants: on-chain state equals the model; `claimed` is monotonic and never above the deposit nor
above the best voucher or agreed close amount; for every settled channel receiver payouts + payer
refunds == total deposited, and the payer got back exactly deposited - claimed, whatever the kind of
close; no account receives more than its due; the authorizer and third parties are never paid and
no third party ever moves funds; the contract holds exactly the unsettled balance; a reverted call
changes nothing.

CI runs STATEFUL_EXAMPLES (default 200) examples; scripts/stateful_contract.py runs more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

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
ZERO = b"\0" * 20


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
    agreed: int = 0  # the highest cooperative-close amount the receiver side signed


class ChannelMachine(RuleBasedStateMachine):
    chain = None  # set by the test: the session DevChain
    contract = None

    def __init__(self) -> None:
        super().__init__()
        self.snapshot = self.chain.tester.take_snapshot()
        accounts = self.chain.accounts
        self.receiver, self.payers, self.relayer = accounts[1], accounts[2:4], accounts[4]
        # Two hot keys a channel may name as receiver authorizer; the relayer is nobody's.
        self.authorizers = accounts[5:7]
        self.key = keccak256(b"stateful voucher key")
        self.signer = to_checksum_address(address_of_key(self.key))
        self.domain = Domain(self.chain.chain_id, self.contract.address)
        self.channels: list[ModelChannel] = []
        self.salt = 0
        self.received = {a.address: 0 for a in accounts[1:7]}  # from the contract, per account
        self.last_claimed: dict[bytes, int] = {}

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

    def may_act(self, ch: ModelChannel, sender) -> bool:
        """The contract's rule for claims, receiver closes and the receiver side of a cooperative close."""
        address = bytes.fromhex(sender.address[2:])
        return ch.config.may_act_for_receiver(address)

    def receiver_side(self, data):
        """Who sends a claim or close: the receiver, an authorizer (maybe not the channel's) or a stranger."""
        return data.draw(st.sampled_from([self.receiver, *self.authorizers, self.relayer, self.payers[0]]))

    channels_exist = precondition(lambda self: bool(self.channels))

    # ---------------------------------------------------------------- rules

    @initialize()
    def start(self) -> None:
        pass

    @rule(payer=st.integers(0, 1), units=st.integers(1, 50), delay=st.integers(MIN_DELAY, MAX_TEST_DELAY),
          authorizer=st.sampled_from([None, 0, 1]))  # fmt: skip
    def open(self, payer, units, delay, authorizer):
        self.salt += 1
        named = None if authorizer is None else self.authorizers[authorizer].address
        config = ChannelConfig.create(self.payers[payer].address, self.signer, self.receiver.address, None, delay, self.salt, named)
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

    def claim_amount(self, data, voucher: int) -> int:
        """Usually what was charged: up to the voucher; now and then above it, which must revert."""
        if data.draw(st.integers(0, 9)) == 0:
            return voucher + data.draw(st.integers(1, UNIT))
        return voucher * data.draw(st.integers(0, 100)) // 100

    @precondition(lambda self: any(ch.vouchers for ch in self.channels))
    @rule(data=st.data())
    def claim(self, data):
        ch = data.draw(st.sampled_from([c for c in self.channels if c.vouchers]))
        voucher = data.draw(st.sampled_from(ch.vouchers))
        amount = self.claim_amount(data, voucher)
        sender = self.receiver_side(data)
        call = self.contract.functions.claim(ch.config.as_abi_tuple(), voucher, amount, *self.voucher(ch, voucher))
        ok = self.send(call, sender)
        target = min(amount, ch.deposited)
        allowed = self.may_act(ch, sender) and amount <= voucher
        assert ok == (allowed and not ch.settled and target > ch.claimed)
        if ok:
            ch.paid_to_receiver += target - ch.claimed
            ch.claimed = target

    @precondition(lambda self: any(ch.vouchers for ch in self.channels))
    @rule(data=st.data())
    def claim_batch(self, data):
        candidates = [c for c in self.channels if c.vouchers]
        chosen = data.draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=6, unique_by=lambda c: c.cid))
        sender = self.receiver_side(data)
        authorizer = data.draw(st.sampled_from([None, *self.authorizers]))
        named = ZERO if authorizer is None else bytes.fromhex(authorizer.address[2:])
        items, expected, above = [], {}, False
        for ch in chosen:
            voucher = data.draw(st.sampled_from(ch.vouchers))
            amount = self.claim_amount(data, voucher)
            above |= amount > voucher
            c = ch.config
            items.append((to_checksum_address(c.payer), to_checksum_address(c.signer), c.close_delay, c.salt, voucher, amount,
                          *self.voucher(ch, voucher)))  # fmt: skip
            # an item whose channel names another authorizer than the batch hashes to an unknown id
            if c.receiver_authorizer == named and not ch.settled and min(amount, ch.deposited) > ch.claimed:
                expected[ch.cid] = min(amount, ch.deposited)
        eth = "0x" + "00" * 20
        batch_authorizer = eth if authorizer is None else authorizer.address
        caller = bytes.fromhex(sender.address[2:])
        allowed = caller == bytes.fromhex(self.receiver.address[2:]) or (authorizer is not None and sender is authorizer)
        ok = self.send(self.contract.functions.claimBatch(self.receiver.address, batch_authorizer, eth, items), sender)
        assert ok == (allowed and not above and bool(expected)), "a batch succeeds exactly when allowed and some channel has something new"
        if ok:
            for ch in chosen:
                if ch.cid in expected:
                    ch.paid_to_receiver += expected[ch.cid] - ch.claimed
                    ch.claimed = expected[ch.cid]

    @channels_exist
    @rule(data=st.data(), use_voucher=st.booleans())
    def receiver_close(self, data, use_voucher):
        ch = data.draw(st.sampled_from(self.channels))
        voucher = data.draw(st.sampled_from(ch.vouchers)) if use_voucher and ch.vouchers else 0
        amount = self.claim_amount(data, voucher) if voucher else 0
        sender = self.receiver_side(data)
        r, vs = self.voucher(ch, voucher)
        ok = self.send(self.contract.functions.closeByReceiver(ch.config.as_abi_tuple(), voucher, amount, r, vs), sender)
        assert ok == (self.may_act(ch, sender) and amount <= voucher and not ch.settled)
        if ok:
            self.settle(ch, max(ch.claimed, min(amount, ch.deposited)))

    @channels_exist
    @rule(data=st.data(), fraction=st.integers(0, 150))
    def cooperative_close(self, data, fraction):
        ch = data.draw(st.sampled_from(self.channels))
        amount = ch.deposited * fraction // 100
        consenting = self.receiver_side(data)  # signs the receiver side's consent; the payer sends
        receiver_sig = sign_digest(consenting.private_key, cooperative_close_digest(self.domain, ch.cid, amount))
        call = self.contract.functions.closeCooperative(ch.config.as_abi_tuple(), amount, b"", receiver_sig)
        ok = self.send(call, self.payer_of(ch))
        assert ok == (self.may_act(ch, consenting) and not ch.settled)
        if ok:
            ch.agreed = max(ch.agreed, amount)
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
            assert claimed <= max([*ch.vouchers, ch.agreed, 0]), "never more than a voucher or an agreed close"
            assert claimed >= self.last_claimed.get(ch.cid, 0), "claimed never decreases"
            self.last_claimed[ch.cid] = claimed

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
        for authorizer in self.authorizers:
            assert self.received[authorizer.address] == 0, "an authorizer acts for the receiver but is never paid"


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
