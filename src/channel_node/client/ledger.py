"""The reader's money rules for one channel: pure, synchronous transitions over `Ledger`.

No I/O, no clock, no signatures: the wallet (`client/wallet.py`) verifies what the server presents,
calls these functions under the channel's lock, persists the new state (`client/store.py`) and only
then lets a voucher leave the process. The rules are those of docs/security.md, "The wallet's
exposure bound":

- a new voucher is signed only for `received + lost + in flight + price` (`need`): what was
  delivered, plus the prices of the requests in flight, this one included; while the highest
  voucher already covers that, it is resent and nothing is signed;
- after a corrective 402 the retry carries `charged + price`, where `charged` is the node's figure,
  but only when that figure is explained by what was delivered and what else is in flight;
- a claim of charges for content the wallet never received (a receipt or a corrective 402 above
  what was delivered and is in flight, a body cut short after a charge) costs at most the voucher
  already sent, one price, and marks the ledger `misbehaved`: nothing more is signed or sent until
  the reader trusts the site again (`trust`).

Amounts are ints in the asset's smallest unit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from channel_node.errors import UsageError


class LedgerBlocked(UsageError):
    """The ledger is marked misbehaved: no voucher may be sent from it (see `trust`)."""


@dataclass(frozen=True)
class Pending:
    """A request whose voucher left (or is about to leave) the wallet and whose outcome is open."""

    payment_id: str
    price: int
    resource: str = "/"
    once: bool = False


@dataclass(frozen=True)
class Ledger:
    signed: int = 0  # the highest voucher amount ever signed on the channel; never decreases
    received: int = 0  # what delivered content cost (complete bodies, with a checked receipt)
    charged: int = 0  # the node's charged total as last reported (receipt or corrective 402)
    lost: int = 0  # charged for content never received; non-zero only once the site misbehaved
    active: tuple[Pending, ...] = ()  # requests in flight in this process
    unsure: tuple[Pending, ...] = ()  # sent, outcome unknown (dropped connection, 5xx, a crash)
    misbehaved: str | None = None  # why the site is no longer paid; None while it is

    @property
    def in_flight(self) -> int:
        return sum(p.price for p in self.active)

    @property
    def unknown(self) -> int:
        return sum(p.price for p in self.unsure)

    @property
    def exposure(self) -> int:
        """What the node could claim beyond the content delivered: the signed total minus that."""
        return self.signed - self.received

    @property
    def credit(self) -> int:
        """Signed but neither delivered, lost, in flight nor of unknown outcome: vouchers of refused
        requests. The next reservations spend it before anything new is signed."""
        return max(0, self.signed - self.received - self.lost - self.in_flight - self.unknown)

    def need(self, price: int) -> int:
        """The voucher a new request of `price` must carry when everything in flight is charged first."""
        return self.received + self.lost + self.in_flight + price

    def find(self, payment_id: str) -> Pending | None:
        return next((p for p in self.active if p.payment_id == payment_id), None)

    def _without(self, payment_id: str) -> tuple[Pending, ...]:
        return tuple(p for p in self.active if p.payment_id != payment_id)


@dataclass(frozen=True)
class Send:
    """The voucher to send: `amount`; `fresh` when it must be signed now (amount > the old signed)."""

    amount: int
    fresh: bool


def _check_amount(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{name} must be a non-negative int")


def reserve(ledger: Ledger, pending: Pending) -> tuple[Ledger, Send]:
    """A new request: which voucher it carries. Raises LedgerBlocked for a misbehaved site."""
    _check_amount(pending.price, "price")
    if ledger.misbehaved is not None:
        raise LedgerBlocked(ledger.misbehaved)
    if ledger.find(pending.payment_id) is not None:
        raise ValueError(f"payment id {pending.payment_id} is already in flight")
    if pending.price == 0 and ledger.signed > 0:
        send = Send(ledger.signed, False)  # a re-read: any voucher of the channel does
    else:
        need = ledger.need(pending.price)
        send = Send(ledger.signed, False) if ledger.signed >= need else Send(need, True)
    return replace(ledger, signed=max(ledger.signed, send.amount), active=ledger.active + (pending,)), send


def refused(ledger: Ledger, payment_id: str) -> Ledger:
    """The node refused the request and says it charged nothing (a 4xx with a code, a free answer).
    Its voucher stays signed: it is credit the next reservation resends instead of signing more."""
    return replace(ledger, active=ledger._without(payment_id))


def unknown(ledger: Ledger, payment_id: str) -> Ledger:
    """The outcome is unknown (connection dropped, timeout, 5xx, 2xx/3xx without a receipt): the node
    may have charged. Kept as `unsure` until a receipt with nothing in flight settles it."""
    pending = ledger.find(payment_id)
    if pending is None:
        return ledger
    return replace(ledger, active=ledger._without(payment_id), unsure=ledger.unsure + (pending,))


def _misbehave(ledger: Ledger, problem: str, *, charged: int | None = None) -> Ledger:
    return replace(ledger, misbehaved=ledger.misbehaved or problem, charged=ledger.charged if charged is None else charged)


def corrective(ledger: Ledger, payment_id: str, node_charged: int) -> tuple[Ledger, Send | None]:
    """A corrective 402 (insufficient or stale voucher) stating the node's `node_charged` total for
    the request `payment_id`. Returns the voucher for the retry, or None with the ledger marked
    misbehaved when the node claims charges the wallet cannot account for: more than was delivered
    plus the other requests in flight (the refused request itself was not charged, the node says)."""
    _check_amount(node_charged, "charged")
    pending = ledger.find(payment_id)
    if pending is None:
        raise ValueError(f"payment id {payment_id} is not in flight")
    if ledger.misbehaved is not None:
        return refused(ledger, payment_id), None
    others = ledger.in_flight - pending.price
    credible = ledger.received + ledger.lost + others
    if node_charged > credible:
        problem = (
            f"claims a charged total of {node_charged}, but only {ledger.received} of content was delivered "
            f"and {others} is in flight besides this request"
        )
        return _misbehave(refused(ledger, payment_id), problem, charged=max(ledger.charged, node_charged)), None
    target = node_charged + pending.price
    send = Send(ledger.signed, False) if ledger.signed >= target else Send(target, True)
    return replace(ledger, signed=max(ledger.signed, send.amount), charged=node_charged), send


def delivered(
    ledger: Ledger, payment_id: str, amount: int, total: int, *, complete: bool = True
) -> Ledger:
    """A checked-for-shape receipt (`chargedAmount`, `chargedTotal`) for `payment_id`. `complete`: the
    body arrived in full. The ledger comes back `misbehaved` (and nothing of it counted as received)
    when the receipt charges more than the price, reports more than was ever signed, or a total that
    what was delivered and is in flight does not explain, or when a charged body was cut short."""
    _check_amount(amount, "chargedAmount")
    _check_amount(total, "chargedTotal")
    pending = ledger.find(payment_id)
    if pending is None:
        raise ValueError(f"payment id {payment_id} is not in flight")
    rest = ledger._without(payment_id)
    if amount > pending.price:
        return _misbehave(replace(ledger, active=rest), f"charged {amount} for a resource offered at {pending.price}")
    if total > ledger.signed:
        return _misbehave(
            replace(ledger, active=rest), f"reports a charged total of {total}, above the {ledger.signed} this wallet ever signed"
        )
    unsure = ledger.unsure
    recovered = 0
    if amount == 0 and pending.once:
        # A free re-read of a resource an unsure request paid for: that charge was delivered after all.
        earlier = next((p for p in unsure if p.once and p.resource == pending.resource), None)
        if earlier is not None:
            recovered = earlier.price
            unsure = tuple(p for p in unsure if p is not earlier)
    received = ledger.received + recovered + (amount if complete else 0)
    lost = ledger.lost + (0 if complete else amount)
    others = sum(p.price for p in rest)
    credible = received + lost + others
    if total > credible:
        problem = (
            f"charged total {total} is more than the {received} delivered plus {others} in flight "
            f"(charges for content this wallet never received)"
        )
        return _misbehave(replace(ledger, active=rest, charged=max(ledger.charged, total)), problem)
    if not rest and total <= received + lost:
        unsure = ()  # nothing in flight and every charge accounted for: the unsure ones were not charged
    state = replace(ledger, active=rest, unsure=unsure, received=received, lost=lost, charged=total)
    if not complete and amount:
        return _misbehave(state, f"charged {amount} for a response whose body was cut short")
    return state


def adopt(ledger: Ledger, voucher: int, node_charged: int, payment_id: str | None = None) -> Ledger:
    """The node holds a voucher of ours (the caller checked our key signed it) above `signed`: this
    wallet lost records (a restored copy, a rebuilt database). `signed` rises to it and the charges
    it covers, as far as the other requests in flight do not explain them, count as received: they
    were paid for with vouchers this wallet signed under these rules before it forgot them.
    `node_charged` must not include the request `payment_id` itself."""
    _check_amount(voucher, "voucher")
    _check_amount(node_charged, "charged")
    if voucher <= ledger.signed:
        return ledger
    pending = ledger.find(payment_id) if payment_id is not None else None
    others = ledger.in_flight - (pending.price if pending else 0)
    received = max(ledger.received, min(node_charged, voucher) - ledger.lost - others)
    return replace(ledger, signed=voucher, received=received, charged=max(ledger.charged, node_charged))


def restart(ledger: Ledger) -> Ledger:
    """A fresh process: requests that were in flight when the last one stopped have unknown outcomes."""
    return replace(ledger, active=(), unsure=ledger.unsure + ledger.active)


def trust(ledger: Ledger) -> Ledger:
    """The reader says the site may be paid again: it accepts what was lost there and the node's
    charged total as last claimed (at most what was signed), settles the unsure requests with it, and
    the bound restarts from there."""
    accepted = max(ledger.received + ledger.lost, min(ledger.charged, ledger.signed) - ledger.in_flight)
    return replace(ledger, misbehaved=None, received=accepted, lost=0, unsure=())


__all__ = [
    "Ledger",
    "LedgerBlocked",
    "Pending",
    "Send",
    "adopt",
    "corrective",
    "delivered",
    "refused",
    "reserve",
    "restart",
    "trust",
    "unknown",
]
