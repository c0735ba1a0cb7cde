"""The pure channel rules: examples for each outcome, and properties over random event sequences."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.core import (
    Accepted,
    ChannelState,
    ConsentToClose,
    ContractReceiveClaim,
    ContractReceiveCloseRequested,
    ContractReceiveDeposit,
    ContractReceiveSettled,
    ContractSendClaim,
    ContractSendClose,
    NewConfirmedBlock,
    OperatorClaim,
    OperatorClose,
    PaywallCooperativeClose,
    PaywallPayment,
    Reject,
    Rejected,
    transition,
)
from channel_node.signing import ChannelConfig

SIGNER = b"\x05" * 20
CONFIG = ChannelConfig.create(b"\x01" * 20, SIGNER, b"\x02" * 20, None, 3600, 1)


def fresh(deposited: int = 1000) -> ChannelState:
    return ChannelState(channel_id=b"\x09" * 32, config=CONFIG, deposited=deposited)


def pay(amount: int, price: int, signer: bytes = SIGNER, now: int = 0, margin: int = 60) -> PaywallPayment:
    return PaywallPayment(amount=amount, signature=b"sig%d" % amount, signer=signer, price=price, now=now, close_margin=margin)


def test_payment_charges_price_and_keeps_best_voucher():
    state, effects = transition(fresh(), pay(30, 10))
    assert effects == [Accepted(charged=10)]
    assert (state.ceiling, state.charged, state.credit, state.signature) == (30, 10, 20, b"sig30")


def test_prepaid_credit_is_spent_by_resending_the_highest_voucher():
    state, _ = transition(fresh(), pay(30, 10))
    state, effects = transition(state, pay(30, 10))  # the same prepaid voucher again: it covers 20
    assert effects == [Accepted(charged=10)]
    assert (state.ceiling, state.charged, state.signature) == (30, 20, b"sig30")


def test_an_older_lower_voucher_spends_nothing_even_with_credit_left():
    state, _ = transition(fresh(), pay(30, 10))  # 20 of credit left under the ceiling
    after, effects = transition(state, pay(10, 10))  # an old (or leaked) voucher of the channel
    assert effects[0].code is Reject.STALE_VOUCHER and after == state
    after, effects = transition(state, pay(15, 10))  # above charged, below charged + price
    assert effects[0].code is Reject.INSUFFICIENT_VOUCHER and after == state


def test_an_unlocked_resource_is_not_reread_with_an_old_voucher():
    state, _ = transition(fresh(), replace(pay(10, 10), resource="/a"))
    state, _ = transition(state, replace(pay(20, 10), resource="/b"))
    after, effects = transition(state, replace(pay(10, 10), resource="/a", unlocked=True))
    assert effects[0].code is Reject.STALE_VOUCHER and after == state
    _, effects = transition(state, replace(pay(20, 10), resource="/a", unlocked=True))
    assert effects == [Accepted(charged=0, record=False)]


@settings(max_examples=300)
@given(
    prepaid=st.integers(0, 500),
    spent=st.lists(st.integers(1, 50), min_size=1, max_size=10),
    price=st.integers(1, 50),
    older=st.data(),
)
def test_no_voucher_below_charged_plus_price_ever_pays(prepaid, spent, price, older):
    """Whatever the channel's credit, a voucher below charged + price buys nothing and changes nothing."""
    ceiling = sum(spent) + prepaid
    state = fresh(ceiling + 1000)
    for cost in spent:
        state, [effect] = transition(state, pay(ceiling, cost))
        assert effect == Accepted(charged=cost)
    amount = older.draw(st.integers(0, state.charged + price - 1))
    after, effects = transition(state, pay(amount, price))
    assert isinstance(effects[0], Rejected) and after == state
    assert effects[0].code in (Reject.STALE_VOUCHER, Reject.INSUFFICIENT_VOUCHER)


def test_insufficient_voucher_changes_nothing():
    state, _ = transition(fresh(), pay(10, 10))
    after, effects = transition(state, pay(15, 10))
    assert effects[0].code is Reject.INSUFFICIENT_VOUCHER and after == state


def test_refetch_with_zero_price_is_free():
    state, _ = transition(fresh(), pay(10, 10))
    after, effects = transition(state, pay(10, 0))
    assert effects == [Accepted(charged=0)] and after.charged == 10


def test_unlocked_resource_and_retried_payment_are_free_but_keep_a_higher_voucher():
    state, _ = transition(fresh(), pay(10, 10))
    after, effects = transition(state, replace(pay(25, 10), resource="/a", unlocked=True))
    assert effects == [Accepted(charged=0, record=False)]
    assert (after.charged, after.ceiling) == (10, 25)
    after, effects = transition(state, replace(pay(10, 10), resource="/a", payment_id="p1", prior_resource="/a"))
    assert effects == [Accepted(charged=0, record=False)] and after == state


