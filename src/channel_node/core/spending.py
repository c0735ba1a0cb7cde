"""Caps and passes: what one priced read costs a channel (docs/protocol.md, "Caps and passes").

Pure and synchronous like the rest of the core: the edge passes in the time (`now`, wall time in
unix seconds), the request's cap group and covering passes (matched by the price table,
server/prices.py) and what the store counted for the channel (`Spending`); `decide` answers what
the read costs and why (`Sale`). `core/channel.py:_charge` calls it, so the channel's one rule
still decides `charged`.

- A cap: a group's charges to a channel within a period are at most `Cap.amount`. Calendar periods
  (`day`, ISO `week` from Monday, `month`) are taken in the configured time zone (`window`); a
  rolling period of N days counts the charges in (now - N days, now]. A read costs
  `min(price, max(0, cap - paid))`: a partial charge at the boundary, never an overshoot.
- A pass: one payment unlocks what it covers for `duration` seconds from the purchase,
  [bought, bought + duration). A covered read under a valid pass costs 0; buying a pass the
  channel holds costs 0. A pass's price does not count toward any cap.
- Reads that cost 0 are still recorded (amount 0, with their `once` unlock), so re-reads stay free
  once the period or the pass has ended.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from channel_node.core.clocks import WallTime

DAY = 86_400
HOUR = 3_600
WEEK = 7 * DAY
MAX_ROLLING_DAYS = 3_660  # ten years: beyond it a cap is no cap
MAX_DURATION = 3_660 * DAY  # a pass for more than ten years is a typo

_ROLLING = re.compile(r"([1-9][0-9]{0,3})d")
_DURATION = re.compile(r"([1-9][0-9]{0,5})([hdw])")
_UNITS = {"h": HOUR, "d": DAY, "w": WEEK}


class PeriodKind(StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO: from Monday 00:00
    MONTH = "month"
    ROLLING = "rolling"  # the last N days, sliding


@dataclass(frozen=True)
class Period:
    kind: PeriodKind
    days: int = 0  # ROLLING only

    @property
    def calendar(self) -> bool:
        return self.kind != PeriodKind.ROLLING

    @property
    def text(self) -> str:
        """As configured and as the offer names it: `day`, `week`, `month`, `30d`."""
        return f"{self.days}d" if self.kind == PeriodKind.ROLLING else self.kind.value


def parse_period(text: object) -> Period:
    """`day` | `week` | `month` | `<N>d` (rolling N days, 1 to 3660); ValueError otherwise."""
    if isinstance(text, str):
        if text in ("day", "week", "month"):
            return Period(PeriodKind(text))
        match = _ROLLING.fullmatch(text)
        if match and int(match[1]) <= MAX_ROLLING_DAYS:
            return Period(PeriodKind.ROLLING, int(match[1]))
    raise ValueError(f'period must be "day", "week", "month" or "<N>d" (N rolling days, 1 to {MAX_ROLLING_DAYS})')


def parse_duration(text: object) -> int:
    """A pass's duration in seconds: `<N>h`, `<N>d` or `<N>w`, at most ten years; ValueError otherwise."""
    if isinstance(text, str):
        match = _DURATION.fullmatch(text)
        if match:
            seconds = int(match[1]) * _UNITS[match[2]]
            if seconds <= MAX_DURATION:
                return seconds
    raise ValueError('duration must be "<N>h", "<N>d" or "<N>w" (e.g. "1d"), at most ten years')


@dataclass(frozen=True)
class Cap:
    """A group's cap per period. `pattern`/`tags` say which priced reads belong to it; the price
    table matches them (server/prices.py), the rules here never look at them."""

    name: str
    amount: int  # base units, > 0
    period: Period
    pattern: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Pass:
    """A pass for sale: `price` buys everything it covers for `duration` seconds."""

    name: str
    price: int  # base units, > 0
    duration: int  # seconds
    description: str = ""
    pattern: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    # What the store records it under (`pass_key`), derived once when the settings are read rather
    # than on every request that names the pass.
    key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", pass_key(self))


def pass_key(p: Pass) -> str:
    """The name a pass is recorded under: its name and a digest of what it covers (pattern, tags).
    A pass whose pattern or tags change in the settings is another pass: what a channel bought
    under the old terms never covers what the new ones add (docs/security.md, "Caps and passes:
    the cap boundary and pass replay"). Its price and duration are not in it: a pass bought lasts
    until the end it was sold with, whatever it costs now."""
    terms = repr((p.pattern, sorted(p.tags.items()))).encode()
    return f"{p.name}@{hashlib.sha256(terms).hexdigest()[:16]}"


@dataclass(frozen=True)
class Window:
    """The charges that count toward a cap now: those at or after `since`. `ends_at`: when a
    calendar period ends (the next one starts); None for a rolling period."""

    since: int
    ends_at: int | None


