"""Built-in tools a conversation may let the model call, and running one call safely.

Each tool has an OpenAI function definition and an async `run(arguments, context)` that
returns text for the model. A call that fails, times out or names an unknown tool returns an
error text instead: the model reads it as the tool's answer and can recover.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import math
import operator
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlite_utils

from chatapp.errors import InvalidRequest
from chatapp.searcher import Searcher

log = logging.getLogger("chatapp.tools")

__all__ = ["TOOLS", "Tool", "ToolCall", "ToolContext", "ToolResult", "evaluate", "run_tool"]


@dataclass(frozen=True)
class ToolContext:
    """Who is calling: tools that read data see only this user's."""

    user_id: int
    db: sqlite_utils.Database
    searcher: Searcher  # searches run off the event loop (chatapp/searcher.py)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]
    run: Callable[[Mapping[str, Any], ToolContext], Awaitable[str]]

    def definition(self) -> dict[str, Any]:
        """The `tools` entry sent to the engine."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for: its id, the tool's name and the raw JSON arguments."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolResult:
    call: ToolCall
    content: str
    error: bool = False


# Calculator ---------------------------------------------------------------------------------

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    name: getattr(math, name)
    for name in (
        "sqrt",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "log",
        "log10",
        "log2",
        "exp",
        "floor",
        "ceil",
        "fabs",
        "factorial",
        "degrees",
        "radians",
    )
} | {"abs": abs, "round": round, "min": min, "max": max}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
_MAX_LENGTH = 500
_MAX_EXPONENT = 10_000
_MAX_FACTORIAL = 1_000
_MAX_RESULT = 4000  # characters of a tool's answer sent back to the model
_MAX_BITS = 100_000  # about 30,000 digits: far beyond any answer, and quick to compute


def evaluate(expression: str) -> float | int:
    """Arithmetic on numbers only, parsed with `ast` and walked node by node: no names but a
    few math functions and constants, no attributes, no calls of anything else, and bounds on
    exponents so `9**9**9` cannot eat the server."""
    if len(expression) > _MAX_LENGTH:
        raise ValueError(f"expression longer than {_MAX_LENGTH} characters")
    tree = ast.parse(expression.replace("^", "**"), mode="eval")
    return _walk(tree.body)


def _bits(value: Any) -> int:
    return abs(int(value)).bit_length() if isinstance(value, int) else 64


def _check_size(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse, before computing it, a result too big to be an answer (and slow to make)."""
    if isinstance(op, ast.Pow):
        if abs(right) > _MAX_EXPONENT or _bits(left) * max(1, abs(int(right))) > _MAX_BITS:
            raise ValueError("the result would be too large")
    elif isinstance(op, ast.Mult) and _bits(left) + _bits(right) > _MAX_BITS:
        raise ValueError("the result would be too large")


def _walk(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left), _walk(node.right)
        _check_size(node.op, left, right)
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise ValueError("the result is not a real number")
        return result
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_walk(arg) for arg in node.args]
        if node.func.id == "factorial" and args and abs(args[0]) > _MAX_FACTORIAL:
            raise ValueError(f"factorial of more than {_MAX_FACTORIAL}")
        if node.func.id == "round" and len(args) > 1 and abs(args[1]) > 100:
            raise ValueError("round to at most 100 digits")
        if any(_bits(arg) > _MAX_BITS for arg in args):
            raise ValueError("a number too large")
        return _FUNCTIONS[node.func.id](*args)
    raise ValueError(f"not allowed in a calculation: {ast.unparse(node)[:40]}")


async def _calculator(arguments: Mapping[str, Any], context: ToolContext) -> str:
    expression = arguments.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError('give {"expression": "2 * (3 + 4)"}')
    # Off the event loop: even bounded arithmetic must never stall other requests.
    value = await asyncio.to_thread(evaluate, expression)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return f"{expression} = {value}"


# Date and time ------------------------------------------------------------------------------


async def _now(arguments: Mapping[str, Any], context: ToolContext) -> str:
    zone_name = arguments.get("timezone") or "UTC"
    try:
        zone = ZoneInfo(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone_name!r} (use names like Europe/Paris)") from None
    now = datetime.now(UTC).astimezone(zone)
    return now.strftime(f"%A %d %B %Y, %H:%M:%S ({zone_name}, UTC%z)")


# Search my conversations --------------------------------------------------------------------


async def _search_conversations(arguments: Mapping[str, Any], context: ToolContext) -> str:
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ValueError('give {"query": "words to look for"}')
    try:
        found = await context.searcher.find(context.user_id, query, limit=10)
    except InvalidRequest as exc:
        raise ValueError(exc.message) from None
    hits = [hit for hit in found if not _blocked(context.db, hit.get("message_id"))][:5]
    if not hits:
        return f"No conversation mentions {query!r}."
    lines = [
        f"- {hit['title'] or '(untitled)'} [{hit['conversation_id']}]: "
        + hit["snippet"].replace("<mark>", "").replace("</mark>", "")
        for hit in hits
    ]
    return "\n".join(lines)


def _blocked(db: sqlite_utils.Database, message_id: str | None) -> bool:
    """Questions moderation blocked are never shown to a model, not even through search."""
    if message_id is None:
        return False
    row = db.execute("SELECT status FROM messages WHERE id = ?", (message_id,)).fetchone()
    return row is not None and row[0] == "blocked"


TOOLS: Mapping[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "calculator",
            "Evaluate an arithmetic expression exactly (+ - * / // % **, parentheses, sqrt, "
            "log, sin, cos, pi, e, ...). Use it for any calculation.",
            {
                "type": "object",
                "properties": {"expression": {"type": "string", "description": "e.g. 2*(3+4)"}},
                "required": ["expression"],
            },
            _calculator,
        ),
        Tool(
            "current_datetime",
            "The current date and time, in UTC or in a named time zone.",
            {
                "type": "object",
                "properties": {
                    "timezone": {"type": "string", "description": "IANA name, e.g. Asia/Tokyo"}
                },
            },
            _now,
        ),
        Tool(
            "search_conversations",
            "Search the user's own earlier conversations for words; returns titles and snippets.",
            {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
            _search_conversations,
        ),
    )
}


async def run_tool(
    call: ToolCall,
    context: ToolContext,
    *,
    timeout: float,
    tools: Mapping[str, Tool] = TOOLS,
) -> ToolResult:
    """Run one call within `timeout` seconds; any failure becomes an error text for the model."""
    tool = tools.get(call.name)
    if tool is None:
        return ToolResult(call, f"error: there is no tool named {call.name!r}", error=True)
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        return ToolResult(call, "error: the arguments are not valid JSON", error=True)
    if not isinstance(arguments, dict):
        return ToolResult(call, "error: the arguments must be a JSON object", error=True)
    try:
        content = await asyncio.wait_for(tool.run(arguments, context), timeout)
    except TimeoutError:
        return ToolResult(call, f"error: {call.name} took longer than {timeout:g} s", error=True)
    except (ValueError, TypeError, ArithmeticError, SyntaxError, RecursionError) as exc:
        return ToolResult(call, f"error: {exc}", error=True)
    except Exception as exc:  # noqa: BLE001 - a tool's bug must not end the reply
        log.exception("tool %s failed", call.name)
        return ToolResult(call, f"error: {call.name} failed ({type(exc).__name__})", error=True)
    return ToolResult(call, content[:_MAX_RESULT])
