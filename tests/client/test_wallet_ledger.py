"""The reader's ledger (client/ledger.py) against a simulated node, honest or not, over random
sequences of requests, concurrency, deliveries, cut bodies, lost responses, refusals, corrective
402s, lies, restarts and the reader's trust. The bound it must keep (docs/security.md, "The
wallet's exposure bound"): what the node could claim beyond the content delivered is at most the
prices in flight or of unknown outcome plus one price per request that was in flight together
(refused vouchers' credit, or the one price a misbehaving site costs before it is blocked)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from channel_node.client.ledger import (
    Ledger,
    LedgerBlocked,
    Pending,
    adopt,
    corrective,
    delivered,
    refused,
    reserve,
    restart,
    trust,
    unknown,
)

PRICES = st.sampled_from([1, 2, 5, 7])
MAX_PRICE = 7
MAX_CONCURRENT = 4
OUTCOMES = ["deliver", "cut", "drop", "server_error", "channel_unknown", "no_receipt"]
LIES = ["claim_just_sent", "claim_one_more", "receipt_total_up", "receipt_amount_up", "receipt_above_signed"]


class Node:
    """The receiver's rule (core/channel.py, item 9): a request is served when the voucher's OWN amount
    covers charged + price; then charged grows by the price."""

    def __init__(self) -> None:
        self.charged = 0
        self.best = 0  # the highest voucher received: what it could claim on chain

    def pay(self, amount: int, price: int) -> bool:
        self.best = max(self.best, amount)
        if amount < self.charged + price:
            return False
        self.charged += price
        return True


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.ledger = Ledger()
        self.node = Node()
        self.requests: dict[str, tuple[int, int]] = {}  # payment id -> (price, voucher amount carried)
        self.ids = itertools.count()
        self.delivered = 0  # value of the complete bodies the reader got
        self.sent_max = 0  # the highest voucher that ever left the wallet
        self.signed_amounts: set[int] = set()
        self.peak = 1
        self.forgiven = 0  # accepted by the reader's trust
        self.failures = False  # any event but an honest full delivery happened
        self.undelivered = False  # the node charged a request whose content the reader never got

    # ------------------------------------------------------------------ helpers

    def _sent(self, amount: int) -> None:
        self.sent_max = max(self.sent_max, amount)
        assert amount <= self.ledger.signed

    def _apply_send(self, before: Ledger, after: Ledger, send) -> None:
        assert after.signed >= before.signed, "signed never decreases"
        if send.fresh:
            assert send.amount > before.signed, "a fresh voucher is above everything signed before"
            assert send.amount not in self.signed_amounts, "one total is signed once"
            self.signed_amounts.add(send.amount)
        else:
            assert send.amount == before.signed, "otherwise the highest voucher is resent"

    def _pick(self, data) -> str:
        return data.draw(st.sampled_from(sorted(self.requests)))

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: self.ledger.misbehaved is None and len(self.requests) < MAX_CONCURRENT)
    @rule(price=PRICES)
    def request(self, price: int) -> None:
        pid = f"p{next(self.ids)}"
        before = self.ledger
        self.ledger, send = reserve(before, Pending(pid, price))
        self._apply_send(before, self.ledger, send)
        if not send.fresh:
            assert before.signed >= before.need(price), "resends only while the top voucher covers the need"
        else:
            assert send.amount == before.need(price), "signs exactly received + in flight + price"
        self.requests[pid] = (price, send.amount)
        self._sent(send.amount)
        self.peak = max(self.peak, len(self.requests))

    @precondition(lambda self: self.requests)
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def node_answers(self, data, outcome: str) -> None:
        pid = self._pick(data)
        price, amount = self.requests[pid]
        if outcome in ("channel_unknown", "server_error"):  # refused before any charge
            del self.requests[pid]
            self.failures = True
            self.node.best = max(self.node.best, amount)  # a dishonest node keeps it anyway
            self.ledger = refused(self.ledger, pid) if outcome == "channel_unknown" else unknown(self.ledger, pid)
            return
        if not self.node.pay(amount, price):
            before = self.ledger
            self.ledger, send = corrective(before, pid, self.node.charged)
            if send is None:  # an honest node's figure is explained unless it charged content never delivered
                assert before.misbehaved is not None or self.undelivered, f"honest corrective refused: {before}"
                del self.requests[pid]
                return
            self._apply_send(before, self.ledger, send)
            assert send.amount >= self.node.charged + price, "the retry covers charged + price"
            self.requests[pid] = (price, send.amount)
            self._sent(send.amount)
            return
        del self.requests[pid]
        if outcome == "deliver":
            before = self.ledger
            self.ledger = delivered(before, pid, price, self.node.charged)
            if not self.undelivered:
                assert self.ledger.misbehaved == before.misbehaved, "an honest receipt is accepted"
            self.delivered += price
            return
        self.failures = True
        if outcome == "cut":
            self.ledger = delivered(self.ledger, pid, price, self.node.charged, complete=False)
            assert self.ledger.misbehaved is not None, "a charged body cut short blocks the site"
            assert self.ledger.received <= self.delivered + self.forgiven, "and is not counted as received"
        else:  # the response was lost after the charge, or came without a receipt
            self.ledger = unknown(self.ledger, pid)
        self.undelivered = True

    @precondition(lambda self: self.requests and self.ledger.misbehaved is None)
    @rule(data=st.data(), lie=st.sampled_from(LIES))
    def node_lies(self, data, lie: str) -> None:
        pid = self._pick(data)
        price, amount = self.requests.pop(pid)
        self.failures = True
        self.node.best = max(self.node.best, amount)
        others = sum(p for p, _ in self.requests.values())
        if lie.startswith("claim"):  # a corrective 402 with figures the wallet cannot account for
            claimed = amount if lie == "claim_just_sent" else self.ledger.received + self.ledger.lost + others + 1
            before = self.ledger
            self.ledger, send = corrective(before, pid, claimed)
            if send is not None:  # the claim happened to be explainable: the wallet retries honestly
                self._apply_send(before, self.ledger, send)
                assert claimed <= before.received + before.lost + others
                self.requests[pid] = (price, send.amount)
                self._sent(send.amount)
            return
        total = {
            "receipt_total_up": self.ledger.received + self.ledger.lost + price + others + 1,
            "receipt_amount_up": self.node.charged,
            "receipt_above_signed": self.ledger.signed + 1,
        }[lie]
        charged_amount = price + 1 if lie == "receipt_amount_up" else price
        self.ledger = delivered(self.ledger, pid, charged_amount, total)
        assert self.ledger.misbehaved is not None, f"the lie {lie} is caught"

    @precondition(lambda self: self.ledger.unsure and not self.requests)
    @rule()
    def a_quiet_receipt_settles_the_unknown(self) -> None:
        # The next honest receipt with nothing else in flight: if the node charged an unsure request,
        # its total says so and the wallet blocks; if not, the unsure ones are cleared.
        if self.ledger.misbehaved is not None:
            return
        pid = f"p{next(self.ids)}"
        before = self.ledger
        self.ledger, send = reserve(before, Pending(pid, 1))
        self._apply_send(before, self.ledger, send)
        self._sent(send.amount)
        self.requests[pid] = (1, send.amount)

    @rule(charged=st.lists(st.booleans(), max_size=MAX_CONCURRENT))
    def crash_and_restart(self, charged: list[bool]) -> None:
        # The process dies with requests in flight; the node may or may not have charged them.
        # `charged` is padded with False past the requests in flight (strict=False: the pad is cut off).
        in_flight = sorted(self.requests.items())
        for (_pid, (price, amount)), did in zip(in_flight, charged + [False] * MAX_CONCURRENT, strict=False):
            if did and self.node.pay(amount, price):
                self.undelivered = True
            self.node.best = max(self.node.best, amount)
        if self.requests:
            self.failures = True
        self.requests.clear()
        unsure_before = self.ledger.unknown + self.ledger.in_flight
        self.ledger = restart(self.ledger)
        assert self.ledger.active == () and self.ledger.unknown == unsure_before, "nothing sent is forgotten"

    @precondition(lambda self: self.ledger.misbehaved is not None and not self.requests)
    @rule()
    def reader_trusts_the_site(self) -> None:
        before = self.ledger
        self.ledger = trust(before)
        assert self.ledger.misbehaved is None and self.ledger.lost == 0
        assert self.ledger.received <= self.sent_max, "trust accepts at most what was signed"
        self.forgiven += self.ledger.received - before.received

    @precondition(lambda self: self.ledger.misbehaved is not None)
    @rule(price=PRICES)
    def a_blocked_site_is_not_paid(self, price: int) -> None:
        with pytest.raises(LedgerBlocked):
            reserve(self.ledger, Pending(f"p{next(self.ids)}", price))

    # ------------------------------------------------------------------ invariants

    @invariant()
    def exposure_is_bounded(self) -> None:
        slack = MAX_PRICE * self.peak
        in_flight = sum(p for p, _ in self.requests.values())
        exposure = self.sent_max - self.delivered - self.forgiven
        assert exposure <= in_flight + self.ledger.unknown + slack, (
            f"sent {self.sent_max} for {self.delivered} delivered; in flight {in_flight}, "
            f"unknown {self.ledger.unknown}, peak concurrency {self.peak}: {self.ledger}"
        )
        if self.peak == 1:  # one request at a time: a single price at most, refusals and lies included
            assert exposure <= in_flight + self.ledger.unknown + MAX_PRICE

    @invariant()
    def nothing_is_counted_as_received_that_was_not(self) -> None:
        assert self.ledger.received <= self.delivered + self.forgiven

    @invariant()
    def honest_and_reliable_means_exact(self) -> None:
        if not self.failures and not self.requests:
            assert self.ledger.signed == self.ledger.received == self.node.charged == self.delivered

    @invariant()
    def lost_only_with_a_block(self) -> None:
        assert self.ledger.lost == 0 or self.ledger.misbehaved is not None


LedgerMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLedger = LedgerMachine.TestCase


# ------------------------------------------------------------------ the reported sequences


def test_7a_failed_attempts_while_the_deposit_is_unconfirmed_sign_nothing_new():
    """Three `wallet get` attempts refused with channel_unknown, then confirmed: three articles cost
    three prices, and the node's rule (voucher >= charged + price) accepts every voucher sent."""
    price, ledger, node = 20, Ledger(), Node()
    for n in range(3):
        ledger, send = reserve(ledger, Pending(f"u{n}", price))
        assert send.amount == price and send.fresh == (n == 0)
        ledger = refused(ledger, f"u{n}")
    for n in range(4):
        ledger, send = reserve(ledger, Pending(f"a{n}", price))
        assert node.pay(send.amount, price)
        ledger = delivered(ledger, f"a{n}", price, node.charged)
    assert ledger.signed == ledger.received == node.charged == node.best == 4 * price


