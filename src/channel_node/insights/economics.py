"""Caps, passes and the cost of collection (docs/economics.md): what the insights database knows of
them, per period, with money in one unit.

- **Sales by kind**: revenue from articles (every read sold, a cap's partial charge included)
  against revenue from passes sold; how many channels reached each cap (a `capped` sale whose list
  price exceeds what was charged is a cap hit) and what capped and pass-covered readers would have
  paid uncapped (the sum of their list prices), so a publisher can choose a cap from data.
- **Cost of collection**: the gas the node's sender saw its transactions use (claims, closes,
  defences against a payer's close, exact transfers; the `gas` table) beside the revenue of the same
  period, as an amount, a percentage of revenue and per unlock.

Money in one unit: revenue is in the channels' asset, gas in wei of ETH. For ETH channels the two
are the same unit; for a token the publisher states `[economics] eth_price` (asset units per ETH,
a decimal string): gas in the asset is then `wei * eth_price * 10**decimals / 10**18`, kept as an
exact `Fraction` and rounded only to show it. Without a price (or without knowing the asset) gas
is shown in ETH and no percentage is given: the figures say so (`unit_note`) instead of guessing.
`gas_price_gwei` projects the gas units of each period at a price the publisher chooses.

Periods are `day`, `week` (Monday) or `month` (calendar), UTC, clipped to the range, which is whole
hours as everywhere in insights (queries.py). Money is an int (or a Fraction before rounding);
percentages are Fractions until shown (`percent_text`).
"""

from __future__ import annotations

import bisect
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from channel_node.amounts import Asset
from channel_node.errors import UsageError
from channel_node.insights.queries import MAX_BUCKETS, QueryError, hour_span
from channel_node.insights.schema import (
    DAY,
    GAS_KINDS,
    HOUR,
    LIMB,
    SALE_CAPPED,
    SALE_PASS,
    SALE_PASS_READ,
    has_table,
    read_economics,
)

PERIODS = ("day", "week", "month")
WEI_PER_ETH = 10**18
WEI_PER_GWEI = 10**9
_DECIMAL = re.compile(r"[0-9]{1,30}(\.[0-9]{1,30})?")
_GAS_NAMES = {code: name for name, code in GAS_KINDS.items()}
_CAP_HIT = "(list_hi > price_hi OR (list_hi = price_hi AND list_lo > price_lo))"

Row = dict[str, Any]


class PriceError(UsageError, ValueError):
    """An `eth_price` or `gas_price_gwei` that is not a positive decimal number."""


def parse_decimal(text: str, name: str) -> Fraction:
    """"3000.00" -> Fraction(3000): a positive decimal written out (no exponent, no float)."""
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text.strip()):
        raise PriceError(f"{name} must be a positive decimal number written as text, like \"3000.00\", not {text!r}")
    value = Fraction(text.strip())
    if value <= 0:
        raise PriceError(f"{name} must be more than 0, not {text!r}")
    return value


@dataclass(frozen=True)
class Prices:
    """The publisher's prices for converting gas: ETH in asset units (None: unknown) and a gas
    price in gwei to project at (None: no projection)."""

    eth_price: Fraction | None = None
    gas_price_gwei: Fraction | None = None

    @classmethod
    def parse(
        cls, eth_price: str | None, gas_price_gwei: str | None, names: tuple[str, str] = ("eth_price", "gas_price_gwei")
    ) -> Prices:
        """From decimal text; `names` are what a refusal calls them (the setting, or a flag)."""
        return cls(None if eth_price is None else parse_decimal(eth_price, names[0]),
                   None if gas_price_gwei is None else parse_decimal(gas_price_gwei, names[1]))  # fmt: skip

    def over(self, other: Prices) -> Prices:
        """These prices, each missing one taken from `other`."""
        return Prices(self.eth_price if self.eth_price is not None else other.eth_price,
                      self.gas_price_gwei if self.gas_price_gwei is not None else other.gas_price_gwei)  # fmt: skip


def prices_of_file(conn: sqlite3.Connection) -> Prices:
    """The prices the node recorded in the file's meta (schema.write_economics); bad text is ignored."""
    stored = read_economics(conn)
    try:
        return Prices.parse(stored.get("eth_price"), stored.get("gas_price_gwei"))
    except PriceError:
        return Prices()


def same_unit(asset: Asset | None) -> bool:
    """Whether the asset's base units are wei of ETH (gas and revenue need no price)."""
    return asset is not None and asset.is_native and asset.decimals == 18


