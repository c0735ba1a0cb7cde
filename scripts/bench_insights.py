#!/usr/bin/env python3
"""Revenue insights at scale: dashboard queries over a year of a busy site's traffic.

    python scripts/bench_insights.py [--events 10000000] [--db FILE] [--json]
    python scripts/bench_insights.py --unlock-overhead [--json]

Generates `--events` offers and unlocks (default 10 million) through the recorder's own write path
(`InsightsWriter.write`, the code the node's writer thread runs: dictionary encoding, events,
rollups), a year of it ending now: 3,000 resources with Zipf popularity, each tagged with a
section (12), a format (4) and an author (300), four price levels with some prices changed half-way
through the year, conversion falling with price, 100,000 reader channels of Zipf activity, a
growing daily volume with a weekly and a daily rhythm. Then it compacts closed hours and days
(as the writer thread does), and times every query the dashboard runs, over ranges that end now
(so the open day is counted from raw events) and start mid-day (so partial days are too).

`--json` prints one line: {"events": ..., "slowest_query_s": ..., ...}. `--db FILE` keeps the
database (and reuses it when it already holds the events).

`--unlock-overhead` measures the other target, "recording adds no measurable drop to the paid-unlock
benchmark": it runs scripts/bench_unlock.py's node and wrk driver twice in one run, without and
with a Recorder attached to the paywall (tags on the price), alternating, and reports paid unlocks/s
of both (and p99 latency), checks that every durable charge was recorded as an unlock, and measures
the recorder's own costs: one `Recorder.unlock` call on the request path (ns) and the writer
thread's work per unlock (µs, in 1-second batches).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

DAY = 86400
RESOURCES = 3000
CHANNELS = 100_000
SECTIONS = ["news", "politics", "business", "tech", "science", "sport", "culture", "travel", "food", "opinion",
            "health", "local"]  # fmt: skip
FORMATS = [("article", 0.7), ("video", 0.1), ("podcast", 0.1), ("data", 0.1)]
AUTHORS = 300
PRICES = [10_000_000_000_000, 20_000_000_000_000, 50_000_000_000_000, 100_000_000_000_000]
DIURNAL = [2, 1, 1, 1, 1, 2, 4, 7, 9, 9, 8, 8, 9, 8, 7, 7, 7, 8, 9, 10, 10, 8, 6, 4]


# ---------------------------------------------------------------------- traffic


def catalogue(rng: random.Random) -> list[tuple[str, dict, int, int | None]]:
    """(path, tags, price, price after the mid-year change or None) per resource."""
    formats = [f for f, _ in FORMATS]
    weights = [w for _, w in FORMATS]
    out = []
    for i in range(RESOURCES):
        section = SECTIONS[min(int(rng.expovariate(0.35)), len(SECTIONS) - 1)]
        fmt = rng.choices(formats, weights)[0]
        author = f"author-{int(rng.paretovariate(1.2) * 7) % AUTHORS:03d}"
        price = rng.choice(PRICES[:2] if fmt == "article" else PRICES[1:])
        changed = rng.choice([p for p in PRICES if p != price]) if rng.random() < 0.1 else None
        out.append((f"/{section}/{fmt}/{i}", {"section": section, "format": fmt, "author": author}, price, changed))
    return out


def generate(writer, total: int, now: int, seed: int = 1, say=lambda _: None) -> int:
    rng = random.Random(seed)
    resources = catalogue(rng)
    resource_cum = list(itertools.accumulate(1 / (k**1.1) for k in range(1, RESOURCES + 1)))
    channel_cum = list(itertools.accumulate(1 / (k**0.8) for k in range(1, CHANNELS + 1)))
    channels = [rng.randbytes(32) for _ in range(CHANNELS)]
    first_day = now // DAY - 364
    volumes = [(1 + 0.5 * d / 365) * (0.8 if (first_day + d + 3) % 7 >= 5 else 1.0) for d in range(365)]
    scale = total / sum(volumes)
    counts = [int(v * scale) for v in volumes]
    counts[-1] += total - sum(counts)
    middle = first_day + 182
    # Conversion falls with price: about 20% at the lowest price, 6% at the highest.
    unlock_share = {p: c / (1 + c) for p, c in ((p, 0.2 * (PRICES[0] / p) ** 0.5) for p in PRICES)}
    written = 0
    started = time.perf_counter()
    for d, count in enumerate(counts):
        day = first_day + d
        base = day * DAY
        hours = rng.choices(range(24), DIURNAL, k=count)
        stamps = sorted(base + h * 3600 + rng.randrange(3600) for h in hours)
        if day == now // DAY:  # today: up to now only
            stamps = [min(s, now - 1) for s in stamps]
        picks = rng.choices(range(RESOURCES), cum_weights=resource_cum, k=count)
        payers = rng.choices(channels, cum_weights=channel_cum, k=count)
        late = day >= middle
        batch = []
        for at, r, channel in zip(stamps, picks, payers, strict=True):
            path, tags, price, changed = resources[r]
            if late and changed:
                price = changed
            if rng.random() < unlock_share[price]:
                batch.append((1, path, price, tags, channel, at))
            else:
                batch.append((0, path, price, tags, None, at))
        written += writer.write(batch)
        if d % 30 == 29:
            say(f"  {written:,} events ({time.perf_counter() - started:.0f} s)")
    return written


# ---------------------------------------------------------------------- queries


def timed_queries(path: Path, now: int) -> dict[str, float]:
    from channel_node.insights import connect
    from channel_node.insights import queries as q

    conn = connect(path, readonly=True)
    year = (now - 365 * DAY + 1800, now)  # starts mid-day, ends now: partial days on both ends
    month = (now - 30 * DAY, now)
    week = (now - 7 * DAY, now)
    day_aligned = (q.bucket_floor("day", now) - 29 * DAY, q.bucket_floor("day", now) + DAY)
    cases = {
        "summary_year": lambda: q.summary(conn, *year),
        "summary_year_tag": lambda: q.summary(conn, *year, tag="section:news"),
        "series_day_year": lambda: q.series(conn, "day", *year),
        "series_week_year": lambda: q.series(conn, "week", *year),
        "series_hour_year": lambda: q.series(conn, "hour", *year),
        "series_hour_week": lambda: q.series(conn, "hour", *week),
        "series_day_year_tag": lambda: q.series(conn, "day", *year, tag="section:news"),
        "series_hour_month_tag": lambda: q.series(conn, "hour", *month, tag="author:author-007"),
        "top_resources_year": lambda: q.top_resources(conn, *year, n=10),
        "top_resources_year_by_conversion": lambda: q.top_resources(conn, *year, n=10, by="conversion"),
        "top_resources_month_tag": lambda: q.top_resources(conn, *month, n=10, tag="format:video"),
        "by_tag_year": lambda: q.by_tag(conn, *year, n=12),
        "by_tag_year_all_authors": lambda: q.by_tag(conn, *year, key="author"),
        "price_comparison_year": lambda: q.price_comparison(conn, "section:news", *year),
        "dashboard_default_30_days": lambda: q.dashboard(conn, "day", *day_aligned),
        "dashboard_year_by_week": lambda: q.dashboard(conn, "week", *year),
    }
    timings = {}
    for name, run in cases.items():
        run()  # warm the page cache once, as a dashboard in use has it
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - started)
        timings[name] = round(best, 4)
    conn.close()
    return timings


def bench_queries(args: argparse.Namespace) -> dict:
    from channel_node.insights import InsightsWriter

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    work = None
    if args.db:
        path = Path(args.db)
    else:
        work = Path(tempfile.mkdtemp(prefix="bench-insights-"))
        path = work / "insights.db"
    now = int(time.time())
    existing = 0
    if path.exists():
        with sqlite3.connect(path) as conn:
            existing = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            newest = conn.execute("SELECT MAX(at) FROM events").fetchone()[0] or now
        now = newest + 1  # query the stored year as it was generated
    generate_s = compact_s = 0.0
    if existing < args.events:
        if existing:
            raise SystemExit(f"{path} holds {existing:,} events, fewer than --events: remove it first")
        writer = InsightsWriter(path)
        say(f"generating {args.events:,} events (a year ending now) into {path} ...")
        started = time.perf_counter()
        existing = generate(writer, args.events, now, say=say)
        generate_s = time.perf_counter() - started
        say(f"  written in {generate_s:.0f} s; compacting closed hours and days ...")
        started = time.perf_counter()
        writer.compact(now)
        compact_s = time.perf_counter() - started
        say(f"  compacted in {compact_s:.0f} s")
        writer.close()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    say("timing the dashboard's queries (best of 3, warm cache) ...")
    timings = timed_queries(path, now)
    result = {
        "events": existing,
        "slowest_query_s": max(timings.values()),
        "slowest_query": max(timings, key=timings.get),
        "generate_s": round(generate_s, 1),
        "compact_s": round(compact_s, 1),
        "database_mib": round(size / 2**20, 1),
        "queries_s": timings,
    }
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)
    return result


# ---------------------------------------------------------------------- recording overhead on paid unlocks


def _serve_with_recorder(args: argparse.Namespace) -> None:
    """bench_unlock's node, with a Recorder on its paywall (the price tagged like a real site's)."""
    import bench_unlock
    from channel_node.cli.main import run_async
    from channel_node.insights import Recorder
    from channel_node.node import (
        assembly as node_module,  # bench_support.serve_node imports build_node from here at call time
    )

    original = node_module.build_node

    async def build_node(settings, w3, store=None):
        node = await original(settings, w3, store)
        for price in node.paywall.prices.prices:
            price.tags.update(section="news", format="article", author="ann")
        mode = os.environ.get("INSIGHTS_BENCH_MODE", "")  # diagnostics: "buffer" (no writer), "interval=S"
        recorder = Recorder(Path(args.data_dir) / "insights.db", max_buffer=10**8 if mode == "buffer" else 1_000_000,
                            flush_interval=float(mode.split("=")[1]) if mode.startswith("interval=") else 1.0)  # fmt: skip
        if mode != "buffer":
            await recorder.start()
        node.paywall.insights = recorder
        close = node.close

        async def close_both() -> None:
            await recorder.close()
            await close()

        node.close = close_both
        return node

    node_module.build_node = build_node
    run_async(bench_unlock.serve(args))


def _one_unlock_run(args: argparse.Namespace, with_recorder: bool, say) -> dict:
    import bench_unlock

    work = Path(tempfile.mkdtemp(prefix="bench-insights-unlock-"))
    command = [sys.executable, __file__, "--serve-node", "--channels", str(args.channels), "--data-dir", str(work),
               "--synchronous", "full", "--log-level", "info"]  # fmt: skip
    if with_recorder:
        command.append("--with-recorder")
    log = (work / "node.log").open("w")
    node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = work / "node.json"
        while not ready.exists():
            if node.poll() is not None:
                raise SystemExit((work / "node.log").read_text()[-2000:] + "\nthe node exited during start-up")
            time.sleep(0.1)
        info = json.loads(ready.read_text())
        vouchers = work / "vouchers.tsv"
        bench_unlock.write_vouchers(vouchers, info["chain_id"], info["contract"], info["channels"], args.vouchers)
        script = work / "bench.lua"
        script.write_text(bench_unlock.WRK_SCRIPT)
        paid = bench_unlock.run_wrk(info["url"] + "/articles/micropayments.html", 64, args.duration, 1, script, vouchers)
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
        log.close()
    with sqlite3.connect(work / "node.db") as conn:  # every charge the node made durable (wrk may stop mid-response)
        charges = conn.execute("SELECT COUNT(*) FROM charges").fetchone()[0]
    recorded = None
    if with_recorder and (work / "insights.db").exists():
        with sqlite3.connect(work / "insights.db") as conn:
            recorded = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 1").fetchone()[0]
    shutil.rmtree(work, ignore_errors=True)
    recorded_note = f" ({recorded:,} unlocks recorded of {charges:,} charges)" if with_recorder else ""
    say(f"  {'with' if with_recorder else 'without'} recorder: {paid['ok_per_s']:.0f} paid unlocks/s, "
        f"p99 {paid['p99_us'] / 1000:.1f} ms{recorded_note}")  # fmt: skip
    return {"per_s": paid["ok_per_s"], "charges": charges, "recorded": recorded, "p99_ms": paid["p99_us"] / 1000}


def recorder_costs() -> tuple[float, float]:
    """(ns per Recorder.unlock call on the request path, µs of writer-thread work per unlock)."""
    from channel_node.insights import UNLOCK, InsightsWriter, Recorder

    tags = {"section": "news", "format": "article", "author": "ann"}
    channels = [n.to_bytes(32, "big") for n in range(1000)]
    recorder = Recorder(Path(tempfile.mkdtemp(prefix="bench-insights-call-")) / "insights.db",
                        flush_at=10**7, max_buffer=10**7)  # fmt: skip
    n, call = 200_000, float("inf")
    for _ in range(5):  # the append alone: the writer (another thread) is measured below
        recorder._buffer.clear()
        started = time.perf_counter_ns()
        for i in range(n):
            recorder.unlock("/articles/micropayments.html", 1000, tags, channels[i % 1000], 1.7e9 + i / 4000)
        call = min(call, (time.perf_counter_ns() - started) / n)
    work = Path(tempfile.mkdtemp(prefix="bench-insights-writer-"))
    writer = InsightsWriter(work / "insights.db")
    batches = [[(UNLOCK, "/articles/micropayments.html", 1000, tags, channels[i % 1000], 1.7e9 + (k * 4000 + i) / 4000)
                for i in range(4000)] for k in range(30)]  # 1 s flushes at 4,000 paid unlocks/s  # fmt: skip
    writer.write(batches[0])
    started = time.perf_counter()
    for batch in batches[1:]:
        writer.write(batch)
    per_event = (time.perf_counter() - started) / (29 * 4000) * 1e6
    writer.close()
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(recorder.path.parent, ignore_errors=True)
    return call, per_event


def bench_unlock_overhead(args: argparse.Namespace) -> dict:
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk is not installed (Debian: apt-get install wrk)")

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    runs: dict[bool, list[dict]] = {False: [], True: []}
    for round_number in range(args.rounds):
        say(f"round {round_number + 1} of {args.rounds} ({args.duration} s of paid requests each way)")
        for with_recorder in (False, True) if round_number % 2 == 0 else (True, False):
            runs[with_recorder].append(_one_unlock_run(args, with_recorder, say))
    call_ns, writer_us = recorder_costs()
    without = sum(r["per_s"] for r in runs[False]) / len(runs[False])
    with_ = sum(r["per_s"] for r in runs[True]) / len(runs[True])
    return {
        "paid_unlocks_per_s_without_recorder": round(without),
        "paid_unlocks_per_s_with_recorder": round(with_),
        "change_pct": round((with_ - without) / without * 100, 1),
        "runs_without": [round(r["per_s"]) for r in runs[False]],
        "runs_with": [round(r["per_s"]) for r in runs[True]],
        "p99_ms_without_recorder": round(sum(r["p99_ms"] for r in runs[False]) / len(runs[False]), 1),
        "p99_ms_with_recorder": round(sum(r["p99_ms"] for r in runs[True]) / len(runs[True]), 1),
        "every_unlock_recorded": all(r["recorded"] == r["charges"] for r in runs[True]),
        "recorder_unlock_call_ns": round(call_ns),
        "writer_us_per_unlock": round(writer_us, 2),
        "paid_request_us": round(1e6 / without),
    }


# ---------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--db", help="keep the generated database here (reused when it exists)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--unlock-overhead", action="store_true",
                        help="paid unlocks/s through bench_unlock's node without and with a recorder")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="with --unlock-overhead: alternating rounds")
    parser.add_argument("--duration", type=int, default=10, help="with --unlock-overhead: seconds per wrk phase")
    parser.add_argument("--channels", type=int, default=1000, help="with --unlock-overhead")
    parser.add_argument("--vouchers", type=int, default=150_000, help="with --unlock-overhead")
    # The node child process (bench_unlock's serve(), optionally with a recorder).
    parser.add_argument("--serve-node", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--with-recorder", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--synchronous", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default="info", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
    if args.serve_node:
        if args.with_recorder:
            _serve_with_recorder(args)
        else:
            import bench_unlock
            from channel_node.cli.main import run_async

            run_async(bench_unlock.serve(args))
        return 0
    result = bench_unlock_overhead(args) if args.unlock_overhead else bench_queries(args)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for name, seconds in value.items():
                    print(f"  {name:>36}  {seconds}")
            else:
                print(f"{key:>38}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