def test_7b_a_corrective_402_presenting_the_voucher_just_sent_as_charged_costs_one_price():
    price, ledger = 20, Ledger()
    for n in range(3):
        try:
            ledger, send = reserve(ledger, Pending(f"r{n}", price))
        except LedgerBlocked:
            break
        ledger, retry = corrective(ledger, f"r{n}", send.amount)
        assert retry is None
    assert ledger.misbehaved and ledger.signed == price, "one price, then nothing more is signed"


@settings(max_examples=100, deadline=None)
@given(prices=st.lists(PRICES, min_size=1, max_size=8), order=st.randoms(use_true_random=False))
def test_concurrent_requests_answered_in_any_order_never_overpay(prices, order):
    ledger, node = Ledger(), Node()
    carried = {}
    for n, price in enumerate(prices):
        ledger, send = reserve(ledger, Pending(f"c{n}", price))
        carried[f"c{n}"] = (price, send.amount)
    waiting = list(carried)
    order.shuffle(waiting)
    for _ in range(len(prices) * 3):
        if not waiting:
            break
        pid = waiting.pop(0)
        price, amount = carried[pid]
        if node.pay(amount, price):
            ledger = delivered(ledger, pid, price, node.charged)
            assert ledger.misbehaved is None
        else:
            ledger, send = corrective(ledger, pid, node.charged)
            assert send is not None and send.amount >= node.charged + price
            carried[pid] = (price, send.amount)
            waiting.append(pid)
    assert not waiting
    assert ledger.signed == node.charged == ledger.received == sum(prices), "exactly what was bought"


