"""Caps and passes, the pure rules (core/spending.py, through core/channel.py:transition), as the
issue lists them: within any period a channel is never charged more than its cap; a valid pass is
never charged again for what it covers; re-reads stay free; nothing is double-charged across a
period boundary; concurrent requests at the cap boundary never overshoot it (the real Runtime over
the memory store, two "processes" on one store, many requests at once).

A generated scenario is a sequence of reads (time gaps, resource, price, whether it buys the day
pass) against one cap (calendar day/week/month in a time zone with DST, or rolling N days) and one
pass. The harness plays the runtime: the store's answer is `store/base.py:spending_lookup` over the
charges recorded so far; the checks use an independent oracle (local dates from `datetime`,
passes from the purchases)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.core import Accepted, ChannelState, PaywallPayment, WallTime, transition
from channel_node.core.spending import (
    DAY,
    Cap,
    Pass,
    Period,
    PeriodKind,
    SaleKind,
    Spending,
    decide,
    parse_duration,
    parse_period,
    progress,
    window,
)
from channel_node.node.runtime import PaymentRequest, Runtime
from channel_node.signing import (
    ChannelConfig,
    Domain,
    address_of_key,
    channel_id,
    keccak256,
    sign_digest,
    voucher_digest,
)
from channel_node.store import ChannelWrite, Charge, MemoryStore, Pin, SpendingQuery, spending_lookup

SIGNER = b"\x05" * 20
CONFIG = ChannelConfig.create(b"\x01" * 20, SIGNER, b"\x02" * 20, None, 3600, 1)
HOUR = 3600
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Chatham",
         "America/Santiago", "Asia/Beirut"]  # fmt: skip
PERIODS = ["day", "week", "month", "1d", "3d", "30d"]
# Local times near the boundaries that matter: month and year ends, DST changes north and south.
MOMENTS = [(2026, 12, 31, 23, 30), (2026, 3, 29, 1, 30), (2026, 10, 25, 2, 30), (2026, 3, 8, 1, 59),
           (2026, 4, 5, 0, 30), (2026, 9, 6, 23, 50), (2027, 2, 28, 23, 0), (2026, 6, 30, 12, 0)]  # fmt: skip
NEWS = ["/news/a", "/news/b", "/news/c", "/news/d", "/news/e"]
OTHER = ["/other/x", "/other/y"]


@dataclass(frozen=True)
class Read:
    gap: int
    resource: str
    buys: bool


@dataclass(frozen=True)
class Scenario:
    zone: ZoneInfo
    cap: Cap
    day_pass: Pass
    start: int
    reads: list[Read]
    prices: dict[str, int]  # one price per resource, as a price table gives


gaps = st.one_of(st.just(0), st.integers(1, 120), st.integers(1, 2 * DAY), st.integers(1, 40 * DAY))
reads = st.builds(Read, gap=gaps, resource=st.sampled_from(NEWS + OTHER), buys=st.integers(0, 9).map(lambda n: n == 0))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    cap = Cap("news", draw(st.integers(1, 60)), parse_period(draw(st.sampled_from(PERIODS))))
    day_pass = Pass("day", draw(st.integers(1, 40)), parse_duration(draw(st.sampled_from(["1h", "1d", "3d"]))),
                    pattern="/news/*")  # fmt: skip
    moment = datetime(*draw(st.sampled_from(MOMENTS)), tzinfo=zone)
    start = int(moment.timestamp()) + draw(st.integers(-2 * DAY, 2 * DAY))
    prices = {resource: draw(st.integers(1, 30)) for resource in NEWS + OTHER}
    return Scenario(zone, cap, day_pass, start, draw(st.lists(reads, min_size=1, max_size=40)), prices)


@dataclass(frozen=True)
class Step:
    now: int
    read: Read
    unlocked: bool  # recorded before this read
    pass_valid: bool  # a purchase of the pass covers `now` (the oracle's view)
    price: int
    charge: int
    kind: SaleKind | None
    cap_group: str | None
    prior: int  # how many charges were recorded before this read


def play(s: Scenario) -> tuple[list[Step], list[Charge]]:
    """Runs the reads through the channel's rule the way the runtime does (lookup, transition,
    record), every read paid with a voucher covering the charged total plus anything it could cost."""
    state = ChannelState(channel_id=b"\x09" * 32, config=CONFIG, deposited=10**12)
    charges: list[Charge] = []
    unlocks: set[str] = set()
    purchases: list[int] = []
    steps: list[Step] = []
    now = s.start
    for read in s.reads:
        now += read.gap
        news = read.resource.startswith("/news/")
        cap = s.cap if news else None
        covering = (s.day_pass,) if news else ()
        buying = s.day_pass if news and read.buys else None
        spending = None
        if news:
            since = window(s.cap.period, now, s.zone).since
            paid, _, held = spending_lookup(charges, SpendingQuery("news", since, ("day",), now))
            spending = Spending(cap, paid, covering, held, buying)
        price = s.prices[read.resource]
        event = PaywallPayment(
            amount=state.charged + price + s.day_pass.price, signature=b"s", signer=SIGNER, price=price,
            now=WallTime(now), close_margin=0, resource=read.resource, unlocked=read.resource in unlocks,
            spending=spending,
        )  # fmt: skip
        before = state.charged
        state, effects = transition(state, event)
        effect = effects[0]
        assert isinstance(effect, Accepted), effect
        assert state.charged - before == effect.charged
        valid = any(b <= now < b + s.day_pass.duration for b in purchases)
        sale = effect.sale
        steps.append(Step(now, read, read.resource in unlocks, valid, price, effect.charged, sale.kind if sale else None,
                          sale.cap_group if sale else None, len(charges)))  # fmt: skip
        if effect.record:
            assert sale is not None or not news
            if sale is not None:
                charges.append(Charge(read.resource, effect.charged, None, True, now, sale.cap_group, sale.pass_name,
                                      sale.pass_until))  # fmt: skip
                if sale.kind == SaleKind.PASS:
                    purchases.append(now)
            else:
                charges.append(Charge(read.resource, effect.charged, None, True, now))
            unlocks.add(read.resource)
    return steps, charges


def period_key(period: Period, at: int, zone: ZoneInfo) -> object:
    """The oracle's calendar period of an instant: its local date, ISO week or month."""
    local = datetime.fromtimestamp(at, zone).date()
    if period.kind == PeriodKind.DAY:
        return local
    if period.kind == PeriodKind.WEEK:
        return local.isocalendar()[:2]
    return (local.year, local.month)


