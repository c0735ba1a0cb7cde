"""Revenue insights: the queries against brute-force answers on generated traffic (before, during
and after compaction, with late events), the recorder's buffering and durability, the dashboard
routes behind the admin token, the report command, a real paywall recording its offers and
unlocks, and the dashboard rendered by headless Chromium (tests/artifacts/insights/dashboard.png)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import random
import sqlite3
import struct
import zlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from channel_node.cli.report import add_report_command, find_chromium
from channel_node.insights import OFFER, UNLOCK, InsightsWriter, PayerUnion, Recorder, connect, encode_ids
from channel_node.insights import queries as q
from channel_node.insights.dashboard import resolve_range
from channel_node.server.admin import add_dashboard_routes, create_admin_app

HOUR, DAY, WEEK = 3600, 86400, 7 * 86400
T0 = 1767571200  # Monday 2026-01-05 00:00 UTC
TOKEN = "insights-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "insights"

NEWS_A = {"section": "news", "author": "ann"}
NEWS_B = {"section": "news", "author": "bob"}
SPORT_C = {"section": "sport", "author": "ann"}
CATALOGUE = [("/news/a", NEWS_A, 100), ("/news/b", NEWS_B, 300), ("/sport/c", SPORT_C, 100), ("/untagged", {}, 50)]
CHANNELS = [bytes([n]) * 32 for n in range(1, 21)]


@dataclass(frozen=True)
class Ev:
    kind: int
    resource: str
    price: int
    tags: dict
    channel: bytes | None
    at: int

    def tuple(self):
        return (self.kind, self.resource, self.price, self.tags, self.channel, self.at)


def traffic(days: int = 15) -> list[Ev]:
    """Deterministic traffic: four resources (one untagged, one whose price doubles on day 7), four
    busy hours a day, offers and unlocks from 20 channels in a rotating pattern."""
    events = []
    for d in range(days):
        for hour in (1, 8, 13, 20):
            for r, (path, tags, price) in enumerate(CATALOGUE):
                if path == "/sport/c" and d >= 7:
                    price = 200
                base = T0 + d * DAY + hour * HOUR
                for k in range((d + hour + r) % 4 + 1):
                    events.append(Ev(OFFER, path, price, tags, None, base + r * 300 + k))
                for k in range((d + r) % 3):
                    channel = CHANNELS[(d * 7 + hour + r * 3 + k) % 20]
                    events.append(Ev(UNLOCK, path, price, tags, channel, base + 1800 + r * 60 + k))
    return events


# ------------------------------------------------------------------ the brute-force oracle


def _span(since: int, until: int) -> tuple[int, int]:
    return since // HOUR * HOUR, -(-until // HOUR) * HOUR


def _has(tags: dict, tag: str | None) -> bool:
    if tag is None:
        return True
    key, value = tag.split(":", 1)
    return tags.get(key) == value


def figures(events: list[Ev]) -> dict:
    offers = sum(e.kind == OFFER for e in events)
    unlocks = [e for e in events if e.kind == UNLOCK]
    return {"offers": offers, "unlocks": len(unlocks), "revenue": sum(e.price for e in unlocks),
            "payers": len({e.channel for e in unlocks}), "conversion": len(unlocks) / offers if offers else None}  # fmt: skip


def select(events, since, until, tag=None) -> list[Ev]:
    lo, hi = _span(since, until)
    return [e for e in events if lo <= e.at < hi and _has(e.tags, tag)]


def label(bucket: str, t: int) -> int:
    moment = datetime.fromtimestamp(t, UTC)
    if bucket == "hour":
        start = moment.replace(minute=0, second=0)
    else:
        start = moment.replace(hour=0, minute=0, second=0)
        if bucket == "week":
            start = start.fromtimestamp(start.timestamp() - start.weekday() * DAY, UTC)
    return int(start.timestamp())


def check_all(conn, events, since, until, tag=None) -> None:
    """Every query over [since, until) (optionally one tag) equals the brute-force answer."""
    chosen = select(events, since, until, tag)
    assert _without_range(q.summary(conn, since, until, tag)) == figures(chosen)
    for bucket in ("hour", "day", "week"):
        groups = defaultdict(list)
        for e in chosen:
            groups[label(bucket, e.at)].append(e)
        rows = q.series(conn, bucket, since, until, tag)
        lo, hi = _span(since, until)
        assert rows[0]["start"] == label(bucket, lo) and rows[-1]["start"] == label(bucket, hi - 1)
        for row in rows:
            assert {k: v for k, v in row.items() if k != "start"} == figures(groups.get(row["start"], [])), (bucket, row)
        assert set(groups) <= {row["start"] for row in rows}
    per_resource = defaultdict(list)
    for e in chosen:
        per_resource[e.resource].append(e)
    top = q.top_resources(conn, since, until, n=None, tag=tag)
    assert {r["resource"]: {k: r[k] for k in ("offers", "unlocks", "revenue", "payers", "conversion")} for r in top} == {
        path: figures(evs) for path, evs in per_resource.items()
    }
    for row in top:
        assert row["prices"] == sorted({e.price for e in per_resource[row["resource"]]})
        assert row["tags"] == per_resource[row["resource"]][0].tags
    assert [r["revenue"] for r in top] == sorted((r["revenue"] for r in top), reverse=True)
    if tag is None:
        per_tag = defaultdict(list)
        for e in chosen:
            for key, value in e.tags.items():
                per_tag[(key, value)].append(e)
        assert {(r["key"], r["value"]): {k: v for k, v in r.items() if k not in ("key", "value")}
                for r in q.by_tag(conn, since, until)} == {k: figures(v) for k, v in per_tag.items()}  # fmt: skip
    else:
        compare = q.price_comparison(conn, tag, since, until)
        per_price = defaultdict(list)
        for e in chosen:
            per_price[(e.resource, e.price)].append(e)
        assert {(r["resource"], r["price"]): {k: r[k] for k in ("offers", "unlocks", "revenue", "conversion")}
                for r in compare["resources"]} == {  # fmt: skip
            key: {k: v for k, v in figures(evs).items() if k != "payers"} for key, evs in per_price.items()
        }


def _without_range(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("since", "until")}


def ranges(seed: int = 7, count: int = 12) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    fixed = [
        (T0, T0 + 15 * DAY),  # everything, aligned
        (T0 - 3 * DAY, T0 + 20 * DAY),  # wider than the data
        (T0 + 1800, T0 + 15 * DAY - 1),  # starts and ends mid-hour
        (T0 + 5 * HOUR, T0 + 9 * DAY + 14 * HOUR),  # partial days at both ends, a whole week inside
        (T0 + 8 * HOUR, T0 + 9 * HOUR),  # one hour
        (T0 + 6 * DAY, T0 + 8 * DAY),  # across a week boundary
    ]
    return fixed + [
        (a, a + rng.randrange(HOUR, 12 * DAY)) for a in (T0 + rng.randrange(-DAY, 15 * DAY) for _ in range(count))
    ]


# ------------------------------------------------------------------ queries


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return traffic()


def _load(path: Path, events: list[Ev], batch: int = 97) -> InsightsWriter:
    writer = InsightsWriter(path)
    for start in range(0, len(events), batch):
        writer.write([e.tuple() for e in events[start : start + batch]])
    return writer


def test_known_totals(generated, tmp_path):
    """A few answers worked out by hand from the generator's pattern."""
    writer = _load(tmp_path / "i.db", generated)
    writer.compact(T0 + 30 * DAY)
    conn = connect(tmp_path / "i.db", readonly=True)
    total = q.summary(conn, T0, T0 + 15 * DAY)
    offers = sum((d + h + r) % 4 + 1 for d in range(15) for h in (1, 8, 13, 20) for r in range(4))
    unlocks = {r: sum((d + r) % 3 for d in range(15)) * 4 for r in range(4)}
    sport_revenue = sum((d + 2) % 3 * 4 * (100 if d < 7 else 200) for d in range(15))
    assert total["offers"] == offers == 600
    assert total["unlocks"] == sum(unlocks.values()) == 240
    assert total["revenue"] == unlocks[0] * 100 + unlocks[1] * 300 + sport_revenue + unlocks[3] * 50 == 35_800
    assert total["payers"] == 20 and total["conversion"] == pytest.approx(0.4)
    top = q.top_resources(conn, T0, T0 + 15 * DAY, n=2)
    assert [(r["resource"], r["revenue"]) for r in top] == [("/news/b", 18_000), ("/sport/c", 8_800)]
    assert top[1]["prices"] == [100, 200] and top[1]["tags"] == SPORT_C
    compare = q.price_comparison(conn, "author:ann", T0, T0 + 15 * DAY)
    assert [(r["price"], r["resources"], r["unlocks"]) for r in compare["by_price"]] == [(200, 1, 28), (100, 2, 92)]
    assert compare["by_price"][0]["offers"] == 80 and compare["by_price"][0]["revenue_per_offer"] == 5600 // 80


