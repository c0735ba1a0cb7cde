"""What the revenue dashboard shows: its parameters, figures, JSON and CSV forms, and the HTML
page (inline SVG charts, no JavaScript). No HTTP here and no auth: the admin listener serves these
(`server/admin/dashboard.py`: `GET /admin/insights`, `/data.json`, `/export.csv`, behind the admin
guard), and `channel-node report` prints the same figures in a terminal.

Parameters (all optional):

- `bucket`: hour, day (default) or week;
- `since`, `until`: unix seconds, an ISO date or time (UTC unless it says otherwise), or for `since`
  a span back from now such as `48h`, `30d`, `12w`. Default: the last 48 hours (hour), the last 30
  days (day) or 26 weeks (week), ending with the current bucket;
- `tag`: `key:value`, to see one section, format or author (summary, series, top resources, prices);
- `top`: how many resources to rank (default 10);
- `period`: day, week or month, the periods of the caps, passes and cost-of-collection figures
  (docs/economics.md; default: the bucket, or day when the bucket is an hour). They are site-wide
  (gas is not spent per tag): `tag` does not narrow them;
- `table` (export.csv only): series (default), resources, tags, prices or collection.

`compute` opens its own read-only connection (WAL: beside the recorder's writer), so a caller may
run it on a worker thread. Money in JSON is a decimal string (the admin API's convention); in CSV
a plain integer.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from fractions import Fraction
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from channel_node.amounts import ETH, Asset
from channel_node.errors import UsageError
from channel_node.insights import economics as econ
from channel_node.insights import queries as q
from channel_node.insights.charts import Money, bar_chart, bucket_label, line_chart, percent, plain_percent
from channel_node.insights.schema import connect, read_asset

PARAMS = ("bucket", "since", "until", "tag", "top", "period")
TABLES = ("series", "resources", "tags", "prices", "collection")
DEFAULT_SPAN = {"hour": 48 * 3600, "day": 30 * 86400, "week": 26 * 7 * 86400}
MAX_TOP = 1000
_RELATIVE = re.compile(r"([0-9]{1,6})([hdw])")
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}
MONEY_KEYS = {"revenue", "price", "revenue_per_offer", "article_revenue", "pass_revenue", "gas_wei", "gas", "paid",
              "gas_per_unlock", "gas_wei_per_unlock", "projected_wei", "would_have_paid", "paid_capped", "forgone"}


class BadRequest(UsageError, ValueError):
    """A parameter the dashboard cannot use (the admin listener answers 400 `malformed_request`)."""


# ------------------------------------------------------------------ parameters


def parse_time(text: str, now: float, name: str) -> int:
    text = text.strip()
    if text.isdigit():
        return int(text)
    relative = _RELATIVE.fullmatch(text)
    if relative:
        return int(now) - int(relative.group(1)) * _UNITS[relative.group(2)]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} must be unix seconds, an ISO date or time, or a span like 30d") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def resolve_range(bucket: str, since: str | None, until: str | None, now: float) -> tuple[int, int]:
    """The range [since, until) in unix seconds; defaults end with the current bucket."""
    if bucket not in q.BUCKETS:
        raise BadRequest(f"bucket must be one of {list(q.BUCKETS)}")
    end = parse_time(until, now, "until") if until else q.bucket_floor(bucket, int(now)) + q.BUCKETS[bucket]
    start = parse_time(since, now, "since") if since else end - DEFAULT_SPAN[bucket]
    if end <= start:
        raise BadRequest("until must be after since")
    q.buckets(bucket, start, end)  # refuses a range of too many buckets
    return start, end


def parse_top(params: dict[str, str], default: int | None = 10) -> int | None:
    if "top" not in params:
        return default
    if not params["top"].isdigit() or not 1 <= int(params["top"]) <= MAX_TOP:
        raise BadRequest(f"top must be a whole number from 1 to {MAX_TOP}")
    return int(params["top"])


def parse_period(params: dict[str, str], bucket: str) -> str:
    period = params.get("period") or ("day" if bucket == "hour" else bucket)
    if period not in econ.PERIODS:
        raise BadRequest(f"period must be one of {list(econ.PERIODS)}")
    return period


def parse_tag(params: dict[str, str]) -> str | None:
    tag = params.get("tag") or None
    if tag is not None:
        q.parse_tag(tag)
    return tag


# ------------------------------------------------------------------ data


def compute(
    path: Path, bucket: str, since: int, until: int, tag: str | None, top: int, period: str | None = None,
    prices: econ.Prices | None = None, asset: Asset | None = None,
) -> dict[str, Any]:
    """The dashboard's figures and, under "economics", the caps, passes and cost of collection per
    `period` (econ.figures) with gas in `asset` (default: the file's) at `prices` (default: the file's)."""
    conn = connect(path, readonly=True)
    try:
        data = q.dashboard(conn, bucket, since, until, tag, top)
        data["economics"] = econ.figures(conn, period or ("day" if bucket == "hour" else bucket), since, until,
                                         asset if asset is not None else read_asset(conn), prices)  # fmt: skip
        return data
    finally:
        conn.close()


def jsonable(value: Any) -> Any:
    """Money as decimal strings (uint256-safe for every JSON reader), percentages (exact fractions
    inside) as decimal strings with 4 places, everything else as is."""
    if isinstance(value, dict):
        return {k: (_money_json(v) if k in MONEY_KEYS else [str(p) for p in v] if k == "prices" and isinstance(v, list)
                    else {n: str(w) for n, w in v.items()} if k == "gas_by_kind" else jsonable(v))
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, Fraction):
        return econ.decimal_text(value, 4)
    return value


# ------------------------------------------------------------------ caps, passes, cost of collection as tables


def collection_table(data: dict[str, Any], money: Money) -> tuple[list[str], list[list[str]]]:
    """The cost of collection per period and in total, as text cells: revenue (articles, passes),
    unlocks, gas in ETH (and in the asset when converted), gas as % of revenue, gas per unlock, the
    transactions, and the projection at `gas_price_gwei` when set."""
    e = data["economics"]
    eth = Money.of(ETH)
    in_asset = e["converted"] and money.symbol != "ETH"
    projected = e["gas_price_gwei"] is not None
    headers = ["period", money.header("revenue"), money.header("articles"), money.header("passes"), "unlocks",
               "gas (ETH)"] + ([money.header("gas")] if in_asset else []) + ["gas % of revenue",
               money.header("gas per unlock") if e["converted"] else "gas per unlock (ETH)", "transactions"]  # fmt: skip
    if projected:
        headers.append(f"at {e['gas_price_gwei']} gwei (ETH)")

    def cells(label: str, row: dict[str, Any]) -> list[str]:
        per = money.number(row["gas_per_unlock"]) if e["converted"] and row["gas_per_unlock"] is not None else (
            eth.number(row["gas_wei_per_unlock"]) if row["gas_wei_per_unlock"] is not None else "–")
        out = [label, money.number(row["revenue"]), money.number(row["article_revenue"]), money.number(row["pass_revenue"]),
               f"{row['unlocks']:,}", eth.number(row["gas_wei"])]  # fmt: skip
        if in_asset:
            out.append(money.number(row["gas"]) if row["gas"] is not None else "–")
        out += [econ.percent_text(row["gas_percent"]), per, f"{row['transactions']:,}"]
        if projected:
            out.append(eth.number(row.get("projected_wei") or 0))
        return out

    rows = [cells(econ.period_label(e["period"], r["start"]), r) for r in e["rows"]]
    rows.append(cells("total", e["total"]))
    return headers, rows


def gas_kind_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Gas over the range by what it was spent on: claims, closes, defences, exact transfers."""
    total = data["economics"]["total"]
    eth = Money.of(ETH)
    rows = [[name.replace("_", " "), eth.number(wei), econ.percent_text(econ.share(wei, total["gas_wei"]))]
            for name, wei in total["gas_by_kind"].items()]  # fmt: skip
    return ["spent on", "gas (ETH)", "share"], rows


