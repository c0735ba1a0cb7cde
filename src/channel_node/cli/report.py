"""`channel-node report`: the dashboard's figures as terminal tables, JSON, or an SVG/PNG chart.

    channel-node report --insights insights.db [--bucket day] [--since 30d] [--until ...] [--tag section:news]
                        [--top 10] [--svg chart.svg] [--png chart.png] [--json] [--decimals N --symbol NAME]

Amounts are in the node's asset (`0.0005 ETH`, `0.02 DUSD`), which the node records in the insights
database; `--decimals` and `--symbol` override it (docs/amounts.md).

It reads the insights database directly (read-only; a running node keeps writing beside it: WAL).
PNG is the same SVG rendered by headless Chromium (Debian package `chromium`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the report imports its figures lazily: `channel-node --help` stays fast
    from channel_node.insights.charts import Money

from channel_node.errors import UsageError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class ReportError(UsageError):
    """Printed as one line, exit code 2."""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_screenshot(source: Path, png: Path, width: int, height: int, timeout: float = 60) -> None:
    """Renders a local HTML or SVG file to a PNG with headless Chromium."""
    browser = find_chromium()
    if browser is None:
        raise ReportError("a PNG needs Chromium (Debian: apt-get install chromium); or write --svg")
    with tempfile.TemporaryDirectory(prefix="channel-node-chromium-") as profile:
        command = [
            browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
            "--disable-extensions", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            f"--screenshot={png}", f"--window-size={width},{height}", "--default-background-color=ffffffff",
            source.resolve().as_uri(),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not png.exists():
        raise ReportError(f"chromium could not render {source.name}: {done.stderr.strip()[-300:]}")


def report_svg(data: dict[str, Any], money: Money) -> tuple[str, int, int]:
    """Revenue over time and the top resources, stacked: the SVG document, its width and height."""
    from channel_node.insights.charts import bar_chart, bucket_label, line_chart, plain_percent, stack

    bucket = data["range"]["bucket"]
    charts = [
        line_chart([(bucket_label(bucket, r["start"], short=True), r["revenue"]) for r in data["series"]],
                   f"Revenue per {bucket}" + (f" ({data['range']['tag']})" if data["range"]["tag"] else ""), money.short,
                   min_step=1),
        line_chart([(bucket_label(bucket, r["start"], short=True), (r["conversion"] or 0) * 100) for r in data["series"]],
                   f"Conversion per {bucket} (%)", plain_percent, color="#b45309"),
        bar_chart([(r["resource"], r["revenue"]) for r in data["top_resources"]], "Top resources by revenue", money.short),
    ]  # fmt: skip
    document = stack(charts)
    height = int(document.split("height='", 2)[1].split("'", 1)[0])
    return document, 760, height


def _load(args: argparse.Namespace) -> tuple[dict[str, Any], Money]:
    from channel_node.insights import queries as q
    from channel_node.insights.dashboard import BadRequest, compute, resolve_range

    path = args.insights
    token: str | None = None
    if path is None and args.config:
        from channel_node.config import load_settings

        settings = load_settings(Path(args.config))  # a mistake is a ConfigError: one line, exit 2 (cli/support.py)
        path = getattr(settings, "insights_database", None) or getattr(settings, "insights", None)
        token = settings.token
    if path is None:
        raise ReportError("give --insights PATH (the node's insights database) or a --config that sets it")
    path = Path(path)
    if not path.exists():
        raise ReportError(f"no insights database at {path}")
    try:
        since, until = resolve_range(args.bucket, args.since, args.until, time.time())
        if args.tag:
            q.parse_tag(args.tag)
        data = compute(path, args.bucket, since, until, args.tag, args.top)
    except (BadRequest, q.QueryError) as exc:
        raise ReportError(str(exc)) from None
    return data, _money(args, path, token)


def _money(args: argparse.Namespace, path: Path, token: str | None) -> Money:
    """Amounts in the asset the insights file records (the node writes it), else ETH for a
    configuration without a token; `--decimals` and `--symbol` override either (docs/amounts.md)."""
    from channel_node.amounts import ETH
    from channel_node.insights.charts import Money
    from channel_node.insights.schema import asset_of_file

    asset = asset_of_file(path)
    if asset is None and args.config and token is None:
        asset = ETH
    if args.decimals is not None and not 0 <= args.decimals <= 77:
        raise ReportError(f"--decimals must be between 0 and 77, not {args.decimals}")
    decimals = args.decimals if args.decimals is not None else asset.decimals if asset else None
    symbol = args.symbol if args.symbol is not None else asset.symbol if asset else None
    if args.decimals is not None and args.symbol is None and asset is not None and asset.decimals != args.decimals:
        symbol = None  # other decimals than the asset's: the asset's symbol would misname them
    if asset is not None and args.decimals is None and args.symbol is None:
        return Money.of(asset)  # with the node's display form when it recorded one (`$1.40`, `2¢`)
    return Money(decimals, symbol)


def _print_tables(data: dict[str, Any], money: Money) -> None:
    from rich.console import Console
    from rich.table import Table

    from channel_node.cli.tables import FOLD, KEEP, fitted_table, print_table
    from channel_node.insights.charts import bucket_label, percent

    console = Console()
    if not console.is_terminal:  # a file or a pipe: wide enough that paths and figures keep to one line
        console = Console(width=160)
    rng = data["range"]

    def day(t: int) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")

    s = data["summary"]
    title = f"Revenue insights {day(rng['since'])} → {day(rng['until'])} UTC" + (f", tag {rng['tag']}" if rng["tag"] else "")
    summary = Table(title=title, show_header=False)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    for name, value in (("revenue", money.exact(s["revenue"])), ("unlocks", f"{s['unlocks']:,}"),
                        ("offers shown", f"{s['offers']:,}"), ("conversion", percent(s["conversion"])),
                        ("paying channels (payers)", f"{s['payers']:,}")):  # fmt: skip
        summary.add_row(name, value)
    console.print(summary)

    def table(title: str, columns: list[str], rows: list[list[str]], left: int = 1) -> None:
        """Figures (and the unit in their headers) never wrap nor shrink; paths, tags and dates
        fold; the table fits the terminal (cli/tables.py), or is one small table per row."""
        names = [money.header(c) if c in MONEY_COLUMNS else c for c in columns]
        kinds = [(name, FOLD if i < left else KEEP) for i, name in enumerate(names)]
        print_table(console, fitted_table(title, kinds, rows, console.width, right=names[left:]))

    n = money.number
    table(f"By {rng['bucket']}", ["start", "offers", "unlocks", "payers", "conversion", "revenue"],
          [[bucket_label(rng["bucket"], r["start"]), f"{r['offers']:,}", f"{r['unlocks']:,}", f"{r['payers']:,}",
            percent(r["conversion"]), n(r["revenue"])] for r in data["series"]])  # fmt: skip
    # Narrower than 100 columns, the tags (which "By tag" shows anyway) give their room to the paths.
    tags = console.width >= 100
    table("Top resources", ["resource"] + ["tags"] * tags + ["price", "offers", "unlocks", "payers", "conversion", "revenue"],
          [[r["resource"]] + [", ".join(f"{k}={v}" for k, v in sorted(r["tags"].items()))] * tags
           + [" / ".join(n(p) for p in r["prices"]), f"{r['offers']:,}", f"{r['unlocks']:,}", f"{r['payers']:,}",
              percent(r["conversion"]), n(r["revenue"])] for r in data["top_resources"]], left=1 + tags)  # fmt: skip
    table("By tag", ["tag", "offers", "unlocks", "payers", "conversion", "revenue"],
          [[f"{r['key']}: {r['value']}", f"{r['offers']:,}", f"{r['unlocks']:,}", f"{r['payers']:,}",
            percent(r["conversion"]), n(r["revenue"])] for r in data["tags"]])  # fmt: skip
    if data["prices"]:
        p = data["prices"]
        table(f"Price comparison: {p['tag']}", ["price", "resources", "offers", "unlocks", "conversion",
                                                "revenue per offer", "revenue"],
              [[n(r["price"]), f"{r['resources']:,}", f"{r['offers']:,}", f"{r['unlocks']:,}",
                percent(r["conversion"]), n(r["revenue_per_offer"] or 0), n(r["revenue"])]
               for r in p["by_price"]], left=0)  # fmt: skip


MONEY_COLUMNS = frozenset({"price", "revenue", "revenue per offer"})


def run(args: argparse.Namespace) -> int:
    try:
        data, money = _load(args)
        if args.json:
            from channel_node.insights.dashboard import jsonable

            print(json.dumps(jsonable(data)))
        else:
            _print_tables(data, money)
        if args.svg or args.png:
            document, width, height = report_svg(data, money)
            if args.svg:
                Path(args.svg).write_text(document)
            if args.png:
                with tempfile.TemporaryDirectory(prefix="channel-node-report-") as work:
                    svg = Path(work) / "chart.svg"
                    svg.write_text(document)
                    chromium_screenshot(svg, Path(args.png).resolve(), width, height)
            for name in (args.svg, args.png):
                if name:
                    print(f"wrote {name}", file=sys.stderr)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_report_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Adds `channel-node report` to the CLI's subparsers (the handler is in `handler`)."""
    report = subparsers.add_parser(
        "report", help="revenue insights: revenue, unlocks, paying channels, conversion by time, resource and tag",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    report.add_argument("--insights", help="the node's insights database")
    report.add_argument("--config", help="the node's TOML configuration (for the insights database's path)")
    report.add_argument("--bucket", choices=["hour", "day", "week"], default="day")
    report.add_argument("--since", help="unix seconds, ISO date/time (UTC), or a span back from now: 48h, 30d, 12w")
    report.add_argument("--until", help="unix seconds or ISO date/time (default: the end of the current bucket)")
    report.add_argument("--tag", help="only this tag, key:value (e.g. section:news)")
    report.add_argument("--top", type=int, default=10, help="resources to rank (default 10)")
    report.add_argument("--svg", help="write a chart (revenue and conversion over time, top resources) as SVG")
    report.add_argument("--png", help="the same chart as PNG (needs Chromium)")
    report.add_argument("--json", action="store_true", help="print the figures as JSON (money as decimal strings)")
    report.add_argument("--decimals", type=int, help="override the asset's decimals (default: the node's asset's)")
    report.add_argument("--symbol", help="override the asset's symbol (default: the node's asset's, e.g. ETH)")
    report.set_defaults(handler=run)
    return report


__all__ = ["add_report_command", "chromium_screenshot", "find_chromium", "report_svg", "run"]