@pytest.mark.parametrize("state", ["raw", "half", "compacted", "late"])
def test_queries_match_brute_force(generated, tmp_path, state):
    """Whatever is compacted (nothing, the first week and some days, everything, then late events
    into compacted days), every figure equals the brute-force answer."""
    events = list(generated)
    writer = _load(tmp_path / "i.db", events)
    if state == "half":
        assert writer.compact(T0 + 10 * DAY + 5 * HOUR) > 0
    elif state in ("compacted", "late"):
        writer.compact(T0 + 30 * DAY)
    if state == "late":  # a clock that jumped back: events land in days and weeks already compacted
        late = [Ev(UNLOCK, "/news/a", 100, NEWS_A, b"\xee" * 32, T0 + 2 * DAY + 9 * HOUR),
                Ev(UNLOCK, "/sport/c", 200, SPORT_C, CHANNELS[0], T0 + 12 * DAY + 20 * HOUR + 5),
                Ev(OFFER, "/news/b", 300, NEWS_B, None, T0 + 3 * DAY + 1)]  # fmt: skip
        writer.write([e.tuple() for e in late])
        events += late
    conn = connect(tmp_path / "i.db", readonly=True)
    for since, until in ranges():
        for tag in (None, "section:news", "author:ann", "section:nothing"):
            check_all(conn, events, since, until, tag)
    if state == "late":  # and again once they are compacted
        writer.compact(T0 + 30 * DAY)
        for since, until in ranges(seed=8, count=6):
            check_all(conn, events, since, until)
            check_all(conn, events, since, until, "author:ann")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 3), st.integers(0, 9), st.integers(0, 20 * DAY)), max_size=60
    ),
    since=st.integers(-DAY, 20 * DAY),
    length=st.integers(1, 21 * DAY),
    compact_at=st.integers(0, 25 * DAY),
)
def test_queries_match_brute_force_on_random_traffic(tmp_path_factory, data, since, length, compact_at):
    events = sorted(
        (Ev(kind, CATALOGUE[r][0], CATALOGUE[r][2] * (1 + offset % 2), CATALOGUE[r][1],
            CHANNELS[c] if kind == UNLOCK else None, T0 + offset) for kind, r, c, offset in data),
        key=lambda e: e.at,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("prop") / "i.db"
    writer = _load(path, events, batch=7)
    writer.compact(T0 + compact_at)
    conn = connect(path, readonly=True)
    check_all(conn, events, T0 + since, T0 + since + length)
    check_all(conn, events, T0 + since, T0 + since + length, "author:ann")
    conn.close()
    writer.close()


def test_prices_beyond_63_bits_stay_exact(tmp_path):
    huge = 2**70 + 12345
    writer = InsightsWriter(tmp_path / "i.db")
    events = [(OFFER, "/gold", huge, {"tier": "gold"}, None, T0 + 10),
              (UNLOCK, "/gold", huge, {"tier": "gold"}, CHANNELS[0], T0 + 20),
              (UNLOCK, "/gold", huge, {"tier": "gold"}, CHANNELS[1], T0 + 2 * DAY),
              (UNLOCK, "/gold", 2**100, {"tier": "gold"}, CHANNELS[2], T0 + 30)]  # fmt: skip
    assert writer.write(events) == 3 and writer.refused == 1  # 2**96 and beyond: refused
    conn = connect(tmp_path / "i.db", readonly=True)
    for compact in (False, True):
        if compact:
            writer.compact(T0 + 10 * DAY)
        for since in (T0, T0 + 5):  # whole days (rollups) and a partial first day (raw events)
            assert q.summary(conn, since, T0 + 3 * DAY)["revenue"] == 2 * huge
            assert q.top_resources(conn, since, T0 + 3 * DAY)[0]["revenue"] == 2 * huge
            assert q.by_tag(conn, since, T0 + 3 * DAY)[0]["revenue"] == 2 * huge
            assert q.price_comparison(conn, "tier:gold", since, T0 + 3 * DAY)["by_price"][0]["revenue"] == 2 * huge
    stored = conn.execute("SELECT e.price, o.price FROM events e JOIN price_overflow o ON o.event_id = e.id").fetchall()
    assert stored == [(-1, str(huge))] * 3


def test_payer_sets_encoding_round_trips():
    for ids in ([], [0], [5, 9, 4000], list(range(0, 300_000, 3)), list(range(1000))):
        union = PayerUnion()
        union.add_blob(len(ids), encode_ids(ids))
        union.add_blob(len(ids), encode_ids(ids))
        union.add_ids(ids[:10] + [10**6])
        assert union.count() == len(set(ids) | {10**6})
    assert encode_ids(list(range(0, 300_000, 3)))[:1] == b"Z" and encode_ids([5, 9, 4000])[:1] == b"S"


def test_query_errors(tmp_path):
    InsightsWriter(tmp_path / "i.db").close()
    conn = connect(tmp_path / "i.db", readonly=True)
    with pytest.raises(q.QueryError):
        q.summary(conn, T0, T0)
    with pytest.raises(q.QueryError):
        q.series(conn, "month", T0, T0 + DAY)
    with pytest.raises(q.QueryError):
        q.series(conn, "hour", T0, T0 + 3 * 365 * DAY)  # too many buckets
    with pytest.raises(q.QueryError):
        q.price_comparison(conn, "no-colon", T0, T0 + DAY)
    assert q.summary(conn, T0, T0 + DAY)["revenue"] == 0 and q.top_resources(conn, T0, T0 + DAY) == []


# ------------------------------------------------------------------ the recorder


async def test_recorder_buffers_only_and_close_writes_everything(tmp_path):
    recorder = Recorder(tmp_path / "insights.db", flush_interval=3600, flush_at=10**6)
    await recorder.start()
    for n in range(30_000):
        if n % 3:
            recorder.offer(f"/a/{n % 50}", 1000, NEWS_A, T0 + n)
        else:
            recorder.unlock(f"/a/{n % 50}", 1000, NEWS_A, CHANNELS[n % 20], T0 + n)
    assert recorder.buffered == 30_000
    with sqlite3.connect(tmp_path / "insights.db") as db:
        assert db.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)  # the request path did no I/O
    await recorder.close()  # no flush asked: closing writes what is buffered
    with sqlite3.connect(tmp_path / "insights.db") as db:
        assert db.execute("SELECT COUNT(*), SUM(kind) FROM events").fetchone() == (30_000, 10_000)
        assert db.execute("SELECT COUNT(*) FROM resources").fetchone() == (50,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn = connect(tmp_path / "insights.db", readonly=True)
    assert q.summary(conn, T0, T0 + DAY)["revenue"] == 10_000 * 1000


async def test_recorder_flushes_in_the_background_and_on_request(tmp_path):
    recorder = Recorder(tmp_path / "insights.db", flush_interval=0.05)
    await recorder.start()
    recorder.unlock("/a", 7, {}, CHANNELS[0], T0)
    for _ in range(100):
        await asyncio.sleep(0.02)
        with sqlite3.connect(tmp_path / "insights.db") as db:
            if db.execute("SELECT COUNT(*) FROM events").fetchone() == (1,):
                break
    else:
        pytest.fail("the writer thread did not flush within 2 s")
    recorder.offer("/a", 7, {}, T0 + 1)
    await recorder.flush()
    with sqlite3.connect(tmp_path / "insights.db") as db:
        assert db.execute("SELECT COUNT(*) FROM events").fetchone() == (2,)
    assert recorder.stats["written"] == 2 and recorder.stats["failed"] == 0
    await recorder.close()
    # A restart reuses the dictionaries and goes on counting.
    again = Recorder(tmp_path / "insights.db")
    await again.start()
    again.unlock("/a", 7, {}, CHANNELS[0], T0 + 2)
    await again.close()
    with sqlite3.connect(tmp_path / "insights.db") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM events").fetchone() == (3, 3)
        assert db.execute("SELECT COUNT(*) FROM resources").fetchone() == (1,)
        assert db.execute("SELECT COUNT(*) FROM channels").fetchone() == (1,)


async def test_a_stalled_writer_drops_and_counts_instead_of_growing(tmp_path):
    recorder = Recorder(tmp_path / "insights.db", flush_at=5, max_buffer=10)  # not started: nobody drains
    for n in range(25):
        recorder.offer("/a", 1, {}, T0 + n)
    assert recorder.buffered == 10 and recorder.stats["dropped"] == 15


async def test_second_writer_is_refused(tmp_path):
    recorder = Recorder(tmp_path / "insights.db")
    await recorder.start()
    with pytest.raises(RuntimeError, match="another process"):
        InsightsWriter(tmp_path / "insights.db")
    await recorder.close()


# ------------------------------------------------------------------ the dashboard


def admin_app():
    """The real admin application (its token middleware) for a node object with only settings."""
    return create_admin_app(SimpleNamespace(settings=SimpleNamespace(admin_token=SecretStr(TOKEN))))


@pytest.fixture
async def dashboard(generated, tmp_path):
    path = tmp_path / "insights.db"
    writer = _load(path, generated + [Ev(UNLOCK, "/x<script>alert(1)</script>", 5, {"section": "news"}, CHANNELS[0],
                                         T0 + 3 * DAY)])  # fmt: skip
    writer.compact(T0 + 30 * DAY)
    writer.close()
    app = admin_app()
    add_dashboard_routes(app, path)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


RANGE = {"since": str(T0), "until": str(T0 + 15 * DAY)}


async def test_dashboard_needs_the_token(dashboard):
    for path in ("/admin/insights", "/admin/insights/data.json", "/admin/insights/export.csv"):
        for headers in (None, {"Authorization": "Bearer wrong"}):
            response = await dashboard.get(path, headers=headers, params=RANGE)
            assert response.status == 401 and (await response.json())["error"] == "unauthorized"


async def test_a_browser_logs_in_with_the_token_and_reads_but_never_mutates(dashboard):
    form = await dashboard.get("/admin/insights/login")
    assert form.status == 200 and 'name="token"' in await form.text()
    refused = await dashboard.post("/admin/insights/login", data={"token": "wrong"}, allow_redirects=False)
    assert refused.status == 401 and "channel_node_dashboard" not in refused.cookies
    login = await dashboard.post("/admin/insights/login", data={"token": TOKEN}, allow_redirects=False)
    assert login.status == 303 and login.headers["Location"] == "/admin/insights"
    cookie = login.cookies["channel_node_dashboard"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and TOKEN not in cookie.value
    jar = {"channel_node_dashboard": cookie.value}
    page = await dashboard.get("/admin/insights", params=RANGE, cookies=jar)
    assert page.status == 200 and "<svg" in await page.text()
    for method, path in (("POST", "/admin/claim"), ("GET", "/admin/channels"), ("POST", "/admin/close")):
        response = await dashboard.request(method, path, cookies=jar)
        assert response.status == 401, f"the dashboard cookie opens the dashboard only, not {method} {path}"
    forged = await dashboard.get("/admin/insights", params=RANGE, cookies={"channel_node_dashboard": "0" * 64})
    assert forged.status == 401


async def test_dashboard_page_json_and_csv(dashboard, generated):
    page = await dashboard.get("/admin/insights", headers=AUTH, params=RANGE)
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert html.count("<svg") >= 6 and "Revenue per day" in html and "Top resources by revenue" in html
    assert "Conversion by section" in html and "Price comparison" in html
    assert "<script>" not in html and "&lt;script&gt;" in html  # resource paths are escaped
    assert "35,805" in html  # the revenue card's exact figure

    response = await dashboard.get("/admin/insights/data.json", headers=AUTH, params=RANGE | {"bucket": "week"})
    data = await response.json()
    assert data["summary"]["revenue"] == "35805" and data["summary"]["unlocks"] == 241  # money as strings
    assert [row["start"] for row in data["series"]] == [T0, T0 + WEEK, T0 + 2 * WEEK]
    assert sum(int(row["revenue"]) for row in data["series"]) == 35805
    assert data["top_resources"][0] == {
        "resource": "/news/b", "tags": NEWS_B, "prices": ["300"], "offers": 154, "unlocks": 60, "revenue": "18000",
        "payers": 19, "conversion": 60 / 154,
    }  # fmt: skip
    assert data["prices"]["tag"] == "section:news"  # the best-selling tag, when none is asked

    tagged = await (await dashboard.get("/admin/insights/data.json", headers=AUTH,
                                        params=RANGE | {"tag": "section:sport", "top": "1"})).json()  # fmt: skip
    assert tagged["summary"]["revenue"] == "8800" and [r["resource"] for r in tagged["top_resources"]] == ["/sport/c"]
    assert [p["price"] for p in tagged["prices"]["by_price"]] == ["200", "100"]

    for table, header in (("series", "start"), ("resources", "resource"), ("tags", "key"), ("prices", "tag")):
        response = await dashboard.get("/admin/insights/export.csv", headers=AUTH, params=RANGE | {"table": table})
        assert response.status == 200 and response.content_type == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(await response.text())))
        assert rows and next(iter(rows[0])) == header
        if table == "series":
            assert len(rows) == 15 and sum(int(r["revenue"]) for r in rows) == 35805
            assert rows[0]["start"] == "2026-01-05T00:00:00Z"
        if table == "resources":
            assert len(rows) == 5  # every resource, not only the top 10
        if table == "tags":
            assert {(r["key"], r["value"]) for r in rows} == {("section", "news"), ("section", "sport"),
                                                             ("author", "ann"), ("author", "bob")}  # fmt: skip