def oracle_paid(s: Scenario, charges: list[Charge], at: int) -> int:
    """What the channel has paid toward the cap in the period (or rolling window) of `at`."""
    period = s.cap.period
    group = [c for c in charges if c.cap_group == "news" and c.at <= at]
    if period.calendar:
        key = period_key(period, at, s.zone)
        return sum(c.amount for c in group if period_key(period, c.at, s.zone) == key)
    return sum(c.amount for c in group if c.at > at - period.days * DAY)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_within_any_period_a_channel_is_never_charged_more_than_its_cap(s):
    _, charges = play(s)
    group = [c for c in charges if c.cap_group == "news"]
    if s.cap.period.calendar:
        totals: dict[object, int] = defaultdict(int)
        for c in group:
            totals[period_key(s.cap.period, c.at, s.zone)] += c.amount
        assert all(total <= s.cap.amount for total in totals.values()), totals
    else:
        for c in group:  # the sum only grows at a charge: every window ending at one is checked
            assert oracle_paid(s, group, c.at) <= s.cap.amount
    assert all(c.cap_group is None for c in charges if c.pass_until is not None), "a pass counts toward no cap"


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_a_valid_pass_is_never_charged_again_for_what_it_covers(s):
    steps, charges = play(s)
    for step in steps:
        if step.pass_valid and step.read.resource.startswith("/news/"):
            assert step.charge == 0, step  # a covered read, or the same pass bought again
    bought = [c.at for c in charges if c.pass_until is not None]
    for earlier, later in zip(bought, bought[1:], strict=False):
        assert later >= earlier + s.day_pass.duration, "a pass is bought again only once it has ended"


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_re_reads_stay_free(s):
    steps, _ = play(s)
    for step in steps:
        if step.unlocked and not step.read.buys:
            assert step.charge == 0, step
    charged: dict[str, int] = defaultdict(int)
    for step in steps:
        if step.kind != SaleKind.PASS:
            charged[step.read.resource] += step.charge
    assert all(charged[step.read.resource] <= step.price for step in steps), "an article is paid for once"


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_nothing_is_double_charged_across_a_period_boundary(s):
    """A charge counts toward its own period only: a capped read pays exactly the room the
    oracle's period has left (never less because of an earlier period's charges, never more)."""
    steps, charges = play(s)
    for step in steps:
        win = window(s.cap.period, step.now, s.zone)
        assert win.since <= step.now and (win.ends_at is None or step.now < win.ends_at)
        if s.cap.period.calendar:  # the window is exactly the oracle's period
            assert period_key(s.cap.period, win.since, s.zone) == period_key(s.cap.period, step.now, s.zone)
            assert win.ends_at is not None
            assert period_key(s.cap.period, win.ends_at, s.zone) != period_key(s.cap.period, step.now, s.zone)
            assert period_key(s.cap.period, win.since - 1, s.zone) != period_key(s.cap.period, step.now, s.zone)
        news = step.read.resource.startswith("/news/")
        if news and not step.unlocked and not step.pass_valid and not step.read.buys:
            paid = oracle_paid(s, charges[: step.prior], step.now)
            assert step.charge == min(step.price, max(0, s.cap.amount - paid)), (step, paid)


