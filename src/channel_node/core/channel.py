"""The receiver's view of one channel and the pure rules that move it.

`transition(state, event) -> (state, effects)` is the only way a channel changes. It reads no clock,
does no I/O and verifies no signature itself: the edges recover the voucher's signer and pass the
current time in, so the rules stay a plain, testable function.

Accounting (docs/design.md, "Vouchers and credit"): the node keeps the highest signed ceiling (the
voucher amount, with its signature, which is what a claim may go up to) and the charged total. A
request is served only when ITS OWN voucher covers charged + price; then charged grows by the price.
Credit is not a bearer balance: an old or leaked voucher, below what is already charged, buys
nothing. A client that prepaid (signed above what it spent) spends that credit by resending its
highest voucher; one that lost a race to a concurrent request gets a corrective 402 with the
charged total and signs again. Settlement claims the charged total, never the ceiling
(docs/contract.md): the payer's unspent credit goes back to it at every kind of close.

Names (after Raiden's state-change vocabulary, not its code): an input is a `StateChange` named for
its source (`ContractReceive*` from a confirmed log with its transaction and block, `ContractReadReset`
from a direct read, `NewConfirmedBlock`, `Paywall*`, `Operator*`); an output is either an `Answer`
to the request or a `ContractSend*` the outbox executes. Two clocks meet here: a request's wall time
and the close deadline's chain time, compared in one place (`core.clocks.stops_sales`, which says why
that is safe). A channel's status is derived in one place too: `channel_status`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import assert_never

from channel_node.core.clocks import ChainTime, WallTime, stops_sales
from channel_node.core.figures import ChainFigures
from channel_node.core.spending import Sale, Spending, decide
from channel_node.signing import ChannelConfig


class Reject(StrEnum):
    """Stable, machine-readable reasons a payment is refused. Never renamed: clients switch on them."""

    CHANNEL_UNKNOWN = "channel_unknown"  # no confirmed ChannelOpened for this id
    INVALID_SIGNATURE = "invalid_signature"  # does not recover to the channel's voucher signer
    EXCEEDS_DEPOSIT = "exceeds_deposit"  # voucher above the confirmed deposit: top up first
    INSUFFICIENT_VOUCHER = "insufficient_voucher"  # the voucher does not cover charged + price: sign higher
    STALE_VOUCHER = "stale_voucher"  # an old voucher (at or below the charged total) that cannot pay
    PAYMENT_ID_REUSED = "payment_id_reused"  # this payment identifier already paid for another resource
    CLOSE_AMOUNT_TOO_LOW = "close_amount_too_low"  # a cooperative close must pay at least what was charged
    # ... and no more: the node consents only to the charged total, so a reader whose own figure is
    # higher (a wallet that lost track) is told the node's and never pays for what it was not sold.
    CLOSE_AMOUNT_ABOVE_CHARGED = "close_amount_above_charged"
    NOTHING_TO_CLAIM = "nothing_to_claim"  # operator asked to claim, but no voucher is above the claimed total
    CHANNEL_CLOSING = "channel_closing"  # a close is pending and its deadline is within the safety margin
    CHANNEL_SETTLED = "channel_settled"  # the channel has ended on chain
    # The channel names a receiver authorizer this node does not hold: it could never claim what it
    # sold (docs/protocol.md). Open a channel with the offer's `receiverAuthorizer`.
    WRONG_AUTHORIZER = "wrong_authorizer"
    # The channel's close delay is below the offer's minimum: a payer's close could end before the
    # node's defence is sure to land (docs/protocol.md). Open a channel inside extra.closeDelay.
    CLOSE_DELAY_TOO_SHORT = "close_delay_too_short"
    CANNOT_CONSENT = "cannot_consent"  # the node holds no key the contract accepts for this channel's consent
    # Caps and passes (docs/protocol.md, "Caps and passes"): the voucher's `pass` names no pass this
    # node sells, or one that does not cover the requested resource. Nothing is charged or recorded.
    UNKNOWN_PASS = "unknown_pass"
    PASS_NOT_COVERING = "pass_not_covering"


@dataclass(frozen=True)
class ChannelState:
    """What the receiver knows of a channel. Chain figures are confirmed ones only."""

    channel_id: bytes
    config: ChannelConfig
    deposited: int = 0  # confirmed total deposited
    claimed: int = 0  # confirmed total claimed on chain
    ceiling: int = 0  # highest voucher amount received
    signature: bytes = b""  # the voucher signature for `ceiling`
    charged: int = 0  # total charged for content served
    close_deadline: ChainTime | None = None  # set while a payer's close is pending (chain time)
    settled: bool = False
    receiver_closing: bool = False  # the operator decided to close: nothing more is sold on it

    @property
    def credit(self) -> int:
        """Paid for but not yet spent."""
        return self.ceiling - self.charged

    @property
    def remaining_deposit(self) -> int:
        """What the payer can still sign for before it must top up."""
        return self.deposited - self.ceiling

    @property
    def claim_amount(self) -> int:
        """The total a claim or close asks for: what was charged, which the best voucher covers."""
        return min(self.charged, self.ceiling)

    @property
    def unclaimed(self) -> int:
        """Charged but not yet claimed on chain: what a claim would collect now (the contract clamps
        to the deposit). Credit above the charged total is the payer's and is never claimed."""
        return max(0, min(self.claim_amount, self.deposited) - self.claimed)