def window(period: Period, now: int, zone: ZoneInfo) -> Window:
    """The period containing `now` (calendar, in `zone`), or the rolling window ending at `now`.
    Always `since <= now < ends_at`."""
    if period.kind == PeriodKind.ROLLING:
        return Window(now - period.days * DAY + 1, None)
    local = datetime.fromtimestamp(now, zone)
    day = local.date()
    if period.kind == PeriodKind.DAY:
        start, end = day, day + timedelta(days=1)
    elif period.kind == PeriodKind.WEEK:
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    since, ends = _midnight(start.year, start.month, start.day, zone), _midnight(end.year, end.month, end.day, zone)
    # A midnight that a DST change skips resolves to the change itself (fold=0), never later than `now`.
    return Window(min(since, now), max(ends, now + 1))


def _midnight(year: int, month: int, day: int, zone: ZoneInfo) -> int:
    return int(datetime(year, month, day, tzinfo=zone).timestamp())


class SaleKind(StrEnum):
    """Why a read cost what it did (insights record it: docs/insights.md)."""

    ARTICLE = "article"  # the list price
    PASS = "pass"  # a pass bought (with the read it came with)
    CAPPED = "capped"  # less than the list price because of a cap (0 once the cap is reached)
    PASS_READ = "pass_read"  # covered by a pass the channel holds


@dataclass(frozen=True)
class Spending:
    """The spending terms of one read: its cap group (None: not capped), what the channel has been
    charged in that group in the current window (`paid`, from the store), the passes that cover the
    resource, the passes the channel holds now (name -> until) and the pass this request buys."""

    cap: Cap | None = None
    paid: int = 0
    covering: tuple[Pass, ...] = ()
    held: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)
    buying: Pass | None = None

    def holding(self, now: int) -> Pass | None:
        """The covering pass the channel holds at `now` that lasts longest, if any."""
        valid = [p for p in self.covering if self.held.get(p.name, 0) > now]
        return max(valid, key=lambda p: self.held[p.name], default=None)

    @property
    def buys_uncovered(self) -> bool:
        """The request buys a pass that does not cover its own resource (`pass_not_covering`)."""
        return self.buying is not None and self.buying not in self.covering


@dataclass(frozen=True)
class Sale:
    """What one read costs (`charge`) and why. `list_price`: what it would have cost without cap or
    pass (the pass's price for a purchase). `cap_group`: the cap it counts toward (None when its
    charge counts toward none). `pass_name`: the pass bought, or the one that covered the read;
    `pass_until`: set for a purchase only, the new pass's end."""

    charge: int
    kind: SaleKind
    list_price: int
    cap_group: str | None = None
    pass_name: str | None = None
    pass_until: int | None = None


def decide(price: int, spending: Spending | None, now: WallTime | int) -> Sale:
    """The cost of one priced read at `now` (the module's rules). A purchase of a pass that does
    not cover the resource is the caller's refusal (`Spending.buys_uncovered`), never decided here."""
    if spending is None:
        return Sale(price, SaleKind.ARTICLE, price)
    group = spending.cap.name if spending.cap is not None else None
    buying = spending.buying
    if buying is not None and spending.held.get(buying.name, 0) <= now:
        until = now + buying.duration
        return Sale(buying.price, SaleKind.PASS, buying.price, None, buying.name, until)
    holding = spending.holding(now)
    if holding is not None:  # covered (a pass bought again lands here: held, so free)
        return Sale(0, SaleKind.PASS_READ, price, group, holding.name)
    if spending.cap is None:
        return Sale(price, SaleKind.ARTICLE, price)
    charge = min(price, max(0, spending.cap.amount - spending.paid))
    return Sale(charge, SaleKind.CAPPED if charge < price else SaleKind.ARTICLE, price, group)


@dataclass(frozen=True)
class Progress:
    """A channel's standing against a cap, as the offer and the receipt show it."""

    cap: Cap
    paid: int
    resets_at: int  # calendar: the period's end; rolling: when the oldest counted charge leaves
    period_ends_at: int | None  # calendar periods only


def progress(cap: Cap, win: Window, paid: int, oldest: int | None, now: int) -> Progress:
    """`paid` toward `cap` in `win`; `oldest`: the earliest counted charge above 0 (rolling resets)."""
    if win.ends_at is not None:
        return Progress(cap, paid, win.ends_at, win.ends_at)
    start = oldest if oldest is not None else now
    return Progress(cap, paid, start + cap.period.days * DAY, None)


__all__ = [
    "DAY",
    "Cap",
    "Pass",
    "Period",
    "PeriodKind",
    "Progress",
    "Sale",
    "SaleKind",
    "Spending",
    "Window",
    "decide",
    "parse_duration",
    "parse_period",
    "pass_key",
    "progress",
    "window",
]