def test_payment_id_reused_for_another_resource_is_refused():
    state, _ = transition(fresh(), pay(30, 10))
    after, effects = transition(state, replace(pay(30, 10), resource="/b", payment_id="p1", prior_resource="/a"))
    assert effects[0].code is Reject.PAYMENT_ID_REUSED and after == state


def test_stale_voucher_is_told_apart_from_an_insufficient_one():
    state, _ = transition(fresh(), pay(20, 20))
    assert transition(state, pay(20, 10))[1][0].code is Reject.STALE_VOUCHER
    assert transition(state, pay(25, 10))[1][0].code is Reject.INSUFFICIENT_VOUCHER


def test_rejections():
    state = fresh()
    assert transition(state, pay(10, 10, signer=b"\x06" * 20))[1][0].code is Reject.INVALID_SIGNATURE
    assert transition(state, pay(1001, 10))[1][0].code is Reject.EXCEEDS_DEPOSIT
    closing, _ = transition(state, ContractReceiveCloseRequested(deadline=1000))
    assert transition(closing, pay(10, 10, now=950, margin=60))[1][0].code is Reject.CHANNEL_CLOSING
    assert transition(closing, pay(10, 10, now=900, margin=60))[1] == [Accepted(charged=10), ContractSendClaim(10, 10, b"sig10", 1000)]
    settled, _ = transition(state, ContractReceiveSettled(total_claimed=0))
    assert transition(settled, pay(10, 10))[1][0].code is Reject.CHANNEL_SETTLED


def test_a_payers_close_is_defended_at_first_sight_and_every_block_until_claimed():
    state, _ = transition(fresh(), pay(30, 10))
    state, effects = transition(state, ContractReceiveCloseRequested(deadline=5000))
    assert effects == [ContractSendClaim(10, 30, b"sig30", 5000)], "claims what was charged, under the best voucher"
    assert transition(state, NewConfirmedBlock(timestamp=4000))[1] == [ContractSendClaim(10, 30, b"sig30", 5000)]
    state, _ = transition(state, ContractReceiveClaim(total_claimed=10))
    assert transition(state, NewConfirmedBlock(timestamp=4001))[1] == [], "a confirmed claim ends the defence"
    idle, effects = transition(fresh(), ContractReceiveCloseRequested(deadline=5000))
    assert effects == [], "nothing signed to us, nothing to defend"


def test_a_better_voucher_during_a_pending_close_refreshes_the_defence_at_once():
    state, _ = transition(fresh(), pay(30, 10))
    state, effects = transition(state, ContractReceiveCloseRequested(deadline=5000))
    assert effects == [ContractSendClaim(10, 30, b"sig30", 5000)]
    state, effects = transition(state, pay(50, 10, now=100))
    assert effects == [Accepted(charged=10), ContractSendClaim(20, 50, b"sig50", 5000)], "the queued claim takes the new voucher"
    _, effects = transition(state, pay(40, 10, now=100))  # spends credit; the best voucher is unchanged
    assert effects == [Accepted(charged=10), ContractSendClaim(30, 50, b"sig50", 5000)], "the claim follows the charged total"
    _, effects = transition(state, replace(pay(50, 10, now=100), resource="/a", unlocked=True))
    assert effects == [Accepted(charged=0, record=False)], "a free re-read changes nothing to claim"
    _, effects = transition(fresh(), pay(30, 10))
    assert effects == [Accepted(charged=10)], "no claim without a pending close"


def test_operator_claim_and_close():
    assert transition(fresh(), OperatorClaim())[1][0].code is Reject.NOTHING_TO_CLAIM
    state, _ = transition(fresh(), pay(30, 10))
    assert transition(state, OperatorClaim()) == (state, [ContractSendClaim(10, 30, b"sig30", None)]), "charged, not the ceiling"
    closing, effects = transition(state, OperatorClose())
    assert effects == [ContractSendClose(10, 30, b"sig30")] and closing.receiver_closing
    claimed, _ = transition(state, ContractReceiveClaim(total_claimed=10))
    assert transition(claimed, OperatorClaim())[1][0].code is Reject.NOTHING_TO_CLAIM, "credit above charged is not ours"
    assert transition(closing, pay(40, 10))[1][0].code is Reject.CHANNEL_CLOSING, "nothing sold after deciding to close"


