"""Server-side SVG charts (no JavaScript, no libraries): a line chart over time and horizontal bar
charts, sized for a dashboard card, plus the number formats the dashboard and the report share."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape

from channel_node.amounts import Asset, format_display, format_number, format_short

PALETTE = {"ink": "#1f2933", "muted": "#7b8794", "grid": "#e4e7eb", "line": "#2563eb", "fill": "#2563eb22",
           "bar": "#0f766e", "bar2": "#b45309"}  # fmt: skip
FONT = "font-family='DejaVu Sans, Liberation Sans, Arial, sans-serif'"


# ------------------------------------------------------------------ formats


def plain(value: float, significant: int = 3) -> str:
    """`value` to `significant` digits in fixed notation, never an exponent: 0.00005, 12.5, 100."""
    if value == 0 or not math.isfinite(value):
        return "0"
    places = max(0, significant - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def plain_percent(value: float) -> str:
    """A percentage for an axis or a bar: 12.5%, 0.00005%."""
    return f"{plain(value)}%"


def compact(value: float) -> str:
    """1234 -> 1.2k, 5.6e9 -> 5.6G: for axis labels and cards."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    value = abs(value)
    for power, suffix in ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if value >= 10**power:
            scaled = value / 10**power
            return f"{sign}{scaled:.3g}{suffix}" if scaled < 1000 else f"{sign}{scaled:,.0f}{suffix}"
    return f"{sign}{plain(value)}" if value < 100 else f"{sign}{value:,.0f}"


class Money:
    """Amounts in the token's smallest unit, shown in whole units of the asset (docs/amounts.md):
    `Money.of(asset)` for the node's asset; `Money(decimals, symbol)` for overrides; `Money()`
    shows base units without a symbol (an insights file that does not name its asset)."""

    def __init__(self, decimals: int | None = None, symbol: str | None = None, *, shown: Asset | None = None) -> None:
        self.decimals = decimals or 0
        self.symbol = symbol
        # An asset with a display form (docs/amounts.md, "Display forms"): amounts read `$1.40`, `2¢`.
        self.shown = shown if shown is not None and shown.display is not None and shown.decimals == self.decimals else None

    @classmethod
    def of(cls, asset: Asset) -> Money:
        return cls(asset.decimals, asset.symbol, shown=asset)

    def _unit(self, text: str) -> str:
        if self.shown is not None and self.shown.display is not None:
            return f"{self.shown.display.symbol}{text}"
        return f"{text} {self.symbol}" if self.symbol else text

    def exact(self, amount: int) -> str:
        """Every digit, the whole part grouped for reading: 1,234,000 or 0.001234 ETH (`$1.40`, `2¢`
        in a display form: still exact)."""
        if amount < 0:
            return "≥ 2^63"  # a price list's marker for prices beyond 63 bits
        if self.shown is not None:
            return format_display(amount, self.shown)
        return self._unit(self.number(amount))

    def number(self, amount: int) -> str:
        """`exact` without the symbol, for a column whose header names it (`revenue (ETH)`); in a
        display form the column shows `$1.40` and `2¢` (its header then names no unit)."""
        if amount < 0:
            return "≥ 2^63"
        if self.shown is not None:
            return format_display(amount, self.shown)
        return format_number(amount, self.decimals, group=True)

    def header(self, name: str) -> str:
        if self.shown is not None:
            return name
        return f"{name} ({self.symbol})" if self.symbol else name

    def short(self, amount: int | float) -> str:
        """Three significant digits in plain decimals, for axes and cards: 0.00008 ETH, never 8e-05
        (`$1.23` in a display form: an axis label, rounded, never a price)."""
        return self._unit(format_short(round(amount) if math.isfinite(amount) else 0, self.decimals))


def percent(ratio: float | None) -> str:
    if ratio is None:
        return "–"
    return f"{ratio * 100:.1f}%" if ratio < 10 else f"{ratio * 100:,.0f}%"


def bucket_label(bucket: str, start: int, short: bool = False) -> str:
    moment = datetime.fromtimestamp(start, UTC)
    if bucket == "hour":
        return moment.strftime("%d %b %H:00" if not short else "%d %b %Hh")
    if bucket == "week":
        return moment.strftime("wk %d %b %Y" if not short else "%d %b")
    return moment.strftime("%a %d %b %Y" if not short else "%d %b")


# ------------------------------------------------------------------ scales