# ------------------------------------------------------------------ inputs (state changes)
#
# Named after where they come from, so a reader classifies them at a glance:
#   ContractReceive*  a confirmed contract log (carries its transaction hash and block number);
#   ContractReadReset the chain's figures read at a block, forced onto the channel;
#   NewConfirmedBlock a confirmed block's (chain) time;
#   Paywall*          a reader's request at the paywall, checked by the edge;
#   Operator*         the operator's decision (admin API, commands, settlement policy).


@dataclass(frozen=True, kw_only=True)
class _FromChain:
    """Where a chain input came from: the log's transaction and block. None where the figure was
    read directly rather than from a log (a channel's first voucher, a top-up check)."""

    transaction_hash: bytes | None = None
    block_number: int | None = None


@dataclass(frozen=True)
class ContractReceiveDeposit(_FromChain):
    """ChannelOpened or ChannelDeposited: the channel's total deposit (absolute, so replays are harmless)."""

    total_deposited: int


@dataclass(frozen=True)
class ContractReceiveClaim(_FromChain):
    """ChannelClaimed: the total claimed on chain."""

    total_claimed: int


@dataclass(frozen=True)
class ContractReceiveCloseRequested(_FromChain):
    """CloseRequested: the payer started its close; it is final at `deadline` (chain time)."""

    deadline: ChainTime


@dataclass(frozen=True)
class ContractReceiveSettled(_FromChain):
    """ChannelSettled: the channel ended with `total_claimed` paid to the receiver."""

    total_claimed: int


@dataclass(frozen=True)
class ContractReadReset:
    """After a reorg deeper than the confirmation depth (or a read at a block that is gone) the
    chain's figures, read at `block_number`, replace the node's, even where they went down (a
    deposit that is no longer there). The only input that may lower them."""

    figures: ChainFigures
    block_number: int | None = None


@dataclass(frozen=True)
class NewConfirmedBlock:
    """A new confirmed block: while a payer's close is pending, the defence is asserted again until
    a confirmed claim covers the best voucher (the outbox makes repeats free)."""

    timestamp: ChainTime
    block_number: int | None = None


