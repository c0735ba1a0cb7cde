"""One transaction policy for every sender of the chain edge (chain/accounts.py): the contract
client's LocalKeySender and the outbox take the same fees, the same nonce rule, the same gas
margin and the same replacement rule. The fake node below answers exactly what the policy reads,
so the transactions both paths sign can be decoded and compared field by field."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import rlp
from eth_account.typed_transactions import TypedTransaction
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.chain.accounts import (
    DEFAULT_PRIORITY_FEE,
    GAS_MARGIN_PERCENT,
    Fees,
    LocalKeySender,
    Nonces,
    send_and_wait,
    suggest_fees,
    with_gas_margin,
)
from channel_node.chain.outbox import OutboxSender
from channel_node.chain.ports import OnChainChannel
from channel_node.signing import ChannelConfig, keccak256
from channel_node.store import OutboxRow

KEY_A = keccak256(b"accounts test key a")
KEY_B = keccak256(b"accounts test key b")
GWEI = 10**9
fee_values = st.integers(min_value=0, max_value=10**6 * GWEI)


async def _value(value):
    return value


async def _fail(exc: Exception):
    raise exc


class FakeEth:
    """The JSON-RPC answers the policy reads; raw transactions it is sent are kept."""

    def __init__(self, *, base_fee: int | None = 7 * GWEI, tip: int | None = 2 * GWEI, gas_price: int = 9 * GWEI,
                 estimate: int = 84_321, pending: int = 5, refuse: bool = False) -> None:  # fmt: skip
        self.base_fee, self.tip, self._gas_price = base_fee, tip, gas_price
        self.estimate, self.pending, self.refuse = estimate, pending, refuse
        self.raw: list[bytes] = []

    @property
    def chain_id(self):
        return _value(31337)

    @property
    def max_priority_fee(self):
        return _value(self.tip) if self.tip is not None else _fail(ValueError("method not found"))

    @property
    def gas_price(self):
        return _value(self._gas_price)

    async def get_block(self, which):
        return {"number": 1} if self.base_fee is None else {"number": 1, "baseFeePerGas": self.base_fee}

    async def get_transaction_count(self, address, block):
        assert block == "pending"
        return self.pending

    async def estimate_gas(self, tx):
        return self.estimate

    async def send_raw_transaction(self, raw):
        if self.refuse:
            raise ValueError("insufficient funds for gas")
        self.raw.append(bytes(raw))
        return keccak256(bytes(raw))

    async def get_transaction(self, tx_hash):
        raise LookupError("not found")

    async def wait_for_transaction_receipt(self, tx_hash, timeout, poll_latency):
        return {"status": 1, "transactionHash": tx_hash, "blockNumber": 2, "gasUsed": 21_000, "logs": []}


def fake_w3(**kwargs) -> SimpleNamespace:
    return SimpleNamespace(eth=FakeEth(**kwargs))


def decoded(raw: bytes) -> dict:
    """The fields of a signed transaction: typed (EIP-1559) or legacy."""
    if raw[0] < 0x7F:
        return dict(TypedTransaction.from_bytes(HexBytes(raw)).as_dict())
    nonce, gas_price, gas, *_ = rlp.decode(raw)
    return {"nonce": int.from_bytes(nonce, "big"), "gasPrice": int.from_bytes(gas_price, "big"), "gas": int.from_bytes(gas, "big")}  # fmt: skip


# ------------------------------------------------------------------ the rules themselves


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=1 << 64))
def test_the_gas_margin_is_one_integer_rule(estimate):
    gas = with_gas_margin(estimate)
    assert gas == estimate + estimate * GAS_MARGIN_PERCENT // 100 == estimate * (100 + GAS_MARGIN_PERCENT) // 100
    assert isinstance(gas, int) and estimate <= gas <= estimate * 5 // 4


@pytest.mark.parametrize("estimate", [84_321.0, True, -1])
def test_a_gas_estimate_that_is_not_a_natural_number_is_refused_not_rounded(estimate):
    with pytest.raises((TypeError, ValueError)):
        with_gas_margin(estimate)


@settings(max_examples=200, deadline=None)
@given(fee_values, fee_values, fee_values, fee_values, st.booleans())
def test_a_replacement_raises_both_fees_by_at_least_an_eighth_and_to_what_the_chain_asks(
    old_max, old_tip, now_max, now_tip, legacy
):
    current = Fees(now_max, now_tip, legacy)
    bumped = Fees(old_max, old_tip).bumped(current)
    for old, new, now in ((old_max, bumped.max_fee, now_max), (old_tip, bumped.priority_fee, now_tip)):
        assert new * 1000 >= old * 1125 and new > old, "nodes refuse a replacement below +12.5%"
        assert new >= now
        assert new <= max(old * 1125 // 1000 + 1, now), "no more than the rule asks"
    assert bumped.legacy is legacy


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.none(), fee_values), st.one_of(st.none(), fee_values), fee_values)
def test_fees_follow_the_base_fee_or_the_legacy_gas_price(base_fee, tip, gas_price):
    fees = asyncio.run(suggest_fees(fake_w3(base_fee=base_fee, tip=tip, gas_price=gas_price)))
    if base_fee is None:  # a chain without EIP-1559
        assert fees == Fees(gas_price, gas_price, legacy=True) and fees.tx_fields() == {"gasPrice": gas_price}
        return
    expected_tip = DEFAULT_PRIORITY_FEE if tip is None else tip
    assert fees == Fees(2 * base_fee + expected_tip, expected_tip)
    assert fees.tx_fields() == {"maxFeePerGas": 2 * base_fee + expected_tip, "maxPriorityFeePerGas": expected_tip}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40))
def test_nonces_neither_repeat_while_the_node_lags_nor_leave_a_gap_and_follow_the_node_after_a_refusal(steps):
    """Each step: whether the node has caught up with every accepted transaction (a node behind a
    load balancer may not count one just sent yet), and whether this transaction is refused."""
    w3 = fake_w3(pending=0)
    nonces, accepted = Nonces(), []
    forgot_while_lagging = False
    for caught_up, refused in steps:
        if caught_up:
            w3.eth.pending, forgot_while_lagging = len(accepted), False
        nonce = asyncio.run(nonces.take(w3, "0x" + "11" * 20))
        assert w3.eth.pending <= nonce <= len(accepted), "never below the node's count, never a gap"
        if not forgot_while_lagging:
            assert nonce == len(accepted), "while the node lags, the next nonce is the one after the last sent"
        if refused:
            nonces.forget()
            assert asyncio.run(nonces.take(w3, "0x" + "11" * 20)) == w3.eth.pending, "after a refusal: the node's count"
            nonces.forget()
            forgot_while_lagging = w3.eth.pending < len(accepted)
        elif nonce == len(accepted):
            accepted.append(nonce)
        else:  # a nonce the node already holds: refused as too low, forgotten, asked again
            nonces.forget()


# ------------------------------------------------------------------ both senders under the one policy


class StubStore:
    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self.updates: list[tuple[int, dict]] = []

    async def load_channel(self, channel_id):
        return SimpleNamespace(state=SimpleNamespace(config=self.config))

    async def update_outbox(self, row_id, **fields):
        self.updates.append((row_id, fields))

    async def mark_outbox(self, rows, **fields):
        for row in rows:
            self.updates.append((row.id, {**fields, "attempts": row.attempts + 1}))
        return True


def stub_client(address: str) -> SimpleNamespace:
    async def get_channel(channel_id, block="latest"):
        return OnChainChannel(10**18, 0, None, False)

    contract = SimpleNamespace(encode_abi=lambda fn, args: "0x" + keccak256(fn.encode()).hex())
    return SimpleNamespace(address=address, get_channel=get_channel, contract=contract)


def claim_row(signature: bytes, row_id: int = 1) -> OutboxRow:
    return OutboxRow(id=row_id, channel_id=bytes([row_id]) * 32, kind="claim", amount=10, signature=signature,
                     deadline=1000, status="pending", voucher_amount=10)  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(
    base_fee=st.one_of(st.none(), st.integers(min_value=1, max_value=500 * GWEI)),
    tip=st.one_of(st.none(), st.integers(min_value=0, max_value=50 * GWEI)),
    estimate=st.integers(min_value=21_000, max_value=5_000_000),
    pending=st.integers(min_value=0, max_value=1_000),
)
def test_the_contract_client_and_the_outbox_sign_with_the_same_fees_nonce_and_gas(base_fee, tip, estimate, pending):
    contract = to_checksum_address("0x" + "cd" * 20)

    async def run():
        w3 = fake_w3(base_fee=base_fee, tip=tip, estimate=estimate, pending=pending)
        # the contract client's path (every ChannelDepositClient write and ERC-20 approve)
        client_sender = LocalKeySender(KEY_A)
        tx = {"from": client_sender.address, "to": contract, "data": "0x", "value": 0}
        await send_and_wait(w3, client_sender, tx, None, "claim", timeout=1, poll_latency=0)
        # the outbox's path
        key_b = LocalKeySender(KEY_B)
        signature = key_b.sign_digest(keccak256(b"voucher"))
        config = ChannelConfig.create(key_b.address, key_b.address, "0x" + "ab" * 20, None, 3600, 1)
        outbox = OutboxSender(w3, stub_client(contract), StubStore(config), KEY_B)
        await outbox._send([claim_row(signature)])
        return w3, outbox

    w3, outbox = asyncio.run(run())
    by_client, by_outbox = (decoded(raw) for raw in w3.eth.raw)
    fees = asyncio.run(suggest_fees(w3))
    for sent in (by_client, by_outbox):
        assert sent["gas"] == with_gas_margin(estimate)
        assert sent["nonce"] == pending
        if fees.legacy:
            assert sent["gasPrice"] == fees.max_fee
        else:
            assert (sent["maxFeePerGas"], sent["maxPriorityFeePerGas"]) == (fees.max_fee, fees.priority_fee)
    [(_, recorded)] = outbox.store.updates
    assert (recorded["nonce"], recorded["max_fee"], recorded["priority_fee"]) == (pending, fees.max_fee, fees.priority_fee)


async def test_the_outbox_takes_its_nonces_from_the_shared_policy_and_forgets_them_on_a_refusal():
    w3 = fake_w3(pending=7)
    key = LocalKeySender(KEY_B)
    config = ChannelConfig.create(key.address, key.address, "0x" + "ab" * 20, None, 3600, 1)
    store = StubStore(config)
    outbox = OutboxSender(w3, stub_client(to_checksum_address("0x" + "cd" * 20)), store, KEY_B)
    signature = key.sign_digest(keccak256(b"voucher"))
    await outbox._send([claim_row(signature, 1)])
    await outbox._send([claim_row(signature, 2)])  # the node has not counted the first one yet
    assert [decoded(raw)["nonce"] for raw in w3.eth.raw] == [7, 8]
    w3.eth.refuse = True
    await outbox._send([claim_row(signature, 3)])  # refused: back to pending, nonce forgotten
    assert store.updates[-1][1]["status"] == "pending"
    w3.eth.refuse = False
    await outbox._send([claim_row(signature, 4)])
    assert decoded(w3.eth.raw[-1])["nonce"] == 7, "after a refusal the next nonce is the node's count"