def gas_in_asset(wei: int, asset: Asset | None, prices: Prices) -> Fraction | None:
    """Gas cost in the asset's base units, exactly; None when it cannot be known."""
    if same_unit(asset):
        return Fraction(wei)
    if asset is None or prices.eth_price is None:
        return None
    return Fraction(wei * 10**asset.decimals, WEI_PER_ETH) * prices.eth_price


def share(part: Fraction | int | None, whole: int) -> Fraction | None:
    """part / whole as a percentage (a Fraction), None when either is unknown or whole is 0."""
    if part is None or whole <= 0:
        return None
    return Fraction(part) * 100 / whole


def rounded(value: Fraction | int | None) -> int | None:
    """Half up, for showing an exact amount in base units."""
    if value is None:
        return None
    value = Fraction(value)
    return (value.numerator * 2 + value.denominator) // (value.denominator * 2)


def decimal_text(value: Fraction, places: int = 4) -> str:
    """A Fraction as plain decimal text for machines: 641.8235, -0.5000 (half up, no grouping)."""
    scaled = rounded(abs(value) * 10**places) or 0
    whole, fraction = divmod(scaled, 10**places)
    sign = "-" if value < 0 and scaled else ""
    return f"{sign}{whole}.{str(fraction).rjust(places, '0')}" if places else f"{sign}{whole}"


def percent_text(value: Fraction | None, places: int = 2) -> str:
    """12.35%, <0.01% (never 0.00% for a cost that is not 0), – when unknown."""
    if value is None:
        return "–"
    scaled = rounded(value * 10**places) or 0
    if scaled == 0 and value > 0:
        return "<" + ("0." + "0" * (places - 1) + "1" if places else "1") + "%"
    whole, fraction = divmod(scaled, 10**places)
    return f"{whole:,}.{str(fraction).rjust(places, '0')}%" if places else f"{whole:,}%"


def unit_note(asset: Asset | None, prices: Prices) -> str:
    """What the figures' gas is in, said plainly."""
    if same_unit(asset):
        return "Gas and revenue are both in ETH."
    if asset is None:
        return "The insights file names no asset: gas is shown in ETH, without a share of revenue."
    if prices.eth_price is None:
        return (f"Revenue is in {asset.symbol}, gas in ETH: set [economics] eth_price ({asset.symbol} per ETH) "
                "to see gas as an amount and share of revenue.")  # fmt: skip
    return f"Gas converted at 1 ETH = {_plain(prices.eth_price)} {asset.symbol} (eth_price: [economics] or --eth-price)."


def _plain(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    digits = 0
    while (value * 10**digits).denominator != 1 and digits < 30:
        digits += 1
    scaled = rounded(value * 10**digits) or 0
    return f"{scaled // 10**digits}.{str(scaled % 10**digits).rjust(digits, '0')}".rstrip("0").rstrip(".")


# ------------------------------------------------------------------ periods


def period_floor(period: str, t: int) -> int:
    """The start of the period holding unix time t (UTC; weeks start on Monday)."""
    if period == "day":
        return t - t % DAY
    if period == "week":
        day = t // DAY
        return (day - (day + 3) % 7) * DAY
    if period == "month":
        moment = datetime.fromtimestamp(t, UTC)
        return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp())
    raise QueryError(f"period must be one of {list(PERIODS)}")


def _next(period: str, start: int) -> int:
    if period == "day":
        return start + DAY
    if period == "week":
        return start + 7 * DAY
    moment = datetime.fromtimestamp(start, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())


def periods(period: str, since: int, until: int) -> list[tuple[int, int, int]]:
    """(label, start, end) of each period over the range (whole hours): the label is the period's
    own start; start and end are clipped to the range."""
    h0, h1 = hour_span(since, until)
    lo, hi = h0 * HOUR, h1 * HOUR
    start = period_floor(period, lo)
    out: list[tuple[int, int, int]] = []
    while start < hi:
        end = _next(period, start)
        out.append((start, max(start, lo), min(end, hi)))
        if len(out) > MAX_BUCKETS:
            raise QueryError(f"more than {MAX_BUCKETS} {period} periods: narrow the range or use a longer period")
        start = end
    return out


def period_label(period: str, start: int) -> str:
    moment = datetime.fromtimestamp(start, UTC)
    return moment.strftime({"day": "%a %d %b %Y", "week": "wk %d %b %Y", "month": "%B %Y"}[period])


# ------------------------------------------------------------------ queries


def _money(hi: int | None, lo: int | None) -> int:
    return ((hi or 0) << LIMB) + (lo or 0)


