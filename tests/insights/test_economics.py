"""Caps, passes and the cost of collection in the insights (docs/economics.md): sales recorded with
their kind, list price and cap or pass; gas recorded once per transaction; per-period figures that
match a brute-force count of any traffic; money in one unit only when it can be (ETH, or a token at
the publisher's eth_price), exactly; the schema migrates a file of the first schema; the report and
the dashboard show the figures."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sqlite3
from datetime import UTC, datetime
from fractions import Fraction
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from channel_node.amounts import ETH, Asset
from channel_node.cli.report import add_report_command
from channel_node.insights import economics as econ
from channel_node.insights.recorder import Recorder
from channel_node.insights.schema import (
    SCHEMA,
    SCHEMA_VERSION,
    SchemaTooNew,
    connect,
    open_database,
    schema_version,
)
from channel_node.insights.writer import GAS, NO_TAGS, InsightsWriter
from channel_node.server.admin import create_admin_app
from channel_node.server.admin.dashboard import add_dashboard_routes

DAY, HOUR = 86400, 3600
T0 = int(datetime(2026, 1, 30, tzinfo=UTC).timestamp())  # a Friday: the range crosses a month's end
DUSD = Asset("DUSD", 6, "0x" + "ab" * 20)
TAGS = {"section": "news"}
CHANNELS = [bytes([n]) * 32 for n in range(1, 6)]
TOKEN = "t" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def unlock(at: int, price: int, channel: bytes, kind: str = "article", list_price: int | None = None,
           label: str | None = None, resource: str = "/news/a") -> tuple:  # fmt: skip
    if kind == "article" and list_price is None:
        return (1, resource, price, TAGS, channel, at)
    return (1, resource, price, TAGS, channel, at, (kind, list_price, label))


def gas(at: int, tx: bytes, kind: str, used: int, price: int, rows: int = 1) -> tuple:
    return (GAS, kind, used, NO_TAGS, tx, at, (price, rows))


def load(path, events, asset: Asset | None = DUSD, economics=None) -> None:
    writer = InsightsWriter(path, asset=asset, economics=economics)
    writer.write(events)
    writer.close()


def figures(path, period="day", since=T0, until=T0 + 5 * DAY, asset: Asset | None = DUSD, prices=None):
    conn = connect(path, readonly=True)
    try:
        return econ.figures(conn, period, since, until, asset, prices)
    finally:
        conn.close()


KNOWN = [
    unlock(T0 + 10, 20_000, CHANNELS[0]),
    unlock(T0 + 20, 20_000, CHANNELS[1]),
    unlock(T0 + 30, 300_000, CHANNELS[0], "pass", None, "news-day"),
    unlock(T0 + 40, 0, CHANNELS[0], "pass_read", 20_000, "news-day", "/news/b"),
    unlock(T0 + 50, 0, CHANNELS[0], "pass_read", 20_000, "news-day", "/news/c"),
    unlock(T0 + DAY + 10, 5_000, CHANNELS[1], "capped", 20_000, "news"),  # the partial charge at the cap
    unlock(T0 + DAY + 20, 0, CHANNELS[1], "capped", 20_000, "news", "/news/d"),
    unlock(T0 + DAY + 30, 0, CHANNELS[2], "capped", 30_000, "news", "/news/e"),
    unlock(T0 + DAY + 40, 10_000, CHANNELS[3], "capped", 10_000, "news"),  # not cheaper: not a cap hit
    gas(T0 + 100, b"a" * 32, "claim", 14_548 * 50, 10**9, rows=50),
    gas(T0 + DAY + 100, b"b" * 32, "defence", 43_477, 3 * 10**9),
    gas(T0 + DAY + 100, b"b" * 32, "defence", 43_477, 3 * 10**9),  # the same transaction again: once
    gas(T0 + DAY + 200, b"c" * 32, "transfer_authorization", 65_141, 2 * 10**9),
]


def test_known_sales_and_gas_per_day_with_a_token_priced_in_eth(tmp_path):
    load(tmp_path / "i.db", KNOWN, economics=("3000.00", "20"))
    f = figures(tmp_path / "i.db")
    day0, day1 = f["rows"][0], f["rows"][1]
    assert (day0["revenue"], day0["article_revenue"], day0["pass_revenue"], day0["passes_sold"]) == (340_000, 40_000, 300_000, 1)
    assert (day0["pass_reads"], day0["would_have_paid"], day0["unlocks"]) == (2, 40_000, 5)
    assert (day1["capped_reads"], day1["capped_channels"], day1["paid_capped"]) == (4, 2, 15_000)
    assert day1["would_have_paid"] == 80_000 and day1["article_revenue"] == 15_000
    assert day0["gas_wei"] == 14_548 * 50 * 10**9 and day0["transactions"] == 1
    assert day1["gas_by_kind"] == {"claim": 0, "close": 0, "defence": 43_477 * 3 * 10**9,
                                   "transfer_authorization": 65_141 * 2 * 10**9}  # fmt: skip
    # 727,400 gwei at 3000 DUSD per ETH = 2.1822 DUSD = 2,182,200 base units, against 0.34 DUSD of revenue
    assert day0["gas"] == 2_182_200 and day0["gas_percent"] == Fraction(2_182_200 * 100, 340_000)
    assert day0["gas_per_unlock"] == 436_440 and day0["projected_wei"] == 14_548 * 50 * 20 * 10**9
    [cap] = f["caps"]
    assert (cap["name"], cap["channels"], cap["reads"], cap["would_have_paid"], cap["paid"], cap["forgone"]) == (
        "news", 2, 3, 70_000, 5_000, 65_000)  # the read that cost its list price is no cap hit
    [day_pass] = f["passes"]
    assert day_pass == {"name": "news-day", "sold": 1, "buyers": 1, "revenue": 300_000, "reads": 2, "readers": 1,
                        "would_have_paid": 40_000}  # fmt: skip
    total = f["total"]
    assert total["revenue"] == 355_000 and total["gas_wei"] == sum(r["gas_wei"] for r in f["rows"])
    assert f["converted"] and f["eth_price"] == "3000" and "3000 DUSD" in f["unit_note"]


def test_without_a_price_a_token_sites_gas_stays_in_eth_and_no_share_is_guessed(tmp_path):
    load(tmp_path / "i.db", KNOWN)
    f = figures(tmp_path / "i.db")
    assert not f["converted"] and "eth_price" in f["unit_note"]
    assert all(r["gas"] is None and r["gas_percent"] is None and r["gas_per_unlock"] is None for r in f["rows"])
    assert f["rows"][0]["gas_wei_per_unlock"] == 14_548 * 50 * 10**9 // 5
    priced = figures(tmp_path / "i.db", prices=econ.Prices.parse("2500", None))  # the flag's price, not the file's
    assert priced["converted"] and priced["rows"][0]["gas"] == 14_548 * 50 * 10**9 * 2500 * 10**6 // 10**18


def test_an_eth_site_needs_no_price(tmp_path):
    load(tmp_path / "i.db", [unlock(T0, 10**15, CHANNELS[0]), gas(T0 + 5, b"g" * 32, "claim", 50_000, 10**9)], asset=ETH)
    f = figures(tmp_path / "i.db", asset=ETH)
    row = f["rows"][0]
    assert f["converted"] and row["gas"] == 5 * 10**13 and row["gas_percent"] == 5
    assert figures(tmp_path / "i.db", asset=None)["rows"][0]["gas_percent"] is None, "no asset known: no share"


sale_kinds = st.sampled_from(["article", "pass", "capped", "pass_read"])
sales = st.lists(st.tuples(st.integers(0, 40 * DAY - 1), sale_kinds, st.integers(0, 10**6), st.integers(0, 10**6),
                           st.integers(0, 4), st.sampled_from(["a", "b"])), max_size=40)  # fmt: skip
txs = st.lists(st.tuples(st.integers(0, 40 * DAY - 1), st.sampled_from(["claim", "close", "defence",
                                                                        "transfer_authorization"]),
                         st.integers(21_000, 10**6), st.integers(0, 10**12)), max_size=15)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(sales=sales, txs=txs, period=st.sampled_from(econ.PERIODS), start=st.integers(0, 20 * 24), hours=st.integers(1, 30 * 24))
def test_per_period_figures_match_a_brute_force_count(tmp_path_factory, sales, txs, period, start, hours):
    path = tmp_path_factory.mktemp("econ") / "i.db"
    events = [unlock(T0 + at, price, CHANNELS[ch], kind, listed if kind != "pass" else None, label)
              for at, kind, price, listed, ch, label in sales]  # fmt: skip
    events += [gas(T0 + at, n.to_bytes(32, "big"), kind, used, price) for n, (at, kind, used, price) in enumerate(txs)]
    load(path, events, asset=ETH)
    since, until = T0 + start * HOUR, T0 + (start + hours) * HOUR
    f = figures(path, period, since, until, asset=ETH)
    spans = econ.periods(period, since, until)
    assert [r["start"] for r in f["rows"]] == [label for label, _, _ in spans]
    assert spans[0][1] == since and spans[-1][2] == until
    assert all(a[2] == b[1] for a, b in zip(spans, spans[1:], strict=False)), "periods are contiguous"
    for (label, lo, hi), row in zip(spans, f["rows"], strict=True):
        assert econ.period_floor(period, lo) == label
        inside = [s for s in sales if lo <= T0 + s[0] < hi]
        assert row["revenue"] == sum(s[2] for s in inside)
        assert row["pass_revenue"] == sum(s[2] for s in inside if s[1] == "pass")
        assert row["article_revenue"] == row["revenue"] - row["pass_revenue"]
        assert row["would_have_paid"] == sum(s[3] for s in inside if s[1] in ("capped", "pass_read"))
        assert row["capped_channels"] == len({s[4] for s in inside if s[1] == "capped" and s[3] > s[2]})
        spent = [t for t in txs if lo <= T0 + t[0] < hi]
        assert row["gas_wei"] == sum(used * price for _, _, used, price in spent) == row["gas"]
        assert row["gas_percent"] == (Fraction(row["gas_wei"] * 100, row["revenue"]) if row["revenue"] else None)
    inside = [s for s in sales if since <= T0 + s[0] < until]
    hit = {s[4] for s in inside if s[1] == "capped" and s[3] > s[2]}
    assert f["total"]["capped_channels"] == len(hit), "a channel that hit both caps counts once in the total"
    caps = {c["name"]: c for c in f["caps"]}
    for label in ("a", "b"):
        hits = [s for s in inside if s[1] == "capped" and s[5] == label and s[3] > s[2]]
        if hits:
            assert caps[label]["channels"] == len({s[4] for s in hits})
            assert caps[label]["forgone"] == sum(s[3] - s[2] for s in hits)
        else:
            assert label not in caps


@settings(max_examples=200, deadline=None)
@given(wei=st.integers(0, 10**24), whole=st.integers(1, 10**6), cents=st.integers(0, 99), decimals=st.integers(0, 18))
def test_gas_in_a_token_is_exact_and_shown_rounded_half_up(wei, whole, cents, decimals):
    asset = Asset("TOK", decimals, "0x" + "cd" * 20)
    prices = econ.Prices.parse(f"{whole}.{cents:02d}", None)
    exact = econ.gas_in_asset(wei, asset, prices)
    assert exact == Fraction(wei * (whole * 100 + cents) * 10**decimals, 100 * 10**18)
    shown = econ.rounded(exact)
    assert abs(shown - exact) <= Fraction(1, 2) and isinstance(shown, int)


@pytest.mark.parametrize("text", ["3e3", "-1", "0", "0.00", "1,000", "", " ", "nan", "1.2.3"])
def test_a_price_that_is_not_a_positive_decimal_is_refused(text):
    with pytest.raises(econ.PriceError):
        econ.parse_decimal(text, "eth_price")


@settings(max_examples=200, deadline=None)
@given(st.fractions(min_value=-(10**9), max_value=10**9), st.integers(0, 6))
def test_decimal_text_is_plain_and_within_half_a_unit_of_its_last_place(value, places):
    text = econ.decimal_text(value, places)
    assert "," not in text and "e" not in text and (("." in text) == (places > 0))
    assert abs(Fraction(text) - value) <= Fraction(1, 2 * 10**places)


def test_percent_text_never_rounds_a_cost_to_nothing():
    assert econ.percent_text(Fraction(1234, 100)) == "12.34%"
    assert econ.percent_text(Fraction(1, 10**6)) == "<0.01%"
    assert econ.percent_text(Fraction(0)) == "0.00%" and econ.percent_text(None) == "–"


def test_months_are_calendar_months():
    spans = econ.periods("month", T0, T0 + 40 * DAY)
    assert [datetime.fromtimestamp(label, UTC).strftime("%Y-%m-%d") for label, _, _ in spans] == [
        "2026-01-01", "2026-02-01", "2026-03-01"]
    assert spans[0][1] == T0 and spans[1][1] == int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())


# ------------------------------------------------------------------ the recorder and the schema


async def test_the_recorder_takes_the_sale_kind_and_gas_with_defaults_for_old_callers(tmp_path):
    recorder = Recorder(tmp_path / "i.db", flush_interval=3600, asset=DUSD, eth_price="3000")
    await recorder.start()
    recorder.unlock("/news/a", 20_000, TAGS, CHANNELS[0], T0)  # the existing call, unchanged
    recorder.unlock("/news/b", 0, TAGS, CHANNELS[0], T0 + 1, kind="capped", list_price=20_000, cap="news")
    recorder.unlock("/news/c", 300_000, TAGS, CHANNELS[1], T0 + 2, kind="pass", pass_name="news-day")
    recorder.unlock("/news/d", 0, TAGS, CHANNELS[1], T0 + 3, kind="pass_read", list_price=20_000, pass_name="news-day")
    recorder.gas(b"x" * 32, "claim", 43_477, 10**9, 1, T0 + 4)
    recorder.gas(b"x" * 32, "claim", 43_477, 10**9, 1, T0 + 9)  # re-metered after a restart: once
    recorder.gas(b"y" * 32, "nonsense", 43_477, 10**9, 1, T0 + 9)  # refused and counted
    await recorder.close()
    assert recorder.stats["refused"] == 1
    f = figures(tmp_path / "i.db", since=T0, until=T0 + DAY)
    assert f["total"]["pass_revenue"] == 300_000 and f["total"]["would_have_paid"] == 40_000
    assert [c["name"] for c in f["caps"]] == ["news"] and f["total"]["transactions"] == 1
    assert f["eth_price"] == "3000", "the node's [economics] price is recorded in the file"


def test_a_file_of_the_first_schema_is_migrated_and_an_unmigrated_one_reads_empty(tmp_path):
    path = tmp_path / "v1.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    old.execute("INSERT INTO meta (key, value) VALUES ('schema', '1')")
    old.commit()
    old.close()
    empty = figures(path, asset=None)  # read-only, before any new node opened it: no sales or gas tables yet
    assert empty["caps"] == [] and empty["total"]["gas_wei"] == 0
    load(path, [unlock(T0, 1, CHANNELS[0], "capped", 5, "news")], asset=None)
    db = open_database(path)
    assert schema_version(db) == SCHEMA_VERSION == 2
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.close()
    with pytest.raises(SchemaTooNew):
        open_database(path)
    assert figures(path, asset=None)["caps"][0]["forgone"] == 4


# ------------------------------------------------------------------ the report and the dashboard


def _report(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_report_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", *argv])
    return int(args.handler(args))


def test_the_report_shows_gas_against_revenue_caps_and_passes(tmp_path, capsys):
    load(tmp_path / "i.db", KNOWN)
    span = ["--since", str(T0), "--until", str(T0 + 2 * DAY)]
    assert _report("--insights", str(tmp_path / "i.db"), *span) == 0
    out = capsys.readouterr().out
    assert "Cost of collection per day" in out and "0.0007274" in out  # day 0's gas in ETH
    assert "set [economics] eth_price" in out and "Caps" in out and "news-day" in out
    assert _report("--insights", str(tmp_path / "i.db"), *span, "--eth-price", "3000.00", "--period", "month") == 0
    out = capsys.readouterr().out
    assert "Cost of collection per month" in out and "January 2026" in out
    assert "gas (DUSD)" in out and "1 ETH = 3000 DUSD" in out
    # January (both days): 355,000 of revenue, 988,113 gwei of gas = 2,964,339 base units -> 835.03%
    assert "835.03%" in out and "2.964339" in out
    assert _report("--insights", str(tmp_path / "i.db"), *span, "--json", "--eth-price", "3000") == 0
    data = json.loads(capsys.readouterr().out)["economics"]
    assert data["rows"][0]["gas"] == "2182200" and data["rows"][0]["gas_percent"] == "641.8235"
    assert data["caps"][0]["forgone"] == "65000" and data["rows"][0]["gas_by_kind"]["claim"] == str(14_548 * 50 * 10**9)
    assert _report("--insights", str(tmp_path / "i.db"), "--eth-price", "3e3") == 2
    assert capsys.readouterr().err.startswith("error: --eth-price must be a positive decimal")


async def test_the_dashboard_shows_and_exports_the_cost_of_collection(tmp_path):
    load(tmp_path / "i.db", KNOWN, economics=("3000", None))
    app = create_admin_app(SimpleNamespace(settings=SimpleNamespace(admin_token=SecretStr(TOKEN))))
    add_dashboard_routes(app, tmp_path / "i.db")
    params = {"since": str(T0), "until": str(T0 + 2 * DAY)}
    async with TestClient(TestServer(app)) as client:
        html = await (await client.get("/admin/insights", headers=AUTH, params=params)).text()
        assert "Cost of collection" in html and "Gas % of revenue" in html and "news-day" in html
        assert "641.82%" in html
        data = await (await client.get("/admin/insights/data.json", headers=AUTH, params=params | {"period": "week"})).json()
        assert data["economics"]["period"] == "week" and data["economics"]["converted"]
        response = await client.get("/admin/insights/export.csv", headers=AUTH, params=params | {"table": "collection"})
        rows = list(csv.DictReader(io.StringIO(await response.text())))
        assert [int(r["gas_wei"]) for r in rows] == [14_548 * 50 * 10**9, 43_477 * 3 * 10**9 + 65_141 * 2 * 10**9]
        assert rows[0]["gas_in_asset"] == "2182200" and rows[1]["capped_channels"] == "2"
        bad = await client.get("/admin/insights/data.json", headers=AUTH, params=params | {"period": "year"})
        assert bad.status == 400 and (await bad.json())["error"] == "malformed_request"


def test_the_report_takes_the_price_from_the_nodes_config(tmp_path, capsys):
    load(tmp_path / "i.db", KNOWN)
    (tmp_path / "node.toml").write_text(
        f'contract = "0x{"11" * 20}"\nreceiver = "0x{"22" * 20}"\ntoken = "0x{"ab" * 20}"\n'
        f'insights_database = "{tmp_path / "i.db"}"\n[economics]\neth_price = "3000"\ngas_price_gwei = "0.05"\n'
        f'[paywall]\ncontent_dir = "{tmp_path}"\n'
    )
    assert _report("--config", str(tmp_path / "node.toml"), "--since", str(T0), "--until", str(T0 + DAY)) == 0
    out = capsys.readouterr().out
    assert "641.82%" in out and "at 0.05 gwei (ETH)" in out
    assert _report("--config", str(tmp_path / "node.toml"), "--since", str(T0), "--until", str(T0 + DAY),
                   "--eth-price", "1500") == 0  # the flag wins over the config
    assert "320.91%" in capsys.readouterr().out