def nice_ticks(top: float, count: int = 5, min_step: float = 0.0) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 x 10^k, at least `min_step`: 1 for amounts in base units)
    up to at least `top`."""
    if top <= 0:
        return [0.0, max(1.0, min_step)]
    raw = max(top / count, min_step)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < top - 1e-12 * top:
        ticks.append(len(ticks) * step)  # multiples, not a running sum: no drift to 0.30000000000000004
    return ticks


def text_width(text: str, size: float = 11) -> float:
    """A generous estimate of a label's width in pixels (DejaVu Sans averages ~0.6 em; digits and
    capitals run wider), so margins sized by it never clip a label."""
    return len(text) * size * 0.66


def _svg_open(width: int, height: int, title: str) -> list[str]:
    return [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='{width}' height='{height}' "
        f"role='img' aria-label='{escape(title, quote=True)}' {FONT}>",
        f"<title>{escape(title)}</title>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        f"<text x='12' y='22' font-size='15' font-weight='bold' fill='{PALETTE['ink']}'>{escape(title)}</text>",
    ]


# ------------------------------------------------------------------ charts


def line_chart(
    points: Sequence[tuple[str, float]],
    title: str,
    fmt: Callable[[float], str] = compact,
    width: int = 760,
    height: int = 260,
    color: str = PALETTE["line"],
    min_step: float = 0.0,
) -> str:
    """A line over time with a filled area: `points` are (x label, value) in order. `min_step` is
    the smallest step between the value axis' ticks (1 for amounts in base units). The left margin
    is as wide as the longest tick label, so none is clipped."""
    values = [float(v or 0) for _, v in points]
    ticks = nice_ticks(max(values, default=0), min_step=min_step)
    tick_labels = [fmt(tick) for tick in ticks]
    left, right, top, bottom = max(64, round(max(text_width(t) for t in tick_labels)) + 14), 16, 36, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    out = _svg_open(width, height, title)
    ceiling = ticks[-1] or 1.0
    for tick, tick_label in zip(ticks, tick_labels, strict=True):
        y = top + plot_h - tick / ceiling * plot_h
        out.append(f"<line x1='{left}' y1='{y:.1f}' x2='{width - right}' y2='{y:.1f}' stroke='{PALETTE['grid']}'/>")
        out.append(f"<text x='{left - 6}' y='{y + 4:.1f}' font-size='11' text-anchor='end' "
                   f"fill='{PALETTE['muted']}'>{escape(tick_label)}</text>")  # fmt: skip
    if not points:
        out.append(f"<text x='{width / 2}' y='{top + plot_h / 2}' text-anchor='middle' fill='{PALETTE['muted']}'>no data</text>")
        out.append("</svg>")
        return "".join(out)
    n = len(points)
    step = plot_w / max(n - 1, 1)
    xy = [(left + (i * step if n > 1 else plot_w / 2), top + plot_h - v / ceiling * plot_h) for i, v in enumerate(values)]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(xy))
    base = top + plot_h
    out.append(f"<path d='{path} L{xy[-1][0]:.1f},{base:.1f} L{xy[0][0]:.1f},{base:.1f} Z' fill='{color}22' stroke='none'/>")
    out.append(f"<path d='{path}' fill='none' stroke='{color}' stroke-width='2' stroke-linejoin='round'/>")
    if n <= 60:
        for (x, y), (label, value) in zip(xy, points, strict=True):
            out.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5' fill='{color}'>"
                       f"<title>{escape(label)}: {escape(fmt(float(value or 0)))}</title></circle>")  # fmt: skip
    labels = max(1, math.ceil(n / 8))
    for i in range(0, n, labels):
        x = xy[i][0]
        out.append(f"<text x='{x:.1f}' y='{height - 12}' font-size='11' text-anchor='middle' "
                   f"fill='{PALETTE['muted']}'>{escape(points[i][0])}</text>")  # fmt: skip
    out.append(f"<line x1='{left}' y1='{base}' x2='{width - right}' y2='{base}' stroke='{PALETTE['muted']}'/>")
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    items: Sequence[tuple[str, float]],
    title: str,
    fmt: Callable[[float], str] = compact,
    width: int = 760,
    bar_height: int = 22,
    color: str = PALETTE["bar"],
    label_width: int = 230,
) -> str:
    """Horizontal bars, largest first as given: `items` are (label, value). The right margin is as
    wide as the longest value label, so none runs off the chart."""
    top = 36
    right = max(90, round(max((text_width(fmt(float(v or 0)), 12) for _, v in items), default=0)) + 14)
    height = top + max(len(items), 1) * (bar_height + 6) + 10
    out = _svg_open(width, height, title)
    if not items:
        out.append(f"<text x='{width / 2}' y='{top + 14}' text-anchor='middle' fill='{PALETTE['muted']}'>no data</text></svg>")
        return "".join(out)
    highest = max(float(v or 0) for _, v in items) or 1.0
    plot_w = width - label_width - right
    for i, (label, value) in enumerate(items):
        y = top + i * (bar_height + 6)
        length = max(float(value or 0) / highest * plot_w, 1.0 if value else 0.0)
        shown = label if len(label) <= 34 else "…" + label[-33:]
        out.append(f"<text x='{label_width - 8}' y='{y + bar_height * 0.7:.1f}' font-size='12' text-anchor='end' "
                   f"fill='{PALETTE['ink']}'>{escape(shown)}<title>{escape(label)}</title></text>")  # fmt: skip
        out.append(f"<rect x='{label_width}' y='{y}' width='{length:.1f}' height='{bar_height}' rx='3' fill='{color}'/>")
        out.append(f"<text x='{label_width + length + 6:.1f}' y='{y + bar_height * 0.7:.1f}' font-size='12' "
                   f"fill='{PALETTE['ink']}'>{escape(fmt(float(value or 0)))}</text>")  # fmt: skip
    out.append("</svg>")
    return "".join(out)


def stack(svgs: Sequence[str], width: int = 760, gap: int = 12) -> str:
    """Several charts one under the other, as one standalone SVG document (for files)."""
    parts, y = [], 0
    for svg in svgs:
        height = int(svg.split("height='", 1)[1].split("'", 1)[0])
        parts.append(svg.replace("<svg ", f"<svg x='0' y='{y}' ", 1))
        y += height + gap
    return (f"<?xml version='1.0' encoding='UTF-8'?>\n<svg xmlns='http://www.w3.org/2000/svg' width='{width}' "
            f"height='{y}' viewBox='0 0 {width} {y}'><rect width='{width}' height='{y}' fill='white'/>"
            + "".join(parts) + "</svg>\n")  # fmt: skip


__all__ = [
    "Money", "bar_chart", "bucket_label", "compact", "line_chart", "nice_ticks", "percent", "plain", "plain_percent", "stack",
    "text_width",
]  # fmt: skip