def test_a_restored_wallet_adopts_its_own_higher_voucher_and_pays_one_price_more():
    price = 10
    ledger, send = reserve(Ledger(), Pending("x", price))  # the copy knew nothing
    ledger = adopt(ledger, 40, 40, "x")  # the node shows our voucher for 40, all charged
    ledger, retry = corrective(ledger, "x", 40)
    assert retry is not None and retry.amount == 50 and retry.fresh
    ledger = delivered(ledger, "x", price, 50)
    assert (ledger.signed, ledger.received, ledger.misbehaved) == (50, 50, None)


def test_a_free_reread_of_an_article_whose_response_was_lost_counts_it_as_received():
    price = 10
    ledger, _ = reserve(Ledger(), Pending("a", price, "/a", once=True))
    ledger = unknown(ledger, "a")  # the node charged it; the response was lost
    ledger, send = reserve(ledger, Pending("b", price, "/a", once=True))
    assert not send.fresh and send.amount == price
    ledger = delivered(ledger, "b", 0, price)  # served free: already bought
    assert (ledger.received, ledger.unsure, ledger.misbehaved) == (price, (), None)


def test_a_lost_response_for_an_api_call_that_was_charged_blocks_after_one_price():
    price = 10
    ledger, _ = reserve(Ledger(), Pending("a", price))
    ledger = unknown(ledger, "a")
    ledger, send = reserve(ledger, Pending("b", price))
    assert send.amount == price and not send.fresh
    ledger, retry = corrective(ledger, "b", price)  # the node did charge "a": "b" is stale
    assert retry is None and ledger.misbehaved and ledger.signed == price
    ledger = trust(ledger)
    ledger, send = reserve(ledger, Pending("c", price))
    assert send.amount == 2 * price, "trusted again: the bound restarts from what the reader accepted"


def test_a_version_1_wallet_database_is_migrated_and_counts_what_was_charged_as_received(tmp_path):
    import sqlite3

    from channel_node.client.store import _SCHEMA, WalletStore

    v1 = "\n".join(l for l in _SCHEMA.splitlines() if not l.strip().startswith(("received", "lost", "pending")))
    v1 = v1.replace("created_at   INTEGER NOT NULL,\n);", "created_at   INTEGER NOT NULL\n);")
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.executescript(v1)
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute(
            "INSERT INTO channels (channel_id, chain_id, contract, payer, signer, receiver, token, close_delay, salt,"
            " deposited, signed, charged, status, created_at) VALUES (?,1,?,?,?,?,?,3600,'1','100','70','40','open',0)",
            ("0x" + "11" * 32, *["0x" + "22" * 20] * 5),
        )
    store = WalletStore(tmp_path / "old.db")
    try:
        [record] = store.channels()
        assert (record.signed, record.charged, record.received, record.lost, record.pending) == (70, 40, 40, 0, ())
    finally:
        store.close()
