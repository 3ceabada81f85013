"""Built-in tools: a calculator that cannot be abused, timeouts and failures as tool answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from chatapp.accounts import Accounts
from chatapp.conversations import ConversationStore
from chatapp.searcher import Searcher
from chatapp.store import open_database
from chatapp.tool_calls import ToolCallBuilder
from chatapp.tools import TOOLS, Tool, ToolCall, ToolContext, evaluate, run_tool


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2+3*4", 14),
        ("(2+3)*4", 20),
        ("2^10", 1024),
        ("-7 // 2", -4),
        ("sqrt(16) + abs(-2)", 6.0),
        ("round(pi, 3)", 3.142),
        ("max(1, 5, 3)", 5),
        ("10 % 4", 2),
    ],
)
def test_the_calculator_does_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "().__class__",
        "open('/etc/passwd')",
        "x + 1",
        "'a' * 3",
        "[1, 2]",
        "lambda: 1",
        "9 ** 9 ** 9",
        "factorial(100000)",
        "1" * 600,
    ],
)
def test_the_calculator_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises((ValueError, SyntaxError)):
        evaluate(expression)


def _context(tmp_path: Path) -> ToolContext:
    path = tmp_path / "chatapp.db"
    return ToolContext(user_id=1, db=open_database(path), searcher=Searcher(path))


def _call(name: str, arguments: str) -> ToolCall:
    return ToolCall(id="call_1", name=name, arguments=arguments)


async def test_failures_become_error_answers(tmp_path: Path) -> None:
    context = _context(tmp_path)

    async def slow(arguments: Mapping[str, Any], context: ToolContext) -> str:
        await asyncio.sleep(5)
        return "never"

    async def broken(arguments: Mapping[str, Any], context: ToolContext) -> str:
        raise RuntimeError("bug")

    tools = {
        "slow": Tool("slow", "", {}, slow),
        "broken": Tool("broken", "", {}, broken),
        **TOOLS,
    }
    timed_out = await run_tool(_call("slow", "{}"), context, timeout=0.05, tools=tools)
    assert timed_out.error and "longer than 0.05 s" in timed_out.content
    failed = await run_tool(_call("broken", "{}"), context, timeout=1, tools=tools)
    assert failed.error and "RuntimeError" in failed.content
    unknown = await run_tool(_call("shell", "{}"), context, timeout=1, tools=tools)
    assert unknown.error and "no tool named 'shell'" in unknown.content
    bad_json = await run_tool(_call("calculator", "{not json"), context, timeout=1)
    assert bad_json.error and "not valid JSON" in bad_json.content
    zero = await run_tool(_call("calculator", '{"expression": "1/0"}'), context, timeout=1)
    assert zero.error and "division by zero" in zero.content
    fine = await run_tool(_call("calculator", '{"expression": "6*7"}'), context, timeout=1)
    assert not fine.error and fine.content == "6*7 = 42"


async def test_current_datetime_in_a_time_zone(tmp_path: Path) -> None:
    context = _context(tmp_path)
    asked = _call("current_datetime", '{"timezone": "Asia/Tokyo"}')
    tokyo = await run_tool(asked, context, timeout=1)
    assert "Asia/Tokyo, UTC+0900" in tokyo.content
    bad = await run_tool(_call("current_datetime", '{"timezone": "Mars/Base"}'), context, timeout=1)
    assert bad.error and "unknown time zone" in bad.content


async def test_search_sees_only_the_callers_conversations(tmp_path: Path) -> None:
    db = open_database(tmp_path / "chatapp.db")
    accounts = Accounts(db)
    org = accounts.ensure_org("o")
    ann, bob = accounts.ensure_user("ann", org_id=org), accounts.ensure_user("bob", org_id=org)
    store = ConversationStore(db)
    for user, title in ((ann, "ann's aardvark notes"), (bob, "bob's aardvark secrets")):
        conv = store.create(user, {"title": title})
        with db.conn:
            store.add_message(conv["id"], parent_id=None, role="user", content="aardvark facts")
    found = await run_tool(
        _call("search_conversations", '{"query": "aardvark"}'),
        ToolContext(ann, db, Searcher(tmp_path / "chatapp.db")),
        timeout=1,
    )
    assert "ann's aardvark notes" in found.content and "bob" not in found.content


def test_streamed_tool_call_deltas_are_put_back_together() -> None:
    builder = ToolCallBuilder()
    first = {"index": 0, "id": "call_a", "function": {"name": "calculator", "arguments": ""}}
    second = {"index": 1, "id": "call_b", "function": {"name": "current_datetime"}}
    for delta in (
        first,
        second,
        {"index": 0, "function": {"arguments": '{"expr'}},
        {"index": 0, "function": {"arguments": 'ession": "1+1"}'}},
        {"index": 1, "function": {"arguments": "{}"}},
    ):
        builder.add({"choices": [{"delta": {"tool_calls": [delta]}}]})
    calls = builder.calls()
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_a", "calculator", '{"expression": "1+1"}'),
        ("call_b", "current_datetime", "{}"),
    ]
    assert builder.as_message_calls()[0]["function"]["arguments"] == '{"expression": "1+1"}'


@pytest.mark.parametrize(
    "expression",
    [
        "round(1, -10**7)",
        "(9**9999)**9999",
        "factorial(1000)**9999",
        "(10**9999)**9999*0",
        "(-8)**0.5",
    ],
)
def test_expressions_that_would_stall_the_server_are_refused_at_once(expression: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ValueError):
        evaluate(expression)
    assert time.perf_counter() - started < 0.1


async def test_search_never_shows_blocked_questions(tmp_path: Path) -> None:
    db = open_database(tmp_path / "chatapp.db")
    accounts = Accounts(db)
    ann = accounts.ensure_user("ann", org_id=accounts.ensure_org("o"))
    store = ConversationStore(db)
    conv = store.create(ann, {"title": "t"})
    with db.conn:
        store.add_message(
            conv["id"], parent_id=None, role="user", content="okapi secret", status="blocked"
        )
        store.add_message(conv["id"], parent_id=None, role="user", content="okapi facts")
    context = ToolContext(ann, db, Searcher(tmp_path / "chatapp.db"))
    found = await run_tool(_call("search_conversations", '{"query": "okapi"}'), context, timeout=1)
    assert "okapi facts" in found.content and "secret" not in found.content
    empty = await run_tool(_call("search_conversations", '{"query": "!!!"}'), context, timeout=1)
    assert empty.error and "RuntimeError" not in empty.content
