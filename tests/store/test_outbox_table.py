"""One table from each core ContractSend to its outbox row, one from each outbox kind to how the
sender executes it, one rule for when a row is fulfilled and one definition of an open row; both
stores (memory, SQLite, PostgreSQL) follow them."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.chain.outbox import EXECUTORS, batchable
from channel_node.core import (
    ChannelState,
    ContractSend,
    ContractSendClaim,
    ContractSendClose,
    OperatorClaim,
    OperatorClose,
    PaywallPayment,
    WallTime,
    transition,
)
from channel_node.signing import ChannelConfig
from channel_node.store import (
    OUTBOX_OPEN,
    TO_OUTBOX,
    ChannelWrite,
    ExactWrite,
    OutboxKind,
    OutboxRow,
    OutboxStatus,
    Pin,
    exact_outbox_item,
    fulfilled,
    outbox_item,
    outbox_items,
)
from channel_node.store.postgres import migrations as postgres_migrations
from channel_node.store.sqlite import migrations

PIN = Pin(chain_id=31337, contract=b"\x0c" * 20, receiver=b"\x02" * 20)
SIGNER = b"\x05" * 20
CONFIG = ChannelConfig.create(b"\x01" * 20, SIGNER, PIN.receiver, None, 3600, 1)


def sends() -> st.SearchStrategy[ContractSend]:
    amounts = st.integers(0, 2**256 - 1)
    return st.one_of(
        st.builds(ContractSendClaim, amounts, amounts, st.binary(min_size=65, max_size=65), st.none() | st.integers(0, 2**40)),
        st.builds(ContractSendClose, amounts, amounts, st.binary(min_size=0, max_size=65)),
    )


def test_every_contract_send_has_an_outbox_row_and_every_kind_an_executor():
    assert set(TO_OUTBOX) == set(get_args(ContractSend)), "a ContractSend the runtime could not queue"
    assert set(EXECUTORS) == set(OutboxKind), "an outbox kind the sender could not execute"
    kinds = {outbox_item(send).kind for send in (ContractSendClaim(1, 1, b"s", None), ContractSendClose(1, 1, b"s"))}
    # Each channel kind comes from exactly one effect type; the exact sale's transfer from its record.
    assert kinds == set(OutboxKind) - {OutboxKind.TRANSFER_AUTHORIZATION}, "each kind comes from exactly one effect type"
    write = ExactWrite(b"\x0a" * 20, b"\x01" * 20, b"\x03" * 32, PIN.receiver, 5, 0, 99, b"s" * 65, "/a", 5, 0)
    item = exact_outbox_item(write)
    assert item.kind is OutboxKind.TRANSFER_AUTHORIZATION and item.deadline == 99 and item.amount == 5
    row = OutboxRow(1, write.key, item.kind, item.amount, item.signature, item.deadline, OutboxStatus.PENDING)
    assert not batchable(row) and not batchable(replace(row, deadline=None)), "a transfer always goes alone"


@settings(max_examples=100, deadline=None)
@given(sends())
def test_a_row_carries_what_the_core_decided(send):
    item = outbox_item(send)
    assert item.kind is (OutboxKind.CLAIM if isinstance(send, ContractSendClaim) else OutboxKind.CLOSE)
    assert (item.amount, item.voucher, item.signature) == (send.amount, send.voucher_amount, send.signature)
    assert item.deadline == (send.deadline if isinstance(send, ContractSendClaim) else None)
    assert item.kind in EXECUTORS


@settings(max_examples=100, deadline=None)
@given(st.lists(sends(), max_size=6))
def test_of_several_sends_one_row_per_kind_the_highest(effects):
    items = outbox_items(effects)
    assert len({item.kind for item in items}) == len(items)
    for item in items:
        same = [s.amount for s in effects if outbox_item(s).kind is item.kind]
        assert item.amount == max(same)


def test_the_core_decisions_reach_the_executors():
    """Through the real core: an operator's claim and close become rows the sender can execute, and
    only a claim without a deadline may share a batch."""
    state = ChannelState(channel_id=b"\x09" * 32, config=CONFIG, deposited=100)
    state, _ = transition(state, PaywallPayment(30, b"s" * 65, SIGNER, 10, WallTime(0), 60))
    for action, kind in ((OperatorClaim(), OutboxKind.CLAIM), (OperatorClose(), OutboxKind.CLOSE)):
        _, effects = transition(state, action)
        [item] = outbox_items(effects)
        assert item.kind is kind and item.amount == 10 and item.voucher == 30
        row = OutboxRow(1, state.channel_id, item.kind, item.amount, item.signature, item.deadline, OutboxStatus.PENDING)
        assert batchable(row) is (kind is OutboxKind.CLAIM)
        assert not batchable(replace(row, deadline=500)), "a defence goes alone"


def test_open_statuses_agree_with_the_migrations_partial_index():
    for sqls in ([sql for _, sql in migrations()], [sql for _, _, sql in postgres_migrations()]):
        index = next(m.group(1) for sql in sqls if (m := re.search(r"outbox_open ON outbox.*IN \(([^)]*)\)", sql)))
        assert {s.strip().strip("'") for s in index.split(",")} == {s.value for s in OUTBOX_OPEN}
    assert [s for s in OutboxStatus if s.is_open] == list(OUTBOX_OPEN)
    assert {s.value for s in OutboxStatus} == {"pending", "sent", "done", "abandoned"}, "stored text never changes"


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(OutboxKind)), st.integers(0, 10**6), st.integers(0, 10**6), st.booleans())
def test_fulfilled_is_the_rule(kind, amount, claimed, settled):
    # No channel state fulfils an exact sale's transfer: the sender finishes it (chain/outbox.py).
    expected = kind is not OutboxKind.TRANSFER_AUTHORIZATION and (settled or (kind is OutboxKind.CLAIM and claimed >= amount))
    assert fulfilled(kind, amount, claimed, settled) is expected
    assert fulfilled(kind.value, amount, claimed, settled) is expected, "the stored text decides the same"  # type: ignore[arg-type]


@pytest.fixture
async def store(stores):
    store = await stores.opened(PIN)
    yield store
    await store.close()


_examples = iter(range(1, 10**9))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amounts=st.lists(st.integers(1, 1000), min_size=1, max_size=2), claimed=st.integers(0, 1000), settled=st.booleans())
async def test_every_store_completes_exactly_the_fulfilled_rows(store, amounts, claimed, settled):
    # One store for the test, a new channel for every example: only its rows are looked at.
    state = ChannelState(channel_id=next(_examples).to_bytes(32, "big"), config=CONFIG, deposited=1000)

    async def rows_of(statuses=OUTBOX_OPEN):
        return [row for row in await store.outbox(statuses) if row.channel_id == state.channel_id]

    sends_ = [ContractSendClaim(amounts[0], amounts[0], b"s" * 65, None)]
    if len(amounts) > 1:
        sends_.append(ContractSendClose(amounts[1], amounts[1], b"s" * 65))
    await store.commit(ChannelWrite(state, 0, outbox=outbox_items(sends_)))
    rows = await rows_of()
    assert len(rows) == len(amounts)
    assert all(row.status is OutboxStatus.PENDING and isinstance(row.kind, OutboxKind) for row in rows)
    done = await store.complete_outbox(state.channel_id, claimed, settled)
    assert done == sum(fulfilled(r.kind, r.amount, claimed, settled) for r in rows)
    left = {row.id for row in await rows_of()}
    assert left == {r.id for r in rows if not fulfilled(r.kind, r.amount, claimed, settled)}
    finished = await rows_of((OutboxStatus.DONE,))
    assert all(row.status is OutboxStatus.DONE for row in finished) and len(finished) == done