@dataclass(frozen=True)
class PaywallPayment:
    """A request at the paywall carrying a voucher, with what the edge looked up for it under the
    channel's lock.

    `signer` is what the edge recovered from the signature. `unlocked` says this channel already
    paid for `resource` (articles are bought once); `prior_resource` is the resource an earlier
    request with the same `payment_id` paid for, if any (retries must not be charged twice). `now`
    is wall time, compared with the chain-time close deadline only through `clocks.stops_sales`.
    `spending`: the read's cap group, covering passes and what the store counted for them (None:
    neither capped nor covered); `core/spending.py:decide` turns `price` into what it costs.
    """

    amount: int  # the voucher's maxClaimableAmount
    signature: bytes
    signer: bytes
    price: int  # the resource's price
    now: WallTime  # when the request arrived, by the node's clock
    close_margin: int  # refuse new vouchers this many seconds before a pending close's deadline
    resource: str = ""
    payment_id: str | None = None
    unlocked: bool = False
    prior_resource: str | None = None
    spending: Spending | None = None


@dataclass(frozen=True)
class PaywallCooperativeClose:
    """The payer (its signature checked by the edge) asks, at the paywall's cooperative-close
    endpoint, for the receiver's consent to closing now at `amount`. Consenting stops sales on the
    channel: the close is final once on chain."""

    amount: int


@dataclass(frozen=True)
class OperatorClaim:
    """Collect the best voucher now and keep the channel open."""


@dataclass(frozen=True)
class OperatorClose:
    """Close with the best voucher (the rest goes back to the payer); stop selling on the channel."""


ContractReceive = ContractReceiveDeposit | ContractReceiveClaim | ContractReceiveCloseRequested | ContractReceiveSettled
"""The inputs a confirmed contract log becomes (`node/chain_events.py`)."""
ChainInput = ContractReceive | ContractReadReset | NewConfirmedBlock
PaywallInput = PaywallPayment | PaywallCooperativeClose
OperatorInput = OperatorClaim | OperatorClose
StateChange = ChainInput | PaywallInput | OperatorInput
ChannelInput = StateChange
"""Everything `transition` accepts."""


# ------------------------------------------------------------------ outputs (effects)
#
# Two kinds, named apart: answers to the request that caused them (Accepted, Rejected,
# ConsentToClose), which the edge hands back to its caller; and ContractSend*, transactions the
# runtime commits as outbox rows with the state that decided them and the outbox sender executes.


@dataclass(frozen=True)
class Accepted:
    """Serve the content. `charged` is what this request added: 0 for a re-fetch or a retry, which
    the edge must not record again (`record` is False). `sale`: why a recorded read cost what it
    did (its cap group, the pass bought or covering it); None when nothing is recorded or the read
    had no spending terms (the list price)."""

    charged: int
    record: bool = True
    sale: Sale | None = None


@dataclass(frozen=True)
class Rejected:
    code: Reject
    detail: str


@dataclass(frozen=True)
class ConsentToClose:
    """Sign the receiver's consent to a cooperative close at `amount` (the edge signs and answers)."""

    amount: int


@dataclass(frozen=True)
class ContractSendClaim:
    """Raise the claimed total on chain to `amount` (the charged total) under the voucher for
    `voucher_amount` with `signature`. `deadline` (chain time) is when it must be confirmed by, for a
    defence against a payer's close; None when there is no hurry."""

    amount: int
    voucher_amount: int
    signature: bytes
    deadline: ChainTime | None


@dataclass(frozen=True)
class ContractSendClose:
    """Close the channel on chain claiming `amount` (the charged total) under the voucher for
    `voucher_amount`; the contract refunds the rest to the payer."""

    amount: int
    voucher_amount: int
    signature: bytes


Answer = Accepted | Rejected | ConsentToClose
"""Outputs that only answer the request."""
ContractSend = ContractSendClaim | ContractSendClose
"""Outputs the outbox executes on chain."""
Effect = Answer | ContractSend