async def test_dashboard_refuses_bad_parameters(dashboard, tmp_path):
    for params in ({"bucket": "month"}, {"since": "yesterday"}, {"since": str(T0 + DAY), "until": str(T0)},
                   {"tag": "nocolon"}, {"top": "0"}, {"colour": "red"}, {"bucket": "hour", "since": "0"}):  # fmt: skip
        response = await dashboard.get("/admin/insights/data.json", headers=AUTH, params=params)
        assert response.status == 400, params
        assert (await response.json())["error"] == "malformed_request"
    response = await dashboard.get("/admin/insights/export.csv", headers=AUTH, params={"table": "nope"})
    assert response.status == 400
    app = admin_app()
    add_dashboard_routes(app, tmp_path / "missing.db")
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/admin/insights", headers=AUTH)
        assert response.status == 503 and (await response.json())["error"] == "insights_unavailable"


async def test_dashboard_over_a_live_recorder_shows_the_last_second(tmp_path):
    recorder = Recorder(tmp_path / "insights.db", flush_interval=3600, flush_at=10**6)
    await recorder.start()
    app = admin_app()
    add_dashboard_routes(app, recorder, decimals=3, symbol="TOK")
    async with TestClient(TestServer(app)) as client:
        now = datetime.now(UTC).timestamp()
        recorder.offer("/live", 1500, {"section": "live"}, now)
        recorder.unlock("/live", 1500, {"section": "live"}, CHANNELS[0], now)
        data = await (await client.get("/admin/insights/data.json", headers=AUTH, params={"bucket": "hour"})).json()
        assert data["summary"]["revenue"] == "1500" and data["summary"]["payers"] == 1
        html = await (await client.get("/admin/insights", headers=AUTH)).text()
        assert "1.5 TOK" in html  # amounts in whole units when decimals are given
    await recorder.close()


