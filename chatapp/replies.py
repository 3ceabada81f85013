"""Produce one assistant reply of a conversation: stream it from the engine as events, then
store it, with its usage row, in one transaction, however it ended."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from chatapp.completions import ChatStream, Completions
from chatapp.conversations import ConversationStore
from chatapp.errors import RequestError
from chatapp.generation import Generation
from chatapp.metering import Meter, Ticket
from chatapp.moderation import OutputGuard
from chatapp.searcher import Searcher
from chatapp.tool_calls import ToolCallBuilder
from chatapp.tools import TOOLS, ToolContext, run_tool
from chatapp.upstreams import ModelPool

__all__ = ["Reply", "produce_reply"]

log = logging.getLogger("chatapp.replies")

# How a stored reply's status reads in the usage ledger.
_LEDGER_STATUS = {
    "complete": "ok",
    "filtered": "filtered",
    "incomplete": "cancelled",
    "cancelled": "cancelled",
    "error": "error",
}


@dataclass(frozen=True)
class Reply:
    """Everything needed to produce one reply."""

    conversation_id: str
    user_message_id: str | None
    reply_id: str
    pool: ModelPool
    body: Mapping[str, Any]
    ticket: Ticket
    user_id: int = 0
    tools: tuple[str, ...] = ()  # built-in tools the model may call (chatapp.tools)
    tool_iterations: int = 4
    tool_timeout: float = 10.0
    guard: OutputGuard | None = None  # moderation of the answer as it streams


async def produce_reply(
    generation: Generation,
    reply: Reply,
    *,
    completions: Completions,
    meter: Meter,
    store: ConversationStore,
    searcher: Searcher,
) -> None:
    """Publish message.started, token.delta…, (error), message.completed; store the reply."""
    generation.publish(
        "message.started",
        {
            "conversation_id": reply.conversation_id,
            "user_message_id": reply.user_message_id,
            "message_id": reply.reply_id,
            "model": reply.pool.model.name,
        },
    )
    pieces: list[str] = []
    status, finish_reason = "error", None
    rounds = _Rounds()
    try:
        messages = list(reply.body["messages"])
        for iteration in range(reply.tool_iterations + 1):
            body = _with_tools(reply, messages, last=iteration == reply.tool_iterations)
            pieces = []
            stream = await completions.open_stream(
                reply.pool, body, include_usage=True, affinity=reply.conversation_id
            )
            rounds.streams.append(stream)
            if not reply.tools:  # one round, and only the text matters
                await _relay_text(generation, reply, stream, pieces)
                break
            calls = ToolCallBuilder()
            async for data in stream:
                chunk = json.loads(data)
                calls.add(chunk)
                for choice in chunk.get("choices") or ():
                    finish_reason = choice.get("finish_reason") or finish_reason
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        await _say(generation, reply, text, pieces)
            if reply.guard is not None and not calls and not await reply.guard.finish():
                raise _Filtered
            if not calls:
                break
            messages += await _run_calls(generation, reply, store, searcher, calls, pieces, rounds)
        status = "complete"
    except _Filtered:
        status, finish_reason = "filtered", "content_filter"
    except asyncio.CancelledError:
        status = generation.stop_status
    except RequestError as exc:
        generation.publish("error", {"message": exc.message, "code": exc.code})
    finally:
        if finish_reason is None and rounds.streams:
            finish_reason = rounds.streams[-1].finish_reason
        with anyio.CancelScope(shield=True):
            await _store(generation, reply, rounds, pieces, status, finish_reason, meter, store)


async def _relay_text(
    generation: Generation, reply: Reply, stream: ChatStream, pieces: list[str]
) -> None:
    """Publish the answer's text as it comes, read off the stream's own parse of each chunk."""
    async for texts in stream.texts():
        for text in texts:
            await _say(generation, reply, text, pieces)
    if reply.guard is not None and not await reply.guard.finish():
        raise _Filtered


async def _say(generation: Generation, reply: Reply, text: str, pieces: list[str]) -> None:
    """One piece of the answer out, once moderation lets it (_Filtered where it does not)."""
    if reply.guard is not None and not await reply.guard.admit(text):
        raise _Filtered
    pieces.append(text)
    generation.publish_text(text)


class _Filtered(Exception):
    """Moderation blocked the answer: stop it where it is."""


@dataclass
class _Rounds:
    """The engine requests of one reply (one per tool round) and where the reply hangs."""

    streams: list[ChatStream] = field(default_factory=list)
    parent: str | None = None  # the last tool message, when tools were called


def _with_tools(reply: Reply, messages: list[dict[str, Any]], *, last: bool) -> dict[str, Any]:
    """The request for one round: the tools offered, and on the last round none may be called."""
    body = {**reply.body, "messages": messages}
    if reply.tools:
        body["tools"] = [TOOLS[name].definition() for name in reply.tools]
        body["tool_choice"] = "none" if last else "auto"
    return body


async def _run_calls(
    generation: Generation,
    reply: Reply,
    store: ConversationStore,
    searcher: Searcher,
    calls: ToolCallBuilder,
    pieces: list[str],
    rounds: _Rounds,
) -> list[dict[str, Any]]:
    """Store the assistant's calls, run them all at once, store and announce each result.

    `rounds.parent` follows each stored message, so however the reply ends it hangs under the
    last one. Returns the messages to send back to the model.
    """
    cid = reply.conversation_id
    tool_calls = calls.as_message_calls()
    text = "".join(pieces)
    if rounds.parent is None:  # the first round: the calls hang where the reply was put
        row = store.db.execute("SELECT parent_id FROM messages WHERE id = ?", (reply.reply_id,))
        rounds.parent = row.fetchone()[0]
    rounds.parent = await store.group_commit.run(
        _adding(
            store,
            cid,
            parent_id=rounds.parent,
            role="assistant",
            content=text,
            model=reply.pool.model.name,
            tool_calls=tool_calls,
        )
    )
    for call in calls.calls():
        generation.publish(
            "tool.call", {"id": call.id, "name": call.name, "arguments": call.arguments}
        )
    context = ToolContext(user_id=reply.user_id, db=store.db, searcher=searcher)
    results = await asyncio.gather(
        *(run_tool(call, context, timeout=reply.tool_timeout) for call in calls.calls())
    )
    answered: list[dict[str, Any]] = [
        {"role": "assistant", "content": text, "tool_calls": tool_calls}
    ]
    for result in results:
        rounds.parent = await store.group_commit.run(
            _adding(
                store,
                cid,
                parent_id=rounds.parent,
                role="tool",
                content=result.content,
                tool_call_id=result.call.id,
                status="error" if result.error else "complete",
            )
        )
        generation.publish(
            "tool.result",
            {
                "id": result.call.id,
                "name": result.call.name,
                "content": result.content,
                "error": result.error,
            },
        )
        answered.append({"role": "tool", "content": result.content, "tool_call_id": result.call.id})
    return answered


def _adding(
    store: ConversationStore, cid: str, **fields: Any
) -> Callable[[sqlite3.Connection], str]:
    """A message's write for the shared commit, as the turn's other writes: a write lock held
    elsewhere is then waited for on the loop's timers, not in SQLite's busy handler, which
    sleeps the loop's thread and every stream with it."""
    return lambda conn: store.add_message(cid, conn=conn, **fields)