class ChannelStatus(StrEnum):
    """Where a channel is in its life, as the operator sees it (stored and answered as this text)."""

    OPEN = "open"  # selling
    CLOSING = "closing"  # a payer's close is pending on chain: defended, sales stop near its deadline
    RECEIVER_CLOSING = "receiver_closing"  # the receiver closes or consented to close: nothing more is sold
    SETTLED = "settled"  # ended on chain

    @property
    def operable(self) -> bool:
        """Whether "every channel" operations (claim --all, close --all, settlement) include it:
        neither ended nor already being closed by the receiver (docs/design.md, "Operations")."""
        return self in (ChannelStatus.OPEN, ChannelStatus.CLOSING)


def channel_status(state: ChannelState) -> ChannelStatus:
    """The one derivation of a channel's status. Precedence: settled over the receiver's close
    (which ends in settlement) over a payer's pending close (a receiver closing a channel whose payer
    also asked to close is closing by the receiver: its own close collects the charged total)."""
    if state.settled:
        return ChannelStatus.SETTLED
    if state.receiver_closing:
        return ChannelStatus.RECEIVER_CLOSING
    if state.close_deadline is not None:
        return ChannelStatus.CLOSING
    return ChannelStatus.OPEN


def transition(state: ChannelState, event: StateChange) -> tuple[ChannelState, list[Effect]]:
    """The channel's one rule: every input, from any source, gives the new state and what to do."""
    match event:
        case PaywallPayment():
            return _payment(state, event)
        case ContractReceiveDeposit(total_deposited=total):
            # Totals from the chain are absolute, so a replayed log changes nothing.
            return replace(state, deposited=max(state.deposited, total)), []
        case ContractReceiveClaim(total_claimed=total):
            return replace(state, claimed=max(state.claimed, total)), []
        case ContractReceiveCloseRequested(deadline=deadline):
            # Defend at first sight, not near the deadline (docs/design.md, "Defending a payer's close").
            state = replace(state, close_deadline=deadline)
            return state, _defence(state)
        case ContractReceiveSettled(total_claimed=total):
            return replace(state, claimed=max(state.claimed, total), settled=True), []
        case ContractReadReset(figures=figures):
            state = replace(
                state,
                deposited=figures.deposited,
                claimed=figures.claimed,
                close_deadline=figures.close_deadline,
                settled=figures.settled,
            )
            return state, _defence(state) if state.close_deadline is not None else []
        case NewConfirmedBlock(timestamp=timestamp):
            if state.close_deadline is not None and timestamp < state.close_deadline:
                return state, _defence(state)
            return state, []
        case OperatorClaim():
            if state.settled or state.unclaimed == 0:
                return state, [Rejected(Reject.NOTHING_TO_CLAIM, "no voucher above what is already claimed")]
            return state, [_claim(state)]
        case PaywallCooperativeClose(amount=amount):
            if state.settled:
                return state, [Rejected(Reject.CHANNEL_SETTLED, "the channel has been closed on chain")]
            if amount < state.charged:
                return state, [Rejected(Reject.CLOSE_AMOUNT_TOO_LOW, f"the close must pay at least {state.charged}")]
            if amount > state.charged:
                return state, [Rejected(Reject.CLOSE_AMOUNT_ABOVE_CHARGED, f"the close pays exactly the charged total {state.charged}")]
            if amount > state.deposited:
                return state, [Rejected(Reject.EXCEEDS_DEPOSIT, f"{amount} is above the deposit {state.deposited}")]
            return replace(state, receiver_closing=True), [ConsentToClose(amount)]
        case OperatorClose():
            if state.settled:
                return state, [Rejected(Reject.CHANNEL_SETTLED, "the channel has been closed on chain")]
            return replace(state, receiver_closing=True), [ContractSendClose(state.claim_amount, state.ceiling, state.signature)]
    assert_never(event)


def _claim(state: ChannelState) -> ContractSendClaim:
    return ContractSendClaim(state.claim_amount, state.ceiling, state.signature, state.close_deadline)


