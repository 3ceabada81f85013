"""Metering: a failed usage write never strands a reservation; headers name the tightest bucket."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from chatapp.accounts import Accounts, Principal
from chatapp.config import Config, load_config
from chatapp.limiter import BucketState, Limiter
from chatapp.metering import Meter, Ticket, format_reset, ratelimit_headers
from chatapp.paths import shipped_config_path
from chatapp.quotas import Quotas
from chatapp.store import open_database
from chatapp.usage import UsageEvent


def _meter(config: Config, tmp_path: Path) -> tuple[Meter, Principal]:
    """A meter on a fresh database, and a free-tier user's key to meter."""
    db = open_database(tmp_path / "chatapp.db")
    accounts = Accounts(db)
    user = accounts.ensure_user("u", org_id=accounts.ensure_org("o", tier="free"))
    principal = accounts.authenticate(accounts.create_key(user).secret)
    return Meter(config, db, Limiter(), Quotas(config, db)), principal


def _admitted(tmp_path: Path) -> tuple[Meter, Ticket]:
    """A meter on a fresh database and one request it has admitted, to finish."""
    config = load_config(shipped_config_path())
    meter, principal = _meter(config, tmp_path)
    return meter, meter.admit(
        principal, config.models["smollm2"], {"messages": [], "max_tokens": 5}
    )


def test_a_failed_usage_write_still_frees_the_reservation(tmp_path: Path) -> None:
    config = load_config(shipped_config_path())
    meter, principal = _meter(config, tmp_path)
    db = meter.db
    model = config.models["smollm2"]
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    tickets = [meter.admit(principal, model, body) for _ in range(2)]  # free: 2 streams
    db.conn.execute("DROP TABLE usage_outbox")  # every write now fails
    for ticket in tickets:
        meter.finish(ticket, status="ok", usage={"prompt_tokens": "x"}, upstream=None)
    again = meter.admit(principal, model, body)  # both stream slots came back
    key = again.subjects[0]
    assert meter.limiter.streams_in_use("smollm2", key) == 1


def test_headers_report_a_spent_daily_limit_rather_than_a_roomy_minute() -> None:
    states = [
        BucketState("key", 1, "requests_per_minute", 60, 58.0, 2.0),
        BucketState("key", 1, "requests_per_day", 100, 0.4, 43_000.0),
        BucketState("org", 1, "tokens_per_minute", 1000, 900.0, 6.0),
    ]
    headers = ratelimit_headers(states)
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "11h56m40s"
    assert headers["x-ratelimit-remaining-tokens"] == "900"


def test_reset_durations_read_like_openai_s() -> None:
    assert [format_reset(s) for s in (0.02, 6, 90, 3605)] == ["20ms", "6s", "1m30s", "1h0m5s"]


def test_usage_is_not_written_when_recording_is_off(tmp_path: Path) -> None:
    from dataclasses import replace

    shipped = load_config(shipped_config_path())
    config = replace(shipped, server=replace(shipped.server, record_usage=False))
    meter, principal = _meter(config, tmp_path)
    db = meter.db
    seen: list[UsageEvent] = []
    meter.observers.append(seen.append)
    ticket = meter.admit(principal, config.models["smollm2"], {"messages": [], "max_tokens": 5})
    meter.finish(ticket, status="ok", usage={"prompt_tokens": 3}, upstream=None)
    assert db.execute("SELECT count(*) FROM usage_outbox").fetchone()[0] == 0
    assert [event.prompt_tokens for event in seen] == [3]  # metrics still see it


def test_a_usage_event_is_filed_under_the_request_id_it_is_given(tmp_path: Path) -> None:
    config = load_config(shipped_config_path())
    meter, principal = _meter(config, tmp_path)
    db = meter.db
    model, body = config.models["smollm2"], {"messages": [], "max_tokens": 5}
    for request_id in ("req_from_the_logs", None, None):
        ticket = meter.admit(principal, model, body, request_id=request_id)
        meter.finish(ticket, status="ok", usage={"prompt_tokens": 3}, upstream=None)
    ids = [row[0] for row in db.execute("SELECT request_id FROM usage_outbox ORDER BY rowid")]
    assert ids[0] == "req_from_the_logs"
    assert len(set(ids)) == 3 and all(i.startswith("req_") for i in ids[1:])


async def test_requests_ending_together_share_one_commit_for_their_usage(tmp_path: Path) -> None:
    config = load_config(shipped_config_path())
    meter, principal = _meter(config, tmp_path)
    model, body = config.models["smollm2"], {"messages": [], "max_tokens": 5}
    tickets = [meter.admit(principal, model, body) for _ in range(2)]  # free: 2 streams
    seen: list[UsageEvent] = []
    meter.observers.append(seen.append)
    statements: list[str] = []
    meter.db.conn.set_trace_callback(statements.append)
    await asyncio.gather(
        *(
            meter.finish_shared(ticket, status="ok", usage={"completion_tokens": 4}, upstream="a")
            for ticket in tickets
        )
    )
    meter.db.conn.set_trace_callback(None)
    assert statements.count("COMMIT") == 1
    rows = meter.db.execute("SELECT request_id, completion_tokens FROM usage_outbox").fetchall()
    assert sorted(rows) == sorted((t.request_id, 4) for t in tickets)
    assert [event.completion_tokens for event in seen] == [4, 4]
    assert meter.limiter.streams_in_use("smollm2", tickets[0].subjects[0]) == 0


async def test_a_usage_row_waits_for_a_held_lock_without_stopping_the_loop(
    tmp_path: Path,
) -> None:
    meter, ticket = _admitted(tmp_path)
    other = sqlite3.connect(tmp_path / "chatapp.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the housekeeper indexing, say
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    finishing = asyncio.ensure_future(
        meter.finish_shared(ticket, status="ok", usage=None, upstream=None)
    )
    await asyncio.sleep(0.1)
    assert not finishing.done() and ticks >= 10  # the loop went on meanwhile
    other.execute("COMMIT")
    await finishing
    ticker.cancel()
    assert meter.db.execute("SELECT count(*) FROM usage_outbox").fetchone()[0] == 1


async def test_a_usage_row_cancelled_before_its_commit_is_written_anyway(
    tmp_path: Path,
) -> None:
    meter, ticket = _admitted(tmp_path)
    finishing = asyncio.ensure_future(
        meter.finish_shared(ticket, status="ok", usage=None, upstream=None)
    )
    await asyncio.sleep(0)  # waiting for its batch
    finishing.cancel()  # a shutdown
    with pytest.raises(asyncio.CancelledError):
        await finishing
    assert meter.db.execute("SELECT request_id FROM usage_outbox").fetchall() == [
        (ticket.request_id,)
    ]


async def test_a_failed_shared_usage_write_is_logged_and_frees_the_reservation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    meter, ticket = _admitted(tmp_path)
    meter.db.conn.execute("DROP TABLE usage_outbox")
    await meter.finish_shared(ticket, status="ok", usage=None, upstream=None)
    assert f"usage event {ticket.request_id} could not be written" in caplog.text
    assert meter.limiter.streams_in_use("smollm2", ticket.subjects[0]) == 0