async def _store(
    generation: Generation,
    reply: Reply,
    rounds: _Rounds,
    pieces: list[str],
    status: str,
    finish_reason: str | None,
    meter: Meter,
    store: ConversationStore,
) -> None:
    """Store the reply and its usage (every round's, summed) in one transaction."""
    usage: dict[str, Any] | None = None
    first_token_at = None
    for each in rounds.streams:
        await each.aclose()
        usage = _added(usage, await each.final_usage())
        first_token_at = first_token_at or each.first_token_at
    stream = rounds.streams[-1] if rounds.streams else None
    content = "".join(pieces)

    def save(conn: Any) -> None:
        if rounds.parent is not None:  # the answer follows the tool results it read
            conn.execute(
                "UPDATE messages SET parent_id = ? WHERE id = ?", (rounds.parent, reply.reply_id)
            )
            conn.execute(
                "UPDATE conversations SET current_leaf = ? WHERE id = ?",
                (reply.reply_id, reply.conversation_id),
            )
        store.finish_message(
            conn,
            reply.reply_id,
            content=content,
            status=status,
            finish_reason=finish_reason,
            usage=usage,
            request_id=reply.ticket.request_id,
        )

    def announce() -> None:
        generation.publish(
            "message.completed",
            {
                "message_id": reply.reply_id,
                "status": status,
                "finish_reason": finish_reason,
                "usage": usage,
                "content": content,
            },
        )

    def settle(conn: sqlite3.Connection) -> None:
        meter.finish(
            reply.ticket,
            status=_LEDGER_STATUS[status],
            usage=usage,
            upstream=stream.upstream.name if stream else None,
            first_token_at=first_token_at,
            conversation_id=reply.conversation_id,
            also=save,
            conn=conn,
        )
        # Announced from inside the batch: its commit ends the same callback, before any
        # follower runs, so no client hears of the end before it is stored, and each hears
        # a loop turn sooner than once this task has resumed (at a wave of replies ending
        # together, a turn is 5-10 ms).
        announce()

    try:
        await store.group_commit.run(settle)
    except sqlite3.Error:
        # The answer has been served; it stays `streaming` in the store, and the restart
        # marks it incomplete. Loud, so an operator sees it.
        log.exception("reply %s and its usage row could not be stored", reply.reply_id)
    if not generation.completed:  # the write failed before its end: the client still hears
        announce()


def _added(total: dict[str, Any] | None, usage: Mapping[str, Any]) -> dict[str, Any]:
    """Two usages summed (prompt and completion tokens), for a reply of several rounds."""
    if total is None:
        return dict(usage)
    summed = dict(total)
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = usage.get(key)
        if isinstance(value, int):
            summed[key] = (summed.get(key) or 0) + value
    return summed
