"""contracts/ExactBatcher.sol: several EIP-3009 authorizations in one transaction (docs/protocol.md,
"The `exact` scheme (node)"). Every item is tried; a failing one (used, expired, redirected, over the
balance, badly signed) is reported in its ItemOutcome and never reverts the others; tokens move from
payer to payee directly and the batcher never holds any; a hostile token cannot make a batch pay
anyone the payers did not sign for. Gas per item is in tests/chain/test_gas.py (scripts/gas_report.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.chain.artifacts import exact_batcher_artifact
from channel_node.chain.batcher import (
    BatchItem,
    decode_transfer_all,
    item_segments,
    raw_destination,
    transfer_all_calldata,
)
from channel_node.signing import keccak256
from channel_node.signing.eip3009 import TokenDomain, TransferAuthorization, sign_authorization
from contract_helpers import deploy_test_contract
from exact_helpers import ExactChain, make_exact_chain

GAS = 3_000_000
FOREVER = 2**40
OUTCOME_TOPIC = keccak256(b"ItemOutcome(uint256,bool)")
TRANSFER_TOPIC = keccak256(b"Transfer(address,address,uint256)")


@dataclass
class World:
    x: ExactChain
    batcher: object
    payees: list


@pytest.fixture(scope="module")
def world() -> World:
    x = make_exact_chain()
    artifact = exact_batcher_artifact()
    batcher = x.chain.deploy(artifact.abi, artifact.bytecode)
    return World(x, batcher, x.chain.accounts[4:8])


def nonce() -> bytes:
    return os.urandom(32)


def item(x: ExactChain, to: str, value: int, *, after: int = 0, before: int = FOREVER, n: bytes | None = None,
         key: bytes | None = None, domain: TokenDomain | None = None, payer=None) -> tuple:  # fmt: skip
    payer = payer or x.payer
    args = (payer.address, to, value, after, before, n or nonce())
    sig = sign_authorization(key or payer.private_key, domain or x.domain, TransferAuthorization(*args))
    return (*args, sig[64], sig[:32], sig[32:64])


def outcomes(receipt, batcher_address: str) -> list[tuple[int, bool]]:
    out = []
    for log in receipt["logs"]:
        if log["address"] == batcher_address and bytes(log["topics"][0]) == OUTCOME_TOPIC:
            data = bytes(log["data"])
            out.append((int.from_bytes(data[:32], "big"), bool(int.from_bytes(data[32:64], "big"))))
    return out


def send(w: World, token: str, items: list[tuple], sender=None):
    receipt = w.x.chain.transact(w.batcher.functions.transferAll(token, items), (sender or w.x.other).address, gas=GAS)
    assert receipt["status"] == 1, "a batch never reverts for its items"
    return receipt


def test_all_items_succeed_and_each_payee_is_paid_from_the_payer(world):
    x = world.x
    token = x.token.address
    values = [100, 200, 300]
    before = [x.balance(p.address) for p in world.payees[:3]]
    payer_before = x.balance(x.payer.address)
    items = [item(x, p.address, v) for p, v in zip(world.payees[:3], values, strict=True)]
    receipt = send(world, token, items)
    assert outcomes(receipt, world.batcher.address) == [(0, True), (1, True), (2, True)]
    assert [x.balance(p.address) for p in world.payees[:3]] == [b + v for b, v in zip(before, values, strict=True)]
    assert x.balance(x.payer.address) == payer_before - sum(values)
    assert x.balance(world.batcher.address) == 0
    # The moves are the token's own Transfer(payer -> payee): nothing goes through the batcher.
    transfers = [log for log in receipt["logs"] if bytes(log["topics"][0]) == TRANSFER_TOPIC]
    assert [(bytes(t["topics"][1])[-20:], bytes(t["topics"][2])[-20:]) for t in transfers] == [
        (bytes.fromhex(x.payer.address[2:]), bytes.fromhex(p.address[2:])) for p in world.payees[:3]
    ]
    assert all(x.used(x.payer.address, it[5]) for it in items)


def test_one_used_nonce_among_good_items_fails_alone(world):
    x = world.x
    used = item(x, world.payees[0].address, 50)
    send(world, x.token.address, [used])
    before = x.balance(world.payees[1].address)
    receipt = send(world, x.token.address, [item(x, world.payees[1].address, 10), used, item(x, world.payees[1].address, 20)])
    assert outcomes(receipt, world.batcher.address) == [(0, True), (1, False), (2, True)]
    assert x.balance(world.payees[1].address) == before + 30


def test_an_empty_batch_does_nothing(world):
    assert outcomes(send(world, world.x.token.address, []), world.batcher.address) == []


def test_a_token_without_code_reverts_the_whole_batch(world):
    x = world.x
    call = world.batcher.functions.transferAll(world.payees[3].address, [item(x, world.payees[0].address, 1)])
    assert x.chain.transact(call, x.other.address, gas=GAS)["status"] == 0


# The class of batches: each item good or broken in one of the ways a payer or a front-runner
# can break it; every good one pays its payee exactly, every broken one moves nothing.
KINDS = ["good", "used", "expired", "not_yet", "redirected", "too_much", "wrong_signer", "other_domain"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6), values=st.lists(st.integers(1, 10**6), min_size=6, max_size=6))
def test_each_item_succeeds_or_fails_on_its_own(world, kinds, values):
    x = world.x
    payee, thief = world.payees[0].address, world.payees[2].address
    head = x.chain.w3.eth.get_block("latest")["timestamp"]
    items, expect = [], []
    for i, kind in enumerate(kinds):
        v = values[i]
        if kind == "good":
            it = item(x, payee, v)
        elif kind == "used":
            it = item(x, payee, v)
            send(world, x.token.address, [it])  # someone submitted it before this batch
        elif kind == "expired":
            it = item(x, payee, v, before=head)
        elif kind == "not_yet":
            it = item(x, payee, v, after=head + 3600)
        elif kind == "redirected":  # signed for the payee, submitted to pay someone else
            signed = item(x, payee, v)
            it = (signed[0], thief, *signed[2:])
        elif kind == "too_much":
            it = item(x, payee, x.balance(x.payer.address) + 1)
        elif kind == "wrong_signer":
            it = item(x, payee, v, key=x.other.private_key)
        else:
            it = item(x, payee, v, domain=TokenDomain("Demo Dollar", "2", x.chain.chain_id, x.token.address))
        items.append(it)
        expect.append(kind == "good")
    before = (x.balance(x.payer.address), x.balance(payee), x.balance(thief))
    receipt = send(world, x.token.address, items)
    assert outcomes(receipt, world.batcher.address) == list(enumerate(expect))
    paid = sum(it[2] for it, ok in zip(items, expect, strict=True) if ok)
    assert (x.balance(x.payer.address), x.balance(payee), x.balance(thief)) == (before[0] - paid, before[1] + paid, before[2])
    assert x.balance(world.batcher.address) == 0
    for it, kind in zip(items, kinds, strict=True):  # a failed item's nonce stays as it was: still usable by its payer
        assert x.used(x.payer.address, it[5]) == (kind in ("good", "used"))


def test_a_hollow_token_reports_success_but_moves_nobodys_tokens(world):
    """A hostile token's call "succeeds" and moves nothing: the outcome alone never proves a
    payment (the node checks the token's Transfer and the payee's balance, docs/security.md), and
    the batch touches no other token: the payer's real DemoDollar stays where it was."""
    x = world.x
    hollow = deploy_test_contract(x.chain, "HollowAuthorizationToken", True)
    domain = TokenDomain("Hollow Dollar", "1", x.chain.chain_id, hollow.address)
    before = (x.balance(x.payer.address), x.balance(world.payees[0].address))
    receipt = send(world, hollow.address, [item(x, world.payees[0].address, 500, domain=domain)])
    assert outcomes(receipt, world.batcher.address) == [(0, True)]
    assert (x.balance(x.payer.address), x.balance(world.payees[0].address)) == before
    assert hollow.functions.balanceOf(world.payees[0].address).call() == 0
    assert x.balance(world.batcher.address) == 0


