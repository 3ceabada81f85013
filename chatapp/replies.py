"""Produce one assistant reply of a conversation: stream it from the engine as events, then
store it, with its usage row, in one transaction, however it ended."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from chatapp.completions import ChatStream, Completions
from chatapp.conversations import ConversationStore
from chatapp.errors import RequestError
from chatapp.generation import Generation
from chatapp.metering import Meter, Ticket
from chatapp.upstreams import ModelPool

__all__ = ["Reply", "produce_reply"]

# How a stored reply's status reads in the usage ledger.
_LEDGER_STATUS = {
    "complete": "ok",
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


async def produce_reply(
    generation: Generation,
    reply: Reply,
    *,
    completions: Completions,
    meter: Meter,
    store: ConversationStore,
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
    stream: ChatStream | None = None
    try:
        stream = await completions.open_stream(
            reply.pool, reply.body, include_usage=True, affinity=reply.conversation_id
        )
        async for data in stream:
            chunk = json.loads(data)
            for choice in chunk.get("choices") or ():
                finish_reason = choice.get("finish_reason") or finish_reason
                text = (choice.get("delta") or {}).get("content")
                if text:
                    pieces.append(text)
                    generation.publish("token.delta", {"text": text})
        status = "complete"
    except asyncio.CancelledError:
        status = generation.stop_status
    except RequestError as exc:
        generation.publish("error", {"message": exc.message, "code": exc.code})
    finally:
        with anyio.CancelScope(shield=True):
            await _store(generation, reply, stream, pieces, status, finish_reason, meter, store)


async def _store(
    generation: Generation,
    reply: Reply,
    stream: ChatStream | None,
    pieces: list[str],
    status: str,
    finish_reason: str | None,
    meter: Meter,
    store: ConversationStore,
) -> None:
    usage: dict[str, Any] | None = None
    first_token_at = None
    if stream is not None:
        await stream.aclose()
        usage = await stream.final_usage()
        first_token_at = stream.first_token_at
    content = "".join(pieces)

    def save(conn: Any) -> None:
        store.finish_message(
            conn,
            reply.reply_id,
            content=content,
            status=status,
            finish_reason=finish_reason,
            usage=usage,
            request_id=reply.ticket.request_id,
        )

    meter.finish(
        reply.ticket,
        status=_LEDGER_STATUS[status],
        usage=usage,
        upstream=stream.upstream.name if stream else None,
        first_token_at=first_token_at,
        conversation_id=reply.conversation_id,
        also=save,
    )
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