def test_the_rule_on_examples():
    cap = Cap("news", 25, parse_period("month"))
    day = Pass("day", 30, DAY, pattern="/news/*")
    assert decide(10, Spending(cap, paid=20), 0).charge == 5  # partial at the boundary
    assert decide(10, Spending(cap, paid=25), 0).kind == SaleKind.CAPPED
    held = Spending(cap, 0, (day,), {"day": 100})
    assert decide(10, held, 99).kind == SaleKind.PASS_READ and decide(10, held, 100).charge == 10
    buy = Spending(cap, 0, (day,), {}, day)
    sale = decide(10, buy, 50)
    assert (sale.charge, sale.kind, sale.pass_until, sale.cap_group) == (30, SaleKind.PASS, 50 + DAY, None)
    assert decide(10, replace(buy, held={"day": 60}), 50).charge == 0  # bought twice: once
    assert Spending(cap, 0, (), {}, day).buys_uncovered
    zone = ZoneInfo("Europe/Paris")
    now = int(datetime(2026, 3, 29, 12, tzinfo=zone).timestamp())  # the day DST starts: 23 hours
    win = window(parse_period("day"), now, zone)
    assert win.ends_at - win.since == 23 * HOUR
    assert progress(cap, win, 7, None, now).resets_at == win.ends_at
    rolling = Cap("r", 5, parse_period("3d"))
    assert progress(rolling, window(rolling.period, now, zone), 5, now - 10, now).resets_at == now - 10 + 3 * DAY
    for bad in ("fortnight", "0d", "3661d", "1.5d", 3, None):
        with pytest.raises(ValueError):
            parse_period(bad)
    for bad in ("0h", "1y", "1", "d", "999999w"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# ---------------------------------------------------------------------- concurrency, real Runtime

KEY = keccak256(b"spending concurrency key")
DOMAIN = Domain(1337, b"\x0c" * 20)
RECEIVER = b"\x02" * 20
CHANNEL_CONFIG = ChannelConfig.create(b"\x01" * 20, address_of_key(KEY), RECEIVER, None, 3600, 7)
CHANNEL = channel_id(DOMAIN, CHANNEL_CONFIG)
DEPOSIT = 10**9


class YieldingStore(MemoryStore):
    """The memory store, giving the loop away between a request's lookup and its commit, so
    concurrent requests interleave there as they do over a real database."""

    async def lookup_payment(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        lookup = await super().lookup_payment(*args, **kwargs)
        await asyncio.sleep(0)
        return lookup


async def _boundary(cap: Cap, zone: ZoneInfo, pre: int, prices: list[int], at: list[int], seed: int) -> tuple[list[Charge], int]:
    store = YieldingStore()
    await store.open(Pin(DOMAIN.chain_id, DOMAIN.verifying_contract, RECEIVER))
    state = ChannelState(channel_id=CHANNEL, config=CHANNEL_CONFIG, deposited=DEPOSIT)
    version = await store.commit(ChannelWrite(state, 0))
    if pre:  # already paid `pre` toward the cap in the period of the first clock
        state = replace(state, charged=pre, ceiling=pre)
        await store.commit(ChannelWrite(state, version, Charge("/news/pre", pre, None, True, at[0], "news")))
    # Two runtimes ("processes") on one store, each with its own lock, cache and clock: one just
    # before the period ends, one at its end.
    runtimes = [Runtime(store, DOMAIN, RECEIVER, b"\0" * 20, None, close_margin=0, clock=lambda t=t: float(t), zone=zone)
                for t in at]  # fmt: skip
    signature = sign_digest(KEY, voucher_digest(DOMAIN, CHANNEL, DEPOSIT))
    requests = [
        PaymentRequest(CHANNEL, DEPOSIT, signature, f"/news/{n}", price, True, cap=cap)
        for n, price in enumerate(prices)
    ]
    order = random.Random(seed)
    calls = [runtimes[order.randrange(len(runtimes))].pay(request) for request in requests]
    outcomes = await asyncio.gather(*calls)
    assert all(o.accepted for o in outcomes), [o.effect for o in outcomes if not o.accepted]
    final = await store.load_channel(CHANNEL)
    assert final is not None
    return await store.charges(CHANNEL), final.state.charged


@settings(max_examples=100, deadline=None)
@given(
    cap_amount=st.integers(1, 200),
    pre=st.integers(0, 200),
    prices=st.lists(st.integers(1, 40), min_size=2, max_size=30),
    period=st.sampled_from(["day", "month", "2d"]),
    zone=st.sampled_from(["UTC", "America/New_York", "Australia/Lord_Howe"]).map(ZoneInfo),
    seed=st.integers(0, 2**32),
)
def test_concurrent_requests_at_the_cap_boundary_never_overshoot_it(cap_amount, pre, prices, period, zone, seed):
    cap = Cap("news", cap_amount, parse_period(period))
    end = window(cap.period, int(datetime(2026, 12, 31, 23, 59, 59, tzinfo=zone).timestamp()), zone).ends_at
    end = end if end is not None else int(datetime(2027, 1, 1, tzinfo=zone).timestamp())
    at = [end - 1, end]
    pre = min(pre, cap_amount)
    charges, charged = asyncio.run(_boundary(cap, zone, pre, prices, at, seed))
    group = [c for c in charges if c.cap_group == "news"]
    assert charged == sum(c.amount for c in charges), "the charged total is the sum of its charges"
    assert all(c.amount <= price for c in group if c.resource != "/news/pre"
               for price in [prices[int(c.resource.rsplit("/", 1)[1])]])  # fmt: skip
    wanted = {t: sum(prices[int(c.resource.rsplit("/", 1)[1])] for c in group if c.at == t and c.resource != "/news/pre")
              for t in at}  # fmt: skip
    paid = {t: sum(c.amount for c in group if c.at == t) for t in at}  # the pre charge is at the first clock
    # Every request was served; each period (rolling: the one window holding both clocks) was
    # charged at most its cap, and its room was used in full before any read there was made free.
    if cap.period.calendar:
        assert paid[at[0]] == min(pre + wanted[at[0]], cap_amount)
        assert paid[at[1]] == min(wanted[at[1]], cap_amount)
    else:
        assert sum(paid.values()) == min(pre + sum(wanted.values()), cap_amount)


@settings(max_examples=30, deadline=None)
@given(buyers=st.integers(2, 20), seed=st.integers(0, 2**32))
def test_concurrent_purchases_of_one_pass_charge_it_once(buyers, seed):
    day = Pass("day", 30, DAY, pattern="/news/*")

    async def run() -> list[Charge]:
        store = YieldingStore()
        await store.open(Pin(DOMAIN.chain_id, DOMAIN.verifying_contract, RECEIVER))
        await store.commit(ChannelWrite(ChannelState(channel_id=CHANNEL, config=CHANNEL_CONFIG, deposited=DEPOSIT), 0))
        runtimes = [Runtime(store, DOMAIN, RECEIVER, b"\0" * 20, None, close_margin=0, clock=lambda: 1000.0)
                    for _ in range(2)]  # fmt: skip
        signature = sign_digest(KEY, voucher_digest(DOMAIN, CHANNEL, DEPOSIT))
        order = random.Random(seed)
        outcomes = await asyncio.gather(*(
            runtimes[order.randrange(2)].pay(PaymentRequest(CHANNEL, DEPOSIT, signature, f"/news/{n}", 5, True,
                                                            passes=(day,), buying=day))
            for n in range(buyers)
        ))  # fmt: skip
        assert all(o.accepted for o in outcomes)
        return await store.charges(CHANNEL)

    charges = asyncio.run(run())
    assert [c.amount for c in charges if c.amount] == [30] and sum(1 for c in charges if c.pass_until is not None) == 1
    assert len(charges) == buyers, "every buyer was served (the later ones under the pass)"