def test_default_ranges_end_with_the_current_bucket():
    now = T0 + 3 * DAY + 5 * HOUR + 17
    assert resolve_range("day", None, None, now) == (T0 + 4 * DAY - 30 * DAY, T0 + 4 * DAY)
    assert resolve_range("hour", None, None, now) == (T0 + 3 * DAY + 6 * HOUR - 48 * HOUR, T0 + 3 * DAY + 6 * HOUR)
    assert resolve_range("week", None, None, now) == (T0 + WEEK - 26 * WEEK, T0 + WEEK)
    assert resolve_range("day", "7d", "2026-01-09", now) == (now - 7 * DAY, T0 + 4 * DAY)


# ------------------------------------------------------------------ the report command


def _report(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_report_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", *argv])
    return args.handler(args)


def test_report_tables_json_and_svg(generated, tmp_path, capsys):
    _load(tmp_path / "i.db", generated).close()
    span = ["--since", str(T0), "--until", str(T0 + 15 * DAY)]
    assert _report("--insights", str(tmp_path / "i.db"), *span, "--bucket", "week", "--svg", str(tmp_path / "c.svg")) == 0
    out = capsys.readouterr().out
    assert "Top resources" in out and "/news/b" in out and "35,800" in out and "40.0%" in out
    svg = (tmp_path / "c.svg").read_text()
    assert svg.startswith("<?xml") and svg.count("<svg") == 4 and "Revenue per week" in svg
    assert _report("--insights", str(tmp_path / "i.db"), *span, "--json", "--tag", "author:bob") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["revenue"] == "18000" and data["range"]["tag"] == "author:bob"
    assert _report("--insights", str(tmp_path / "nothing.db")) == 2
    assert "no insights database" in capsys.readouterr().err
    assert _report("--insights", str(tmp_path / "i.db"), "--since", "whenever") == 2


# ------------------------------------------------------------------ a real paywall records


async def test_paywall_records_offers_and_unlocks(chain, deployed, parties, channels, tmp_path):
    from paywall_helpers import PRICE, Payer, node_settings, start_node, write_site

    site = write_site(tmp_path / "site")
    settings = node_settings(deployed.address, parties.receiver.address, tmp_path / "node.db", content_dir=site)
    running = await start_node(chain.tester, settings)
    recorder = Recorder(tmp_path / "insights.db")
    await recorder.start()
    running.node.paywall.insights = recorder
    try:
        client = running.client
        assert (await client.get("/articles/1.html")).status == 402  # an offer
        assert (await client.get("/articles/missing.html")).status == 404  # nothing to sell: no offer
        payer = Payer(channels, channels.open_eth(100 * PRICE, channels.config()))
        paid = await client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})
        assert paid.status == 200
        again = await client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})
        assert again.status == 200  # re-reading is free: not an unlock
        api = await client.get("/api/quote", headers={"PAYMENT-SIGNATURE": payer.header(2 * PRICE)})
        assert api.status == 200  # per-request price, no tags
        await recorder.flush()
    finally:
        await recorder.close()
        await running.stop()
    conn = connect(tmp_path / "insights.db", readonly=True)
    rows = conn.execute(
        "SELECT e.kind, r.path, e.price, t.canon, c.channel FROM events e JOIN resources r ON r.id = e.resource_id "
        "JOIN tagsets t ON t.id = e.tagset_id LEFT JOIN channels c ON c.id = e.channel_id ORDER BY e.id"
    ).fetchall()
    assert rows == [
        (OFFER, "/articles/1.html", PRICE, '{"section":"news"}', None),
        (UNLOCK, "/articles/1.html", PRICE, '{"section":"news"}', payer.id),
        (UNLOCK, "/api/quote", PRICE, "{}", payer.id),
    ]
    now = int(datetime.now(UTC).timestamp())
    total = q.summary(conn, now - DAY, now + HOUR)
    assert (total["offers"], total["unlocks"], total["revenue"], total["payers"]) == (1, 2, 2 * PRICE, 1)
    news = q.by_tag(conn, now - DAY, now + HOUR)
    assert news == [{"key": "section", "value": "news", "offers": 1, "unlocks": 1, "revenue": PRICE, "conversion": 1.0,
                     "payers": 1}]  # fmt: skip