def test_a_reset_after_a_deep_reorg_may_lower_the_chain_figures():
    from channel_node.core import ChainFigures, ContractReadReset

    state, _ = transition(fresh(1000), pay(300, 100))
    state, effects = transition(state, ContractReadReset(ChainFigures(deposited=200, claimed=0, close_deadline=None, settled=False)))
    assert (state.deposited, state.ceiling, state.charged, effects) == (200, 300, 100, [])
    assert transition(state, pay(350, 10))[1][0].code is Reject.EXCEEDS_DEPOSIT, "no new voucher above the real deposit"
    _, effects = transition(state, ContractReadReset(ChainFigures(deposited=400, claimed=0, close_deadline=90, settled=False)))
    assert effects == [ContractSendClaim(100, 300, b"sig300", 90)]


def test_chain_totals_are_absolute_and_never_go_back():
    state, _ = transition(fresh(100), ContractReceiveDeposit(total_deposited=500))
    state, _ = transition(state, ContractReceiveDeposit(total_deposited=300))  # a stale or replayed log
    assert state.deposited == 500
    state, _ = transition(state, ContractReceiveClaim(total_claimed=50))
    state, _ = transition(state, ContractReceiveClaim(total_claimed=40))
    assert state.claimed == 50


def paid_request(amount: int, price: int, now: int, resource: str, payment_id: str | None) -> PaywallPayment:
    return replace(pay(amount, price, now=now), resource=resource, payment_id=payment_id)


events = st.one_of(
    st.builds(pay, amount=st.integers(0, 3000), price=st.integers(0, 200), now=st.integers(0, 2000)),
    st.builds(
        paid_request,
        amount=st.integers(0, 3000),
        price=st.integers(1, 200),
        now=st.integers(0, 2000),
        resource=st.sampled_from(["/a", "/b", "/c"]),
        payment_id=st.none() | st.sampled_from(["p1", "p2", "p3"]),
    ),
    st.builds(pay, amount=st.integers(0, 3000), price=st.integers(0, 200), signer=st.just(b"\x07" * 20)),
    st.builds(ContractReceiveDeposit, total_deposited=st.integers(0, 3000)),
    st.builds(ContractReceiveClaim, total_claimed=st.integers(0, 3000)),
    st.builds(ContractReceiveCloseRequested, deadline=st.integers(0, 3000)),
    st.builds(ContractReceiveSettled, total_claimed=st.integers(0, 3000)),
    st.builds(NewConfirmedBlock, timestamp=st.integers(0, 3000)),
    st.just(OperatorClaim()),
    st.just(OperatorClose()),
    st.builds(PaywallCooperativeClose, amount=st.integers(0, 3000)),
)


@settings(max_examples=500)
@given(st.lists(events, max_size=60))
def test_properties_over_random_sequences(sequence):
    state = fresh(0)
    served = 0
    collected_elsewhere = 0  # claimed on chain beyond what this node charged, when it sold on top
    unlocked: set[str] = set()  # what the edge's store would record from accepted effects
    paid_by_id: dict[str, str] = {}
    charges_per_id: dict[str, int] = {}
    for event in sequence:
        before = state
        if isinstance(event, PaywallPayment) and event.resource:
            event = replace(event, unlocked=event.resource in unlocked, prior_resource=paid_by_id.get(event.payment_id))
        state, effects = transition(state, event)
        assert state.charged <= state.ceiling, "charged never exceeds the signed ceiling"
        assert state.ceiling <= state.deposited, "the ceiling never exceeds the confirmed deposit"
        assert state.charged >= before.charged and state.ceiling >= before.ceiling
        for effect in effects:
            if isinstance(effect, Accepted):
                served += effect.charged
                if effect.charged:
                    assert event.amount >= state.charged, "a charge is covered by the request's own voucher"
                    jump = state.charged - before.charged - effect.charged
                    assert jump == max(0, before.claimed - before.charged), "a sale goes on top of what was claimed"
                    collected_elsewhere += jump
                elif event.unlocked and event.prior_resource is None:
                    assert event.amount >= max(before.charged, before.claimed), "a free re-read needs a current voucher"
                if effect.record and event.resource:
                    assert event.resource not in unlocked, "a resource is charged once per channel"
                    unlocked.add(event.resource)
                    if event.payment_id:
                        charges_per_id[event.payment_id] = charges_per_id.get(event.payment_id, 0) + 1
                        paid_by_id[event.payment_id] = event.resource
            elif isinstance(effect, (ContractSendClaim, ContractSendClose)):
                assert effect.voucher_amount == state.ceiling <= state.deposited, "transactions carry the best voucher"
                assert effect.amount == state.charged <= effect.voucher_amount, "and claim exactly what was charged"
                assert effect.signature == state.signature
                if isinstance(effect, ContractSendClaim):
                    assert min(effect.amount, state.deposited) > state.claimed, "a claim is sent only when it collects something"
            elif isinstance(effect, ConsentToClose):
                assert effect.amount == event.amount == state.charged, "a cooperative close pays exactly what was charged"
                assert state.receiver_closing
            else:
                assert isinstance(effect, Rejected) and state == before, "a rejection changes nothing"
    assert served + collected_elsewhere == state.charged, "every unit charged was for content served, once"
    assert all(count == 1 for count in charges_per_id.values()), "nothing charged twice for one payment id"