def test_an_authorization_for_the_real_token_cannot_be_spent_through_another_token(world):
    """A batch names one token; an item signed for DemoDollar but submitted with a hostile token
    reaches only that token, which cannot spend it: DemoDollar's nonce stays unused for the payee's
    own submission, which then pays the payee."""
    x = world.x
    hollow = deploy_test_contract(x.chain, "HollowAuthorizationToken", False)
    it = item(x, world.payees[1].address, 700)
    send(world, hollow.address, [it])
    assert not x.used(x.payer.address, it[5])
    before = x.balance(world.payees[1].address)
    assert outcomes(send(world, x.token.address, [it]), world.batcher.address) == [(0, True)]
    assert x.balance(world.payees[1].address) == before + 700


# ------------------------------------------------------------------ chain/batcher.py, the node's side


addresses = st.binary(min_size=20, max_size=20)
batch_items = st.builds(
    BatchItem, addresses, addresses, st.integers(0, 2**256 - 1), st.integers(0, 2**256 - 1),
    st.integers(0, 2**256 - 1), st.binary(min_size=32, max_size=32),
    st.binary(min_size=64, max_size=64).map(lambda rs: rs + bytes([27])),
)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(token=addresses, items=st.lists(batch_items, max_size=8))
def test_transfer_all_calldata_reads_back_item_by_item(token, items):
    decoded = decode_transfer_all(transfer_all_calldata(token, items))
    assert decoded == (token, [(item.payer, item.nonce) for item in items])
    assert decode_transfer_all(b"\x01\x02\x03\x04" + b"\0" * 64) is None, "other calldata is no batch"


