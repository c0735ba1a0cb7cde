"""x402 `exact` sales, the node as its own facilitator (docs/protocol.md, "The `exact` scheme
(node)"): the rules of core/exact.py over what the chain and the store say, the guards (transfers
in flight, gas per hour, the claim key's balance), the record of the sale with its outbox row, and
the wait for its transfer: one waiter table per authorization, woken by the outbox sender
(`OutboxSender.on_exact_finished`).

A paid request: `ExactSales.check` (before the content is fetched: a payment that cannot pay costs
no fetch) -> the paywall fetches the content whole -> `ExactSales.settle` records the sale (the
nonce is held from then on, never released), wakes the sender and waits up to `settle_timeout` for
the transfer's outcome. Confirmed: `serve_exact` marks the one request it bought answered (durable
before delivered) and the content leaves. Timeout: `settlement_pending`; the same header again joins
the same wait and gets the content once confirmed. Failed or expired: the record's code.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3

from channel_node.chain.eip3009 import Eip3009Token
from channel_node.chain.outbox import OutboxSender
from channel_node.chain.ports import ChainUnavailable
from channel_node.core.clocks import ChainTime, WallTime
from channel_node.core.exact import ExactFacts, ExactRefused, ExactTerms, check_exact, check_offline
from channel_node.store import ExactRecord, ExactStatus, ExactWrite, RecordOutcome, Store
from channel_node.store.base import record_outcome
from channel_node.wire.exact import ExactAccepts, ExactPayment, exact_accepts

#: Gas of one transferWithAuthorization (DemoDollar, docs/gas.json) with the sender's 25% margin:
#: what the gas-per-hour guard counts for a transfer in flight.
TRANSFER_GAS = 65_141 * 125 // 100
BALANCE_CACHE_SECONDS = 2.0
# Seconds between reads of a held sale's record while its request waits: the sender that finishes it
# may run in another process (the leader, docs/scaling.md), which cannot wake this one.
STORE_POLL = 0.5


@dataclass(frozen=True)
class ExactRefusedSale:
    """A refusal to answer with a 402 (or `status`), its stable code, and a Retry-After if any."""

    code: str
    detail: str
    status: int = 402
    retry_after: int | None = None


@dataclass(frozen=True)
class ExactChecked:
    """A payment that passed every rule (or the retry of one already recorded): ready to record."""

    write: ExactWrite
    payment: ExactPayment
    joined: bool = False


@dataclass(frozen=True)
class ExactSold:
    record: ExactRecord


@dataclass(frozen=True)
class ExactPending:
    record: ExactRecord


@dataclass
class ExactLimits:
    settle_timeout: float = 20.0
    max_in_flight: int = 64
    max_gas_per_hour: int | None = None
    min_gas_balance: int = 0


class ExactSales:
    def __init__(
        self, w3: AsyncWeb3[Any], store: Store, token: Eip3009Token, terms: ExactTerms, limits: ExactLimits,
        sender: OutboxSender | None, site_wide: bool = True, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.w3 = w3
        self.store = store
        self.token = token
        self.terms = terms
        self.limits = limits
        self.sender = sender
        self.site_wide = site_wide
        self.clock = clock
        self._waiters: dict[bytes, asyncio.Event] = {}
        self._gas: deque[tuple[float, int]] = deque()  # (when, gas) of our confirmed transfers, one hour
        self._balance: tuple[float, int] | None = None
        self.sold = 0
        self.failed = 0
        self.held = 0  # transfers in flight at the last check (the metrics' gauge)
        if sender is not None:
            sender.on_exact_finished = self.finished

    # ------------------------------------------------------------------ the offer

    def taken(self, entry: bool | None) -> bool:
        """Whether a price entry takes `exact` payments: its own `exact`, else the site's setting."""
        return self.site_wide if entry is None else entry

    def offered(self, price: int, entry: bool | None) -> bool:
        """Whether its 402 lists `exact`: taken, and never below `min_price` (the gas of a sale
        could exceed it; a payment sent anyway is `price_below_exact_minimum`)."""
        return self.taken(entry) and price >= self.terms.min_price

    def accepts(self, price: int) -> ExactAccepts:
        d = self.terms.domain
        return exact_accepts(self.terms.network, d.verifying_contract, self.terms.pay_to, price,
                             self.terms.max_timeout_seconds, d.name, d.version)  # fmt: skip

    # ------------------------------------------------------------------ the outbox's side

    def finished(self, key: bytes, gas_used: int) -> None:
        """The sender says a sale's status is final (and the gas our own transfer used, 0 if
        another party's confirmed it or none was mined): wake whoever waits for it."""
        if gas_used:
            self._gas.append((self.clock(), gas_used))
        event = self._waiters.pop(key, None)
        if event is not None:
            event.set()

    def gas_last_hour(self) -> int:
        horizon = self.clock() - 3600
        while self._gas and self._gas[0][0] < horizon:
            self._gas.popleft()
        return sum(gas for _, gas in self._gas)

    # ------------------------------------------------------------------ a paid request

    async def check(self, payment: ExactPayment, resource: str, price: int) -> ExactChecked | ExactRefusedSale:
        now = WallTime(int(self.clock()))
        auth = payment.authorization
        write = ExactWrite(
            self.terms.domain.verifying_contract, auth.from_, auth.nonce, self.terms.pay_to, auth.value,
            auth.valid_after, auth.valid_before, payment.signature, resource, price, now,
        )  # fmt: skip
        # The store first: a retry of a held sale joins its wait even once its window has run short
        # (the transfer is already on its way); the very same authorization, resource and signature,
        # which were checked when it was recorded. Anything else under that nonce is a replay.
        existing = await self.store.exact_payment(write.key)
        if existing is not None:
            if record_outcome(existing, write) == RecordOutcome.JOINED:
                return ExactChecked(write, payment, joined=True)
            return ExactRefusedSale("authorization_used", "this authorization already paid for a request")
        offline = check_offline(payment, self.terms, price, now)
        if isinstance(offline, ExactRefused):
            return ExactRefusedSale(offline.code.value, offline.detail)
        guard = await self._guards()
        if guard is not None:
            return guard
        try:
            head, used, balance = await asyncio.gather(
                self.w3.eth.get_block("latest"), self.token.authorization_state(auth.from_, auth.nonce),
                self.token.balance_of(auth.from_),
            )  # fmt: skip
        except Exception as exc:
            raise ChainUnavailable(f"the token could not be read ({type(exc).__name__})") from None
        facts = ExactFacts(ChainTime(int(head["timestamp"])), used, balance)
        verdict = check_exact(payment, self.terms, price, facts, now)
        if isinstance(verdict, ExactRefused):
            return ExactRefusedSale(verdict.code.value, verdict.detail)
        return ExactChecked(write, payment)

    async def _guards(self) -> ExactRefusedSale | None:
        limits = self.limits
        if self.sender is None:
            return ExactRefusedSale("node_gas_low", "this node holds no key to send transfers", 503, 60)
        held = self.held = await self.store.exact_held()
        if held >= limits.max_in_flight:
            return ExactRefusedSale("exact_busy", f"{held} transfers are in flight; retry shortly", 402, 5)
        if limits.max_gas_per_hour is not None and self.gas_last_hour() + (held + 1) * TRANSFER_GAS > limits.max_gas_per_hour:
            return ExactRefusedSale("exact_gas_budget", "the node's hourly gas budget for exact sales is spent", 402, 600)
        if limits.min_gas_balance and await self._gas_balance() < limits.min_gas_balance:
            return ExactRefusedSale("node_gas_low", "the node's gas balance is too low to settle", 402, 600)
        return None

    async def _gas_balance(self) -> int:
        now = self.clock()
        if self._balance is None or now - self._balance[0] > BALANCE_CACHE_SECONDS:
            assert self.sender is not None
            try:
                balance = int(await self.w3.eth.get_balance(to_checksum_address(self.sender.address)))
            except Exception as exc:
                raise ChainUnavailable(f"the gas balance could not be read ({type(exc).__name__})") from None
            self._balance = (now, balance)
        return self._balance[1]

    async def settle(self, checked: ExactChecked) -> ExactSold | ExactPending | ExactRefusedSale:
        """Records the sale (with its outbox row, one transaction), wakes the sender and waits."""
        key = checked.write.key
        self._waiters.setdefault(key, asyncio.Event())  # before the record: no wake-up is lost
        if not checked.joined:
            record, outcome = await self.store.record_exact(checked.write)
            if outcome == RecordOutcome.USED:
                return ExactRefusedSale("authorization_used", "this authorization already paid for a request")
            if outcome == RecordOutcome.RECORDED and self.sender is not None:
                self.sender.wake()
        deadline = time.monotonic() + self.limits.settle_timeout
        while True:
            event = self._waiters.setdefault(key, asyncio.Event())  # set (and dropped) by `finished`
            record_now = await self.store.exact_payment(key)
            assert record_now is not None, "recorded above or found by check"
            if record_now.status == ExactStatus.CONFIRMED:
                if await self.store.serve_exact(key):
                    self.sold += 1
                    return ExactSold(record_now)
                return ExactRefusedSale("authorization_used", "this authorization's request was already answered")
            if record_now.status != ExactStatus.HELD:
                self.failed += 1
                return ExactRefusedSale(record_now.error or record_now.status.value, f"the transfer {record_now.status.value}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ExactPending(record_now)
            try:  # woken by this process's sender, or reading the store again (another process leads)
                await asyncio.wait_for(event.wait(), min(remaining, STORE_POLL))
            except TimeoutError:
                pass


__all__ = ["TRANSFER_GAS", "ExactChecked", "ExactLimits", "ExactPending", "ExactRefusedSale", "ExactSales", "ExactSold"]