# ------------------------------------------------------------------ headless Chromium


def _png_size_and_colours(png: bytes) -> tuple[int, int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    chunks, at = [], 8
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at : at + 8])
        if kind == b"IDAT":
            chunks.append(png[at + 8 : at + 8 + length])
        at += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    return width, height, len(set(pixels[:: 97]))


@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
async def test_dashboard_renders_in_headless_chromium(dashboard, tmp_path):
    from channel_node.cli.report import chromium_screenshot

    html = await (await dashboard.get("/admin/insights", headers=AUTH, params=RANGE)).text()
    page = tmp_path / "dashboard.html"
    page.write_text(html)  # self-contained: inline CSS and SVG, no scripts, nothing fetched
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    await asyncio.to_thread(chromium_screenshot, page, shot, 1280, 900)
    width, height, colours = _png_size_and_colours(shot.read_bytes())
    assert (width, height) == (1280, 900) and colours > 20, "the screenshot is blank"
    # The report's PNG is the same SVG, rendered the same way.
    db = tmp_path / "report.db"
    _load(db, traffic(3)).close()
    png = tmp_path / "report.png"
    code = await asyncio.to_thread(_report, "--insights", str(db), "--since", str(T0), "--until", str(T0 + 3 * DAY),
                                   "--bucket", "hour", "--png", str(png), "--json")  # fmt: skip
    assert code == 0
    width, height, colours = _png_size_and_colours(png.read_bytes())
    assert width == 760 and height > 600 and colours > 10