def caps_table(data: dict[str, Any], money: Money) -> tuple[list[str], list[list[str]]]:
    """Per cap: channels that reached it, the reads it made cheaper, what they would have paid
    uncapped, what they paid, and the difference."""
    rows = [[c["name"], f"{c['channels']:,}", f"{c['reads']:,}", money.number(c["would_have_paid"]),
             money.number(c["paid"]), money.number(c["forgone"])] for c in data["economics"]["caps"]]  # fmt: skip
    return ["cap", "channels that reached it", "capped reads", money.header("would have paid uncapped"),
            money.header("paid"), money.header("forgone")], rows  # fmt: skip


def passes_table(data: dict[str, Any], money: Money) -> tuple[list[str], list[list[str]]]:
    """Per pass: sold, buyers, revenue, the reads it covered and what they would have cost."""
    rows = [[p["name"], f"{p['sold']:,}", f"{p['buyers']:,}", money.number(p["revenue"]), f"{p['reads']:,}",
             money.number(p["would_have_paid"])] for p in data["economics"]["passes"]]  # fmt: skip
    return ["pass", "sold", "buyers", money.header("revenue"), "reads covered", money.header("reads at list price")], rows


def _money_json(value: int | None) -> str | None:
    return None if value is None else str(value)


def _cell(value: Any) -> Any:
    """A CSV cell; text that a spreadsheet would run as a formula is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def to_csv(data: dict[str, Any], table: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if table == "series":
        writer.writerow(["start", "start_unix", "offers", "unlocks", "revenue", "payers", "conversion"])
        for row in data["series"]:
            start = datetime.fromtimestamp(row["start"], UTC).isoformat().replace("+00:00", "Z")
            writer.writerow([start, row["start"], row["offers"], row["unlocks"], row["revenue"], row["payers"],
                             _cell(row["conversion"])])  # fmt: skip
    elif table == "resources":
        writer.writerow(["resource", "tags", "prices", "offers", "unlocks", "revenue", "payers", "conversion"])
        for row in data["top_resources"]:
            tags = ";".join(f"{k}={v}" for k, v in sorted(row["tags"].items()))
            writer.writerow([_cell(row["resource"]), _cell(tags), " ".join(map(str, row["prices"])), row["offers"],
                             row["unlocks"], row["revenue"], row["payers"], _cell(row["conversion"])])  # fmt: skip
    elif table == "tags":
        writer.writerow(["key", "value", "offers", "unlocks", "revenue", "payers", "conversion"])
        for row in data["tags"]:
            writer.writerow([_cell(row["key"]), _cell(row["value"]), row["offers"], row["unlocks"], row["revenue"],
                             row["payers"], _cell(row["conversion"])])  # fmt: skip
    elif table == "collection":
        e = data["economics"]
        writer.writerow(["start", "start_unix", "revenue", "article_revenue", "pass_revenue", "unlocks", "gas_wei",
                         "gas_units", "transactions", "claim_wei", "close_wei", "defence_wei", "transfer_authorization_wei",
                         "gas_in_asset", "gas_percent", "capped_channels", "capped_reads", "pass_reads",
                         "would_have_paid", "eth_price"])  # fmt: skip
        for row in e["rows"]:
            start = datetime.fromtimestamp(row["start"], UTC).isoformat().replace("+00:00", "Z")
            kinds = row["gas_by_kind"]
            writer.writerow([start, row["start"], row["revenue"], row["article_revenue"], row["pass_revenue"],
                             row["unlocks"], row["gas_wei"], row["gas_units"], row["transactions"], kinds["claim"],
                             kinds["close"], kinds["defence"], kinds["transfer_authorization"], _cell(row["gas"]),
                             _cell(jsonable(row["gas_percent"])), row["capped_channels"], row["capped_reads"],
                             row["pass_reads"], row["would_have_paid"], _cell(e["eth_price"])])  # fmt: skip
    else:
        writer.writerow(["tag", "resource", "price", "offers", "unlocks", "revenue", "conversion", "revenue_per_offer"])
        prices = data["prices"] or {"tag": "", "resources": []}
        for row in prices["resources"]:
            writer.writerow([_cell(prices["tag"]), _cell(row["resource"]), row["price"], row["offers"], row["unlocks"],
                             row["revenue"], _cell(row["conversion"]), _cell(row["revenue_per_offer"])])  # fmt: skip
    return out.getvalue()


# ------------------------------------------------------------------ the page


CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 'DejaVu Sans','Liberation Sans',Arial,sans-serif;color:#1f2933;
background:#f5f7fa}header{background:#1f2933;color:#fff;padding:14px 24px;display:flex;align-items:baseline;gap:18px;
flex-wrap:wrap}header h1{font-size:19px;margin:0}header .range{color:#cbd2d9}main{padding:16px 24px;max-width:1600px}
form{display:flex;gap:10px;flex-wrap:wrap;align-items:end;margin-bottom:14px}label{font-size:12px;color:#52606d;
display:flex;flex-direction:column;gap:2px}input,select,button{font:inherit;padding:4px 6px;border:1px solid #cbd2d9;
border-radius:4px;background:#fff}button{background:#2563eb;color:#fff;border-color:#2563eb;cursor:pointer}
.links a{margin-right:12px}.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin-bottom:14px}
.card{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0001}.card .k{font-size:12px;
color:#52606d;text-transform:uppercase;letter-spacing:.04em}.card .v{font-size:26px;font-weight:bold;margin-top:2px}
.card .s{font-size:12px;color:#7b8794}.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px;margin-bottom:12px}
.panel{background:#fff;border-radius:8px;padding:8px;box-shadow:0 1px 2px #0001;overflow:auto}.wide{grid-column:1/-1}
svg{width:100%;height:auto;display:block}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #e4e7eb;text-align:right;white-space:nowrap}th{color:#52606d;
font-weight:600;background:#f5f7fa}td.l,th.l{text-align:left}td.path{max-width:420px;overflow:hidden;
text-overflow:ellipsis}h2{font-size:15px;margin:6px 8px 8px}.note{color:#7b8794;font-size:12px;margin:8px}
"""