@settings(max_examples=50, deadline=None)
@given(to=addresses, data=st.binary(max_size=300), kind=st.sampled_from(["legacy", "2930", "1559"]))
def test_raw_destination_reads_every_transaction_type_the_outbox_signs(to, data, kind):
    tx = {"to": to_checksum_address(to), "data": "0x" + data.hex(), "value": 0, "gas": 100_000, "nonce": 3, "chainId": 1}
    if kind == "1559":
        tx |= {"maxFeePerGas": 10**9, "maxPriorityFeePerGas": 1}
    else:
        tx |= {"gasPrice": 10**9}
        if kind == "2930":
            tx |= {"accessList": []}
    raw = bytes(Account.sign_transaction(tx, b"\x01" * 32).raw_transaction)
    assert raw_destination(raw) == (to, data)


@settings(max_examples=100, deadline=None)
@given(outcomes_=st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=6))
def test_item_segments_give_each_item_the_logs_before_its_outcome(outcomes_):
    batcher, token = b"\xbb" * 20, b"\x70" * 20
    logs, expected = [], {}
    for index, (ok, n) in enumerate(outcomes_):
        own = [{"address": token, "topics": [TRANSFER_TOPIC], "data": bytes([index, j])} for j in range(n)]
        logs += own
        logs.append({"address": batcher, "topics": [OUTCOME_TOPIC], "data": index.to_bytes(32, "big") + ok.to_bytes(32, "big")})
        expected[index] = (ok, own)
    # An ItemOutcome from any other address is just a log of the item it sits in.
    fake = {"address": token, "topics": [OUTCOME_TOPIC], "data": (0).to_bytes(32, "big") + (1).to_bytes(32, "big")}
    if outcomes_:
        logs.insert(0, fake)
        expected[0] = (expected[0][0], [fake, *expected[0][1]])
    assert item_segments(logs, batcher) == expected