def _empty_row(label: int) -> Row:
    return {"start": label, "revenue": 0, "article_revenue": 0, "pass_revenue": 0, "unlocks": 0, "passes_sold": 0,
            "gas_wei": 0, "gas_units": 0, "transactions": 0, "gas_by_kind": {name: 0 for name in GAS_KINDS},
            "capped_channels": 0, "capped_reads": 0, "pass_reads": 0, "would_have_paid": 0, "paid_capped": 0}  # fmt: skip


def collection(conn: sqlite3.Connection, period: str, since: int, until: int) -> list[Row]:
    """One row per period: revenue (articles, passes), unlocks, gas spent (wei, gas units,
    transactions, wei by kind), channels that hit a cap, capped and pass-covered reads, what those
    would have paid uncapped and what they paid. Money in ints: revenue in the asset's base units,
    gas in wei."""
    spans = periods(period, since, until)
    starts = [start for _, start, _ in spans]
    rows = [_empty_row(label) for label, _, _ in spans]
    lo, hi = spans[0][1], spans[-1][2]

    def slot(t: int) -> Row:
        return rows[bisect.bisect_right(starts, t) - 1]

    for hour, unlocks, rev_hi, rev_lo in conn.execute(
        "SELECT hour, unlocks, rev_hi, rev_lo FROM hourly WHERE hour >= ? AND hour < ?", (lo // HOUR, hi // HOUR)
    ):
        row = slot(hour * HOUR)
        row["unlocks"] += unlocks
        row["revenue"] += _money(rev_hi, rev_lo)
    if has_table(conn, "sales"):
        for hour, sale, count, p_hi, p_lo, l_hi, l_lo in conn.execute(
            "SELECT at / 3600, sale, COUNT(*), SUM(price_hi), SUM(price_lo), SUM(list_hi), SUM(list_lo) FROM sales "
            "WHERE at >= ? AND at < ? GROUP BY at / 3600, sale", (lo, hi),
        ):  # fmt: skip
            row = slot(hour * HOUR)
            if sale == SALE_PASS:
                row["pass_revenue"] += _money(p_hi, p_lo)
                row["passes_sold"] += count
            elif sale in (SALE_CAPPED, SALE_PASS_READ):
                row["capped_reads" if sale == SALE_CAPPED else "pass_reads"] += count
                row["would_have_paid"] += _money(l_hi, l_lo)
                row["paid_capped"] += _money(p_hi, p_lo)
        for (_label, start, end), row in zip(spans, rows, strict=True):
            if row["capped_reads"]:
                row["capped_channels"] = conn.execute(
                    f"SELECT COUNT(DISTINCT channel_id) FROM sales WHERE at >= ? AND at < ? AND sale = ? AND {_CAP_HIT}",
                    (start, end, SALE_CAPPED),
                ).fetchone()[0]  # fmt: skip
    if has_table(conn, "gas"):
        for at, kind, gas_used, gas_price, _ in conn.execute(
            "SELECT at, kind, gas_used, gas_price, rows FROM gas WHERE at >= ? AND at < ?", (lo, hi)
        ):
            row = slot(at)
            wei = gas_used * int(gas_price)
            row["gas_wei"] += wei
            row["gas_units"] += gas_used
            row["transactions"] += 1
            row["gas_by_kind"][_GAS_NAMES.get(kind, "claim")] += wei
    for row in rows:
        row["article_revenue"] = row["revenue"] - row["pass_revenue"]
    return rows


def caps_and_passes(conn: sqlite3.Connection, since: int, until: int) -> dict[str, list[Row]]:
    """Per cap: channels that reached it, capped reads, what they would have paid uncapped and what
    they paid. Per pass: passes sold, distinct buyers, revenue, reads it covered and what those
    would have cost. Ordered by what was forgone (caps) and revenue (passes)."""
    if not has_table(conn, "sales"):
        return {"caps": [], "passes": []}
    h0, h1 = hour_span(since, until)
    lo, hi = h0 * HOUR, h1 * HOUR
    names = dict(conn.execute("SELECT id, name FROM labels").fetchall())
    caps: list[Row] = []
    for label, channels, reads, p_hi, p_lo, l_hi, l_lo in conn.execute(
        "SELECT label_id, COUNT(DISTINCT channel_id), COUNT(*), SUM(price_hi), SUM(price_lo), SUM(list_hi), "
        f"SUM(list_lo) FROM sales WHERE at >= ? AND at < ? AND sale = ? AND {_CAP_HIT} GROUP BY label_id",
        (lo, hi, SALE_CAPPED),
    ):  # fmt: skip
        would, paid = _money(l_hi, l_lo), _money(p_hi, p_lo)
        caps.append({"name": names.get(label, ""), "channels": channels, "reads": reads, "would_have_paid": would,
                     "paid": paid, "forgone": would - paid})  # fmt: skip
    caps.sort(key=lambda r: (-r["forgone"], r["name"]))
    passes: dict[int, Row] = {}
    for label, sale, channels, count, p_hi, p_lo, l_hi, l_lo in conn.execute(
        "SELECT label_id, sale, COUNT(DISTINCT channel_id), COUNT(*), SUM(price_hi), SUM(price_lo), SUM(list_hi), "
        "SUM(list_lo) FROM sales WHERE at >= ? AND at < ? AND sale IN (?, ?) GROUP BY label_id, sale",
        (lo, hi, SALE_PASS, SALE_PASS_READ),
    ):  # fmt: skip
        entry = passes.setdefault(label, {"name": names.get(label, ""), "sold": 0, "buyers": 0, "revenue": 0,
                                          "reads": 0, "readers": 0, "would_have_paid": 0})  # fmt: skip
        if sale == SALE_PASS:
            entry.update(sold=count, buyers=channels, revenue=_money(p_hi, p_lo))
        else:
            entry.update(reads=count, readers=channels, would_have_paid=_money(l_hi, l_lo))
    return {"caps": caps, "passes": sorted(passes.values(), key=lambda r: (-r["revenue"], r["name"]))}


def _priced(row: Row, asset: Asset | None, prices: Prices) -> Row:
    """A row's gas in the asset (rounded base units), its share of revenue and per unlock."""
    exact = gas_in_asset(row["gas_wei"], asset, prices)
    out = dict(row)
    out["gas"] = rounded(exact)  # in the asset's base units; None when unknown
    out["gas_percent"] = share(exact, row["revenue"])
    out["gas_per_unlock"] = rounded(exact / row["unlocks"]) if exact is not None and row["unlocks"] else None
    out["gas_wei_per_unlock"] = rounded(Fraction(row["gas_wei"], row["unlocks"])) if row["unlocks"] else None
    if prices.gas_price_gwei is not None:
        out["projected_wei"] = rounded(row["gas_units"] * prices.gas_price_gwei * WEI_PER_GWEI)
    return out


def figures(
    conn: sqlite3.Connection, period: str, since: int, until: int, asset: Asset | None, prices: Prices | None = None
) -> Row:
    """Everything the report and the dashboard show of caps, passes and the cost of collection:
    per period and in total, the unit the gas is in, and the prices used (the file's own unless
    `prices` gives one)."""
    if period not in PERIODS:
        raise QueryError(f"period must be one of {list(PERIODS)}")
    used = (prices or Prices()).over(prices_of_file(conn))
    rows = collection(conn, period, since, until)
    total = _empty_row(rows[0]["start"])
    for row in rows:
        for key, value in row.items():
            if key == "gas_by_kind":
                for name, wei in value.items():
                    total[key][name] += wei
            elif key not in ("start", "capped_channels"):
                total[key] += value
    h0, h1 = hour_span(since, until)
    cp = caps_and_passes(conn, since, until)
    if total["capped_reads"]:  # distinct over the whole range: a channel that hit two caps counts once
        total["capped_channels"] = conn.execute(
            f"SELECT COUNT(DISTINCT channel_id) FROM sales WHERE at >= ? AND at < ? AND sale = ? AND {_CAP_HIT}",
            (h0 * HOUR, h1 * HOUR, SALE_CAPPED),
        ).fetchone()[0]  # fmt: skip
    return {
        "period": period,
        "eth_price": None if used.eth_price is None else _plain(used.eth_price),
        "gas_price_gwei": None if used.gas_price_gwei is None else _plain(used.gas_price_gwei),
        "converted": same_unit(asset) or (asset is not None and used.eth_price is not None),
        "unit_note": unit_note(asset, used),
        "rows": [_priced(row, asset, used) for row in rows],
        "total": {**_priced(total, asset, used), "start": h0 * HOUR, "end": h1 * HOUR},
        **cp,
    }


__all__ = [
    "PERIODS", "PriceError", "Prices", "caps_and_passes", "collection", "decimal_text", "figures", "gas_in_asset",
    "parse_decimal",
    "percent_text", "period_floor", "period_label", "periods", "prices_of_file", "rounded", "same_unit", "share",
    "unit_note",
]  # fmt: skip
