"""Measure the quota issue's three targets: limiter latency, ledger ingest, report speed.

Run as `.venv/bin/python bench/quota_bench.py` (add `--quick` for a smoke test). Each target
runs in its own temp dir so one's rows never skew another's counts or timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from report import Row, console_for, percentile, print_facts, print_table

from chatapp.ledger import REPORT_DIMENSIONS, Ledger
from chatapp.limiter import Limiter, Subject
from chatapp.limits import Limits
from chatapp.store import open_database
from chatapp.usage import UsageEvent, write_outbox

MODELS = ("gpt-small", "gpt-medium", "gpt-large")
DAY = 86_400.0


@dataclass(frozen=True)
class Sizes:
    """How much work each target does; `--quick` shrinks everything for a smoke test."""

    keys: int
    users: int
    orgs: int
    pairs: int
    ingest_rows: int
    ingest_batch: int
    outbox_rows: int
    outbox_tx: int
    single_tx: int
    report_rows: int
    report_chunk: int
    report_repeats: int


FULL = Sizes(
    keys=100_000,
    users=10_000,
    orgs=1_000,
    pairs=200_000,
    ingest_rows=200_000,
    ingest_batch=10_000,
    outbox_rows=100_000,
    outbox_tx=1_000,
    single_tx=2_000,
    report_rows=10_000_000,
    report_chunk=2_500_000,
    report_repeats=3,
)
QUICK = dataclasses.replace(
    FULL,
    pairs=20_000,
    ingest_rows=50_000,
    outbox_rows=20_000,
    single_tx=500,
    report_rows=1_000_000,
    report_chunk=1_000_000,
    report_repeats=1,
)


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_limiter(sizes: Sizes) -> list[Row]:
    """Admit+settle on random keys once every key already has buckets (the steady state)."""
    limits = Limits(
        requests_per_minute=10**9,
        tokens_per_minute=10**9,
        requests_per_day=10**9,
        tokens_per_day=10**9,
        concurrent_streams=10**9,
    )
    # The server builds these per request; prebuilt here so only the limiter is timed.
    subjects = [
        (
            Subject("key", key, limits),
            Subject("user", key % sizes.users, limits),
            Subject("org", key % sizes.users % sizes.orgs, limits),
        )
        for key in range(sizes.keys)
    ]
    limiter = Limiter()
    model = MODELS[0]
    for request in subjects:
        limiter.settle(limiter.admit(model, request, 500), 420)
    buckets = len(limiter._buckets)  # a private peek, only to prove the dict is warm

    rng = random.Random(1)
    picks = [subjects[rng.randrange(sizes.keys)] for _ in range(sizes.pairs)]
    actual = [rng.randrange(1, 1000) for _ in range(sizes.pairs)]
    samples = [0] * sizes.pairs
    clock = time.perf_counter_ns
    admit, settle = limiter.admit, limiter.settle
    for i, request in enumerate(picks):
        start = clock()
        settle(admit(model, request, 500), actual[i])
        samples[i] = clock() - start
    samples.sort()
    p50, p99 = percentile(samples, 50) / 1000, percentile(samples, 99) / 1000
    what = f"limiter admit+settle, {sizes.keys:,} keys ({buckets:,} key/user/org states)"
    return [
        Row(f"{what} p50", f"{p50:.1f} µs"),
        Row(f"{what} p99", f"{p99:.1f} µs", "< 20 µs", p99 < 20),
        Row(
            "limiter p99.9 / max",
            f"{percentile(samples, 99.9) / 1000:.1f} / {samples[-1] / 1000:.0f} µs",
        ),
    ]


def make_event(prefix: str, i: int, now: float) -> UsageEvent:
    """A plausible event; the request id is unique per (prefix, i)."""
    return UsageEvent(
        request_id=f"{prefix}-{i}",
        ts=now - (i % 3600),
        key_id=i % 100_000,
        user_id=i % 10_000,
        org_id=i % 1_000,
        conversation_id=None,
        model=MODELS[i % 3],
        upstream="local",
        prompt_tokens=100 + i % 900,
        completion_tokens=50 + i % 500,
        cached_tokens=0,
        ttft_ms=180.0,
        latency_ms=950.0,
        status="ok" if i % 50 else "error",
        cost=(i % 1000) * 1e-5,
    )


def bench_ingest(sizes: Sizes, tmp: Path) -> list[Row]:
    """Pure DuckDB ingest, then the durable path: SQLite outbox writes and the flush."""
    now = time.time()
    db = open_database(tmp / "chatapp.db")
    ledger = Ledger(tmp / "ledger.duckdb", tmp / "chatapp.db")
    rows = [dataclasses.astuple(make_event("in", i, now)) for i in range(sizes.ingest_rows)]
    batches = [rows[i : i + sizes.ingest_batch] for i in range(0, len(rows), sizes.ingest_batch)]

    def ingest_all() -> None:
        for batch in batches:
            ledger.ingest(batch)

    ingest_s = timed(ingest_all)
    ingested = ledger.query("SELECT count(*) FROM usage")[0][0]
    assert ingested == sizes.ingest_rows, (ingested, sizes.ingest_rows)
    ingest_rate = sizes.ingest_rows / ingest_s

    conn: sqlite3.Connection = db.conn
    events = [make_event("ob", i, now) for i in range(sizes.outbox_rows)]

    def write_batched() -> None:
        for start in range(0, len(events), sizes.outbox_tx):
            with conn:
                for event in events[start : start + sizes.outbox_tx]:
                    write_outbox(conn, event)

    outbox_s = timed(write_batched)
    # The server commits one event per request, so the per-request cost is this one.
    single = [0] * sizes.single_tx
    for i in range(sizes.single_tx):
        event = make_event("one", i, now)
        start = time.perf_counter_ns()
        with conn:
            write_outbox(conn, event)
        single[i] = time.perf_counter_ns() - start
    single.sort()
    written = sizes.outbox_rows + sizes.single_tx

    flush_start = time.perf_counter()
    moved = ledger.flush()
    flush_s = time.perf_counter() - flush_start
    in_ledger = ledger.query("SELECT count(*) FROM usage")[0][0]
    left = conn.execute("SELECT count(*) FROM usage_outbox").fetchone()[0]
    assert moved == written, (moved, written)
    assert in_ledger == ingested + written, (in_ledger, ingested, written)
    assert left == 0, left
    ledger.close()
    conn.close()

    flush_rate = moved / flush_s
    return [
        Row(
            f"ledger.ingest {sizes.ingest_rows:,} rows, batches of {sizes.ingest_batch:,}",
            f"{ingest_rate:,.0f} ev/s",
            ">= 50,000 ev/s",
            ingest_rate >= 50_000,
        ),
        Row(
            f"outbox writes, {sizes.outbox_tx:,} per transaction",
            f"{sizes.outbox_rows / outbox_s:,.0f} ev/s",
        ),
        Row(
            f"outbox write, 1 per transaction, p50 / p99 of {sizes.single_tx:,}",
            f"{percentile(single, 50) / 1000:.0f} / {percentile(single, 99) / 1000:.0f} µs",
        ),
        Row(
            f"ledger.flush {moved:,} outbox rows (count verified)",
            f"{flush_rate:,.0f} ev/s",
            ">= 50,000 ev/s",
            flush_rate >= 50_000,
        ),
    ]


def bench_report(sizes: Sizes, tmp: Path) -> list[Row]:
    """Fill the ledger with generated rows in SQL, then time every report over 30 days."""
    ledger = Ledger(tmp / "ledger.duckdb", tmp / "outbox.db")
    now = time.time()
    since, until = now - 30 * DAY, now + 1
    models = ", ".join(f"'{model}'" for model in MODELS)
    generate_start = time.perf_counter()
    for lo in range(0, sizes.report_rows, sizes.report_chunk):
        hi = min(sizes.report_rows, lo + sizes.report_chunk)
        # In chunks, to bound what each insert holds (its rows plus PRIMARY KEY index entries).
        ledger.query(
            "INSERT INTO usage SELECT 'r' || i, ? - 1 - hash(i) % 2591990, i % 100000,"
            f" i % 10000, i % 1000, NULL, [{models}][i % 3 + 1], 'local',"
            " 100 + i % 900, 50 + i % 500, i % 7 * 10, 150 + i % 300, 500 + i % 4000,"
            " CASE WHEN i % 50 = 0 THEN 'error' WHEN i % 97 = 0 THEN 'cancelled' ELSE 'ok' END,"
            f" (i % 1000) * 1e-5 FROM range({lo}, {hi}) t(i)",
            (now,),
        )
    generate_s = time.perf_counter() - generate_start
    total = ledger.query("SELECT count(*) FROM usage WHERE ts >= ? AND ts < ?", (since, until))
    assert total[0][0] == sizes.report_rows, (total, sizes.report_rows)

    best: dict[str, float] = {}
    for by in REPORT_DIMENSIONS:
        runs = []
        for _ in range(sizes.report_repeats):
            start = time.perf_counter()
            ledger.report(by, since, until)
            runs.append(time.perf_counter() - start)
        best[by] = min(runs)
    ledger.close()
    slowest = max(best, key=best.__getitem__)
    return [
        Row(f"generate {sizes.report_rows:,} ledger rows", f"{generate_s:.1f} s"),
        *(
            Row(f"report by={by}, best of {sizes.report_repeats}", f"{seconds * 1000:.0f} ms")
            for by, seconds in best.items()
        ),
        Row(
            f"report over {sizes.report_rows:,} rows, slowest (by={slowest})",
            f"{best[slowest] * 1000:.0f} ms",
            "< 1 s",
            best[slowest] < 1.0,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three targets and print the table; verdicts live in the table, not the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    console = console_for(120)
    print_facts(console, f"duckdb {duckdb.__version__}", quick=args.quick)
    started = time.perf_counter()
    rows: list[Row] = []
    with console.status("limiter..."):
        rows += bench_limiter(sizes)
    with tempfile.TemporaryDirectory() as tmp, console.status("ledger ingest..."):
        rows += bench_ingest(sizes, Path(tmp))
    with tempfile.TemporaryDirectory() as tmp, console.status("report..."):
        rows += bench_report(sizes, Path(tmp))

    print_table(console, f"quota targets ({time.perf_counter() - started:.0f} s)", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
