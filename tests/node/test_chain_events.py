"""The chain boundary's translation (node/chain_events.py): each confirmed log type becomes the core
input named for it, with the log's transaction hash and block number; direct reads become the
monotone inputs or the one reset; logs that are not a channel's never reach the core."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.chain.logs import (
    EVENT_TYPES,
    ChannelClaimed,
    ChannelDeposited,
    ChannelOpened,
    ChannelSettled,
    CloseRequested,
    PayoutDeferred,
    PendingWithdrawn,
)
from channel_node.chain.ports import ChainChannel, OnChainChannel
from channel_node.core import (
    ChainFigures,
    ChannelState,
    ContractReadReset,
    ContractReceiveClaim,
    ContractReceiveCloseRequested,
    ContractReceiveDeposit,
    ContractReceiveSettled,
    transition,
)
from channel_node.node import chain_events
from channel_node.signing import ChannelConfig

ADDRESS = "0x" + "11" * 20
origin = {"block_number": st.integers(0, 2**40), "log_index": st.integers(0, 1000), "tx_hash": st.binary(min_size=32, max_size=32)}
cid = st.binary(min_size=32, max_size=32)
amount = st.integers(0, 2**128 - 1)

LOGS = {
    ChannelOpened: st.builds(ChannelOpened, channel_id=cid, payer=st.just(ADDRESS), receiver=st.just(ADDRESS),
                             signer=st.just(ADDRESS), token=st.just(ADDRESS), close_delay=st.integers(0, 10**6),
                             salt=st.integers(0, 2**64), receiver_authorizer=st.just(ADDRESS), deposited=amount, **origin),
    ChannelDeposited: st.builds(ChannelDeposited, channel_id=cid, amount=amount, total_deposited=amount, **origin),
    ChannelClaimed: st.builds(ChannelClaimed, channel_id=cid, total_claimed=amount, **origin),
    CloseRequested: st.builds(CloseRequested, channel_id=cid, deadline=st.integers(0, 2**40), **origin),
    ChannelSettled: st.builds(ChannelSettled, channel_id=cid, total_claimed=amount, refunded=amount, **origin),
}  # fmt: skip


def test_every_channel_log_type_is_translated_and_the_others_are_not():
    assert set(LOGS) == set(chain_events.CHANNEL_LOGS)
    assert set(chain_events.CHANNEL_LOGS) | {PayoutDeferred, PendingWithdrawn} == set(EVENT_TYPES)


@settings(max_examples=100, deadline=None)
@given(st.one_of(*LOGS.values()))
def test_a_log_becomes_its_named_input_with_its_origin(log):
    change = chain_events.state_change(log)
    assert (change.transaction_hash, change.block_number) == (log.tx_hash, log.block_number)
    match log:
        case ChannelOpened():
            assert change == ContractReceiveDeposit(log.deposited, transaction_hash=log.tx_hash, block_number=log.block_number)
        case ChannelDeposited():
            assert isinstance(change, ContractReceiveDeposit) and change.total_deposited == log.total_deposited
        case ChannelClaimed():
            assert isinstance(change, ContractReceiveClaim) and change.total_claimed == log.total_claimed
        case CloseRequested():
            assert isinstance(change, ContractReceiveCloseRequested) and change.deadline == log.deadline
        case ChannelSettled():
            assert isinstance(change, ContractReceiveSettled) and change.total_claimed == log.total_claimed
        case _:
            pytest.fail(f"unexpected {log!r}")


def test_an_account_log_is_no_channel_input():
    log = PayoutDeferred(token=ADDRESS, account=ADDRESS, amount=5, block_number=1, log_index=0, tx_hash=b"\x01" * 32)
    with pytest.raises(TypeError):
        chain_events.state_change(log)


figures = st.builds(
    ChainFigures, deposited=st.integers(0, 10**6), claimed=st.integers(0, 10**6),
    close_deadline=st.none() | st.integers(0, 2**40), settled=st.booleans(),
)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(figures, st.integers(0, 10**6), st.integers(0, 10**6), st.none() | st.integers(0, 2**40))
def test_a_read_only_raises_the_node_figures_and_a_reset_replaces_them(on_chain, deposited, claimed, deadline):
    config = ChannelConfig.create(b"\x01" * 20, b"\x05" * 20, b"\x02" * 20, None, 3600, 1)
    state = ChannelState(b"\x09" * 32, config, deposited=deposited, claimed=claimed, close_deadline=deadline)
    raised = state
    for change in chain_events.figures_inputs(on_chain):
        assert change.transaction_hash is None, "a direct read came from no transaction"
        raised, _ = transition(raised, change)
    assert (raised.deposited, raised.claimed) == (max(deposited, on_chain.deposited), max(claimed, on_chain.claimed))
    assert raised.settled == on_chain.settled
    if on_chain.close_deadline is not None:
        assert raised.close_deadline == on_chain.close_deadline
    reset = chain_events.reset(on_chain)
    assert reset == ContractReadReset(on_chain, None)
    replaced, _ = transition(state, reset)
    assert (replaced.deposited, replaced.claimed, replaced.close_deadline, replaced.settled) == (
        on_chain.deposited, on_chain.claimed, on_chain.close_deadline, on_chain.settled,
    )  # fmt: skip


def test_a_reset_from_a_block_bound_read_names_the_block():
    read = ChainChannel(10, 2, None, False, block=77, block_hash=b"\x07" * 32)
    assert chain_events.reset(read) == ContractReadReset(ChainFigures(10, 2, None, False), 77)
    assert OnChainChannel is ChainFigures, "one declaration of the four figures"