def _defence(state: ChannelState) -> list[Effect]:
    """Against a payer's close: claim what was charged before the deadline (the rest is the payer's)."""
    if state.settled or state.unclaimed == 0:
        return []
    return [_claim(state)]


def _payment(state: ChannelState, p: PaywallPayment) -> tuple[ChannelState, list[Effect]]:
    new_state, effects = _charge(state, p)
    if new_state.close_deadline is not None and new_state.claim_amount > state.claim_amount:
        # More charged while the payer's close is pending: the queued defence claims it at once,
        # instead of waiting for the next block's re-assertion.
        effects += _defence(new_state)
    return new_state, effects


def _charge(state: ChannelState, p: PaywallPayment) -> tuple[ChannelState, list[Effect]]:
    """The payment's own decision; its first effect is always Accepted or Rejected."""

    def reject(code: Reject, detail: str) -> tuple[ChannelState, list[Effect]]:
        return state, [Rejected(code, detail)]

    if state.settled:
        return reject(Reject.CHANNEL_SETTLED, "the channel has been closed on chain")
    if state.receiver_closing:
        return reject(Reject.CHANNEL_CLOSING, "the receiver is closing this channel; open a new one")
    if state.close_deadline is not None and stops_sales(p.now, p.close_margin, state.close_deadline):
        return reject(Reject.CHANNEL_CLOSING, "a close is pending; open a new channel")
    if p.signer != state.config.signer:
        return reject(Reject.INVALID_SIGNATURE, "the voucher is not signed by the channel's signer")
    if p.amount > state.deposited:
        return reject(Reject.EXCEEDS_DEPOSIT, f"voucher {p.amount} is above the deposit {state.deposited}")
    if p.prior_resource is not None and p.prior_resource != p.resource:
        return reject(Reject.PAYMENT_ID_REUSED, "this payment identifier already paid for another resource")
    ceiling, signature = (p.amount, p.signature) if p.amount > state.ceiling else (state.ceiling, state.signature)
    if p.prior_resource is not None:
        # A retry of a request already charged (same payment id, same resource) carries that
        # request's voucher, which may since have fallen below the charged total: serve it again.
        return replace(state, ceiling=ceiling, signature=signature), [Accepted(charged=0, record=False)]
    # What the channel has already paid: the charged total, or what the chain shows claimed if that
    # is more (the receiver's other node, or this node's database restored from an older backup,
    # sold on it). A sale goes on top, so credit already collected never pays a second time
    # (docs/security.md, "One receiver, one ledger").
    spent = max(state.charged, state.claimed)
    spending = p.spending
    if spending is not None and spending.buys_uncovered:
        return reject(Reject.PASS_NOT_COVERING, "the pass does not cover this resource")
    buying = spending is not None and spending.buying is not None
    if p.unlocked and not buying:
        # Already bought on this channel: free again, but only for a current voucher, so an old or
        # leaked one opens nothing. A higher voucher is still kept. (A request that buys a pass
        # buys it even for a resource already bought.)
        if p.amount < spent:
            return reject(Reject.STALE_VOUCHER, f"a voucher of at least {spent} is needed to read again")
        return replace(state, ceiling=ceiling, signature=signature), [Accepted(charged=0, record=False)]
    # The price after caps and passes (docs/protocol.md, "Caps and passes"): 0 still needs a
    # current voucher, which identifies the channel.
    sale = decide(p.price, spending, p.now)
    cost = sale.charge
    needed = spent + cost
    if p.amount < needed:  # the request's own voucher must pay: a higher one seen before does not
        code = Reject.STALE_VOUCHER if p.amount < spent or (p.amount == spent and cost) else Reject.INSUFFICIENT_VOUCHER
        return reject(code, f"a voucher of at least {needed} is needed (charged {spent}, price {cost})")
    new_state = replace(state, ceiling=ceiling, signature=signature, charged=needed if cost else state.charged)
    return new_state, [Accepted(charged=cost, sale=sale if spending is not None else None)]