def _query_string(params: dict[str, str], **changes: str | None) -> str:
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v})


def _table(headers: list[tuple[str, bool]], rows: list[list[str]]) -> str:
    head = "".join(f"<th class='{'l' if left else ''}'>{escape(h)}</th>" for h, left in headers)
    body = []
    for row in rows:
        cells = []
        for (_, left), value in zip(headers, row, strict=True):
            cells.append(f"<td class='{'l path' if left else ''}' title='{escape(value, quote=True)}'>{escape(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        body.append(f"<tr><td class='l' colspan='{len(headers)}'>nothing recorded in this range</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_page(data: dict[str, Any], params: dict[str, str], money: Money | None = None, *, prefix: str) -> str:
    """The dashboard's page; `prefix` is the path it is served at (its form and links point there)."""
    money = money or Money()
    bucket = data["range"]["bucket"]
    since, until, tag = data["range"]["since"], data["range"]["until"], data["range"]["tag"]
    s = data["summary"]

    def fmt_day(t: int) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")

    span = f"{fmt_day(since)} → {fmt_day(until)} UTC, by {bucket}" + (f", tag {tag}" if tag else "")
    per_unlock = s["revenue"] // s["unlocks"] if s["unlocks"] else 0
    cards = [
        ("Revenue", money.short(s["revenue"]), money.exact(s["revenue"])),
        ("Unlocks", f"{s['unlocks']:,}", f"{money.short(per_unlock)} per unlock"),
        ("Offers shown", f"{s['offers']:,}", "402 answers"),
        ("Conversion", percent(s["conversion"]), "unlocks / offers"),
        ("Paying channels", f"{s['payers']:,}", "unique, pseudonymous"),
    ]
    series = data["series"]

    def points(key: str) -> list[tuple[str, float]]:
        return [(bucket_label(bucket, r["start"], short=True), r[key]) for r in series]

    charts_time = [
        line_chart(points("revenue"), f"Revenue per {bucket}", money.short, width=1240, height=280, min_step=1),
        line_chart([(label, (v or 0) * 100) for label, v in points("conversion")], f"Conversion per {bucket} (%)",
                   plain_percent, color="#b45309"),  # fmt: skip
        line_chart(points("unlocks"), f"Unlocks per {bucket}", color="#0f766e"),
        line_chart(points("payers"), f"Paying channels per {bucket}", color="#7c3aed"),
    ]
    top = data["top_resources"]
    charts_top = bar_chart([(r["resource"], r["revenue"]) for r in top], "Top resources by revenue", money.short)
    tag_keys: dict[str, list[dict[str, Any]]] = {}
    for row in data["tags"]:
        tag_keys.setdefault(row["key"], []).append(row)
    tag_panels = []
    for key, rows in tag_keys.items():
        tag_panels.append(bar_chart([(f"{key}: {r['value']}", r["revenue"]) for r in rows], f"Revenue by {key}", money.short,
                                    bar_height=18, label_width=200))  # fmt: skip
        tag_panels.append(bar_chart([(f"{key}: {r['value']}", (r["conversion"] or 0) * 100) for r in rows],
                                    f"Conversion by {key} (%)", plain_percent, bar_height=18, label_width=200,
                                    color="#b45309"))  # fmt: skip
    resources_table = _table(
        [("resource", True), ("tags", True), ("price", False), ("offers", False), ("unlocks", False),
         ("paying channels", False), ("conversion", False), ("revenue", False)],
        [[r["resource"], ", ".join(f"{k}={v}" for k, v in sorted(r["tags"].items())),
          " / ".join(money.exact(p) for p in r["prices"]), f"{r['offers']:,}", f"{r['unlocks']:,}", f"{r['payers']:,}",
          percent(r["conversion"]), money.exact(r["revenue"])] for r in top],
    )  # fmt: skip
    tags_table = _table(
        [("tag", True), ("offers", False), ("unlocks", False), ("paying channels", False), ("conversion", False),
         ("revenue", False)],
        [[f"{r['key']}: {r['value']}", f"{r['offers']:,}", f"{r['unlocks']:,}", f"{r['payers']:,}",
          percent(r["conversion"]), money.exact(r["revenue"])] for r in data["tags"]],
    )  # fmt: skip
    prices = data["prices"]
    price_html = "<p class='note'>no tagged traffic in this range</p>"
    if prices:
        price_html = (
            f"<h2>Price comparison: {escape(prices['tag'])}</h2>"
            + _table(
                [("price", False), ("resources", False), ("offers", False), ("unlocks", False), ("conversion", False),
                 ("revenue per offer", False), ("revenue", False)],
                [[money.exact(r["price"]), f"{r['resources']:,}", f"{r['offers']:,}", f"{r['unlocks']:,}",
                  percent(r["conversion"]), money.exact(r["revenue_per_offer"] or 0), money.exact(r["revenue"])]
                 for r in prices["by_price"]],
            )
            + "<h2>… per resource</h2>"
            + _table(
                [("resource", True), ("price", False), ("offers", False), ("unlocks", False), ("conversion", False),
                 ("revenue", False)],
                [[r["resource"], money.exact(r["price"]), f"{r['offers']:,}", f"{r['unlocks']:,}",
                  percent(r["conversion"]), money.exact(r["revenue"])] for r in prices["resources"][:50]],
            )
        )  # fmt: skip
    form_bucket = "".join(f"<option{' selected' if b == bucket else ''}>{b}</option>" for b in q.BUCKETS)
    economics_html = _economics_html(data, money) if "economics" in data else ""
    form_period = "".join(f"<option{' selected' if p == params.get('period') else ''}>{p}</option>" for p in econ.PERIODS)

    def value(key: str) -> str:
        return escape(params.get(key, ""), quote=True)

    links = " ".join(
        f"<a href='{prefix}/export.csv?{escape(_query_string(params, table=t), quote=True)}'>CSV: {t}</a>" for t in TABLES
    )
    cards_html = "".join(
        f"<div class='card'><div class='k'>{escape(k)}</div><div class='v'>{escape(v)}</div>"
        f"<div class='s'>{escape(sub)}</div></div>" for k, v, sub in cards
    )
    unit = f"Amounts in {money.symbol}." if money.symbol else "Amounts in the token's smallest unit (base units)."
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Revenue insights · channel-node</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body><header><h1>Revenue insights</h1><span class="range">{escape(span)}</span></header><main>
<form method="get" action="{prefix}">
<label>bucket<select name="bucket">{form_bucket}</select></label>
<label>since<input name="since" value="{value('since')}" placeholder="30d or 2026-01-01" size="12"></label>
<label>until<input name="until" value="{value('until')}" placeholder="now" size="12"></label>
<label>tag<input name="tag" value="{value('tag')}" placeholder="section:news" size="16"></label>
<label>top<input name="top" value="{value('top')}" placeholder="10" size="4"></label>
<label>period<select name="period"><option value="">(bucket)</option>{form_period}</select></label>
<button type="submit">Show</button>
<span class="links"><a href="{prefix}/data.json?{escape(_query_string(params), quote=True)}">JSON</a> {links}</span>
</form>
<section class="cards">{cards_html}</section>
<section class="grid"><div class="panel wide">{charts_time[0]}</div>
<div class="panel">{charts_time[1]}</div><div class="panel">{charts_time[2]}</div>
<div class="panel">{charts_top}</div><div class="panel">{charts_time[3]}</div>
{''.join(f'<div class="panel">{svg}</div>' for svg in tag_panels)}</section>
<section class="grid"><div class="panel wide"><h2>Top resources</h2>{resources_table}</div>
<div class="panel"><h2>By tag</h2>{tags_table}</div><div class="panel">{price_html}</div></section>
{economics_html}<p class="note">{escape(unit)} Paying channels are distinct channel ids (readers stay pseudonymous).
Conversion is unlocks per 402 offer shown. Times are UTC.</p>
</main></body></html>"""


def _economics_html(data: dict[str, Any], money: Money) -> str:
    """Cards, the per-period table and the caps and passes tables (docs/economics.md)."""
    e = data["economics"]
    total = e["total"]
    eth = Money.of(ETH)
    gas_text = money.short(total["gas"]) if e["converted"] and total["gas"] is not None else eth.short(total["gas_wei"])
    per = (money.short(total["gas_per_unlock"]) if e["converted"] and total["gas_per_unlock"] is not None
           else eth.short(total["gas_wei_per_unlock"] or 0))  # fmt: skip
    cards = [
        ("Gas spent", gas_text, f"{total['transactions']:,} transactions"),
        ("Gas % of revenue", econ.percent_text(total["gas_percent"]), "cost of collection"),
        ("Gas per unlock", per, f"{total['unlocks']:,} unlocks"),
        ("Pass revenue", money.short(total["pass_revenue"]), f"{total['passes_sold']:,} passes sold"),
        ("Would have paid", money.short(total["would_have_paid"]), "capped and pass reads at list price"),
    ]
    cards_html = "".join(
        f"<div class='card'><div class='k'>{escape(k)}</div><div class='v'>{escape(v)}</div>"
        f"<div class='s'>{escape(sub)}</div></div>" for k, v, sub in cards
    )

    def table(headers: list[str], rows: list[list[str]]) -> str:
        return _table([(h, i == 0) for i, h in enumerate(headers)], rows)

    revenue_chart = bar_chart(
        [(f"{econ.period_label(e['period'], r['start'])}", float(r["gas_percent"] or 0)) for r in e["rows"]][-40:],
        f"Gas as % of revenue per {e['period']}", plain_percent, bar_height=16, label_width=160, color="#b45309",
    ) if e["converted"] else ""  # fmt: skip
    return (
        f"<h2>Cost of collection, caps and passes (per {escape(e['period'])})</h2>"
        f"<section class='cards'>{cards_html}</section>"
        f"<section class='grid'><div class='panel wide'>{table(*collection_table(data, money))}"
        f"<p class='note'>{escape(e['unit_note'])} Gas is what the node's own transactions used (claims, closes, "
        "defences, exact transfers), from their receipts; per unlock divides it by every unlock recorded.</p></div>"
        f"<div class='panel'><h2>Gas by kind</h2>{table(*gas_kind_table(data))}</div>"
        f"<div class='panel'>{revenue_chart}</div>"
        f"<div class='panel wide'><h2>Caps</h2>{table(*caps_table(data, money))}</div>"
        f"<div class='panel wide'><h2>Passes</h2>{table(*passes_table(data, money))}</div></section>"
    )


__all__ = [
    "PARAMS", "TABLES", "BadRequest", "caps_table", "collection_table", "compute", "gas_kind_table", "jsonable",
    "parse_period", "parse_tag", "parse_time", "parse_top", "passes_table", "render_page", "resolve_range", "to_csv",
]  # fmt: skip