@settings(max_examples=200, deadline=None)
@given(charged=st.integers(0, 500), claimed_elsewhere=st.integers(1, 500), price=st.integers(1, 100), extra=st.integers(0, 600))
def test_credit_claimed_on_chain_never_pays_again(charged, claimed_elsewhere, price, extra):
    """The chain shows more claimed than this node charged (the receiver's other node sold on the
    channel, or this node's database was restored from an older backup): a voucher pays only above
    the claimed total, and the sale is charged on top of it."""
    state, _ = transition(fresh(3000), pay(charged, charged) if charged else ContractReceiveDeposit(3000))
    assert state.charged == charged
    claimed = charged + claimed_elsewhere
    state, _ = transition(state, ContractReceiveClaim(total_claimed=claimed))
    amount = charged + extra
    after, [effect] = transition(state, pay(amount, price))
    if amount >= claimed + price:
        assert isinstance(effect, Accepted) and effect.charged == price and after.charged == claimed + price
        assert after.claim_amount == claimed + price, "the next claim collects this sale"
    else:
        assert isinstance(effect, Rejected) and after == state
        assert effect.code in (Reject.STALE_VOUCHER, Reject.INSUFFICIENT_VOUCHER)


states = st.builds(
    ChannelState,
    channel_id=st.just(b"\x09" * 32),
    config=st.just(CONFIG),
    deposited=st.integers(0, 3000),
    claimed=st.integers(0, 3000),
    ceiling=st.integers(0, 3000),
    charged=st.integers(0, 3000),
    close_deadline=st.none() | st.integers(0, 3000),
    settled=st.booleans(),
    receiver_closing=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(states)
def test_channel_status_is_the_rule_and_matches_what_the_core_does(state):
    from channel_node.core import ChannelStatus, channel_status

    status = channel_status(state)
    if state.settled:
        expected = ChannelStatus.SETTLED
    elif state.receiver_closing:
        expected = ChannelStatus.RECEIVER_CLOSING
    elif state.close_deadline is not None:
        expected = ChannelStatus.CLOSING
    else:
        expected = ChannelStatus.OPEN
    assert status is expected
    assert status.operable == (not state.settled and not state.receiver_closing), "what 'every channel' takes"
    # The status says what the core will do with a payment that is otherwise good.
    good = pay(state.deposited, 0, now=0, margin=0)
    answer = transition(state, good)[1][0]  # the answer comes first (a defence may follow)
    if status is ChannelStatus.SETTLED:
        assert answer == Rejected(Reject.CHANNEL_SETTLED, "the channel has been closed on chain")
    elif status is ChannelStatus.RECEIVER_CLOSING:
        assert isinstance(answer, Rejected) and answer.code is Reject.CHANNEL_CLOSING
    elif status is ChannelStatus.OPEN and state.deposited >= max(state.charged, state.claimed):
        assert isinstance(answer, Accepted), "an open channel sells"
    # And an operator's close is refused exactly on a settled channel.
    closed = transition(state, OperatorClose())[1][0]
    assert isinstance(closed, Rejected) == (status is ChannelStatus.SETTLED)


@settings(max_examples=200, deadline=None)
@given(now=st.integers(0, 5000), margin=st.integers(0, 600), deadline=st.integers(0, 5000))
def test_sales_stop_by_wall_time_within_the_margin_of_a_chain_time_deadline(now, margin, deadline):
    from channel_node.core import ChainTime, WallTime, stops_sales

    state, _ = transition(fresh(), ContractReceiveCloseRequested(deadline=ChainTime(deadline)))
    _, effects = transition(state, pay(30, 10, now=now, margin=margin))
    assert stops_sales(WallTime(now), margin, ChainTime(deadline)) == (now + margin >= deadline)
    refused = isinstance(effects[0], Rejected) and effects[0].code is Reject.CHANNEL_CLOSING
    assert refused == stops_sales(WallTime(now), margin, ChainTime(deadline))
