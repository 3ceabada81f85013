"""POST /v1/chat/completions: OpenAI-compatible, streamed or not, metered against quotas."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from chatapp.completions import ChatStream
from chatapp.errors import EngineUnavailable, InvalidRequest, RequestError, UpstreamError
from chatapp.metering import Meter, Ticket
from chatapp.moderation import OutputGuard, content_blocked, message_texts
from chatapp.router import affinity_key
from chatapp.token_count import count_usage
from chatapp.tool_calls import tools_not_supported
from chatapp.upstreams import ModelPool
from server.auth import authenticate
from server.body import read_json
from server.protocol import ChatRequest, parse_chat_request
from server.request_log import made_request_id, request_id
from server.sse import DONE, EventStreamResponse, data_frame, error_frame, until_disconnect
from server.state import state_of

__all__ = ["chat_completions"]

log = logging.getLogger("chatapp.server")
T = TypeVar("T")


async def chat_completions(request: Request) -> Response | ASGIApp:
    """Validate and admit first, so any refusal is a plain JSON answer before a stream starts."""
    state = state_of(request)
    principal = authenticate(request)
    chat = parse_chat_request(await read_json(request, state.config.server.max_body_bytes))
    pool = state.pool(chat.model)
    if chat.body.get("tools") and not pool.model.tools:
        raise tools_not_supported(pool.model.name)
    moderator = state.moderator
    policy = moderator.policy_for(principal)
    if policy is not None:
        texts = message_texts(chat.body["messages"])
        blocked, flags = await moderator.check_messages(policy, texts)
        for decision in [*flags, *([blocked] if blocked else [])]:
            moderator.record(
                decision,
                direction="input",
                principal=principal,
                model=chat.model,
                request_id=request_id.get(),
            )
        if blocked is not None:
            raise content_blocked(blocked)
    # An answer with no max_tokens is capped at the model's output reserve, so the tokens
    # reserved against quotas are the most it can use (set max_tokens for longer answers).
    chat.body.setdefault("max_tokens", pool.model.output_reserve)
    meter = state.meter
    ticket = meter.admit(principal, pool.model, chat.body, request_id=made_request_id())
    # Turns of one conversation go to one upstream while it can take them (prefix cache).
    affinity = affinity_key(chat.body, request.headers.get("x-session-id"))
    try:
        if not chat.stream:
            completion = await _while_connected(
                request, state.completions.create(pool, chat.body, affinity=affinity)
            )
        else:
            stream = await state.completions.open_stream(
                pool, chat.body, include_usage=chat.include_usage, affinity=affinity
            )
    # Failed requests' usage rows share the loop turn's commit too: when an engine is down,
    # every request fails at once, and each committing alone would queue all behind all.
    except (EngineUnavailable, InvalidRequest) as exc:
        # The engine never worked on it (not reached, or refused it up front).
        await meter.finish_shared(ticket, status="error", usage=None, upstream=None)
        exc.headers.update(meter.headers(ticket))
        raise
    except RequestError as exc:
        usage = await _prompt_usage(pool, chat)
        await meter.finish_shared(ticket, status="error", usage=usage, upstream=None)
        exc.headers.update(meter.headers(ticket))
        raise
    except _ClientGone:
        # The engine read the prompt before the client left: that much was used.
        usage = await _prompt_usage(pool, chat)
        await meter.finish_shared(ticket, status="cancelled", usage=usage, upstream=None)
        return Response(status_code=499)  # nobody reads it; the log shows why it ended
    except BaseException as exc:  # a cancellation: settled without awaiting anything
        status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
        meter.finish(ticket, status=status, usage=None, upstream=None)
        raise
    guard = None
    if policy is not None:
        guard = OutputGuard.for_request(
            moderator, policy, principal=principal, model=chat.model, request_id=request_id.get()
        )
    if not chat.stream:
        content, status = completion.content, "ok"
        if guard is not None:
            content, status = await _moderated_answer(content, guard)
        upstream = completion.upstream.name
        await meter.finish_shared(ticket, status=status, usage=completion.usage, upstream=upstream)
        return Response(content, media_type="application/json", headers=meter.headers(ticket))

    return EventStreamResponse(
        _frames(stream, guard),
        keepalive=state.config.server.keepalive_seconds,
        on_close=functools.partial(_settle, stream, meter, ticket),
        headers=meter.headers(ticket),
    )


async def _settle(stream: ChatStream, meter: Meter, ticket: Ticket) -> None:
    """However the stream ended: close the engine request, then account for it."""
    usage = None
    try:
        await stream.aclose()
        usage = await stream.final_usage()
    finally:
        await meter.finish_shared(
            ticket,
            status=stream.outcome,
            usage=usage,
            upstream=stream.upstream.name,
            first_token_at=stream.first_token_at,
        )


async def _prompt_usage(pool: ModelPool, chat: ChatRequest) -> dict[str, int]:
    """What the prompt alone costs, counted like an answer the engine gave no usage for."""
    counter = pool.upstreams[0].counter
    return await anyio.to_thread.run_sync(count_usage, counter, chat.body["messages"], "")


class _ClientGone(Exception):
    """The client disconnected before a non-streamed answer was ready."""


async def _while_connected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await `work`, cancelling it (and so the engine request) if the client disconnects."""

    work_task = asyncio.ensure_future(work)
    watch_task = asyncio.ensure_future(until_disconnect(request.receive))
    try:
        await asyncio.wait({work_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch_task.cancel()
        if not work_task.done():
            work_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work_task
    if work_task.cancelled():
        raise _ClientGone
    return work_task.result()


async def _moderated_answer(content: bytes, guard: OutputGuard) -> tuple[bytes, str]:
    """A whole answer checked at once; a blocked one is emptied, with content_filter."""
    try:
        answer = json.loads(content)
        choice = answer["choices"][0]
        text = choice["message"].get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return content, "ok"  # not a chat answer we can read: passed on as the engine sent it
    if await guard.admit(text) and await guard.finish():
        return content, "ok"
    # Nothing of a blocked answer goes out: not its text, its tokens, its reasoning or calls.
    choice["message"] = {"role": "assistant", "content": ""}
    choice["finish_reason"] = "content_filter"
    choice.pop("logprobs", None)
    return json.dumps(answer).encode(), "filtered"


def _filtered_chunk(data: str) -> str:
    """The last chunk of an answer stopped by moderation: finish_reason content_filter."""
    last = json.loads(data)
    return json.dumps(
        {
            "id": last.get("id", "chatcmpl-chatapp"),
            "object": "chat.completion.chunk",
            "created": last.get("created", 0),
            "model": last.get("model", ""),
            "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}],
        }
    )


async def _frames(stream: ChatStream, guard: OutputGuard | None) -> AsyncIterator[bytes]:
    """SSE frames for the upstream chunks; a failure mid-stream becomes an error frame.

    The chunks of one read of the engine's answer go out as one write, each its own event.
    With a moderation guard, each chunk is checked before it is sent, and sent as soon as it
    passes (not held for the checks of the chunks after it); a blocked one is never sent:
    the stream ends with finish_reason content_filter instead.
    """
    try:
        blocked = False
        async for batch in stream.batches():
            if guard is None:
                yield b"".join([data_frame(data) for data in batch])
                continue
            for data in batch:
                blocked = not await _allowed(data, guard)
                yield data_frame(_filtered_chunk(data) if blocked else data)
                if blocked:
                    break
            if blocked:
                stream.outcome = "filtered"
                break
    except RequestError as exc:
        yield error_frame(exc)
    except Exception:
        # A bug or an engine answer we did not foresee: the client still gets a proper end.
        log.exception("stream failed")
        stream.outcome = "error"
        yield error_frame(UpstreamError("The answer failed; the server log has the details."))
    yield DONE


async def _allowed(data: str, guard: OutputGuard) -> bool:
    """Whether moderation lets this chunk out (at the answer's end, the answer as a whole)."""
    piece, finishing = _read_chunk(data)
    allowed = await guard.admit(piece) if piece else True
    if allowed and finishing:
        allowed = await guard.finish()
    return allowed


def _read_chunk(data: str) -> tuple[str, bool]:
    """A chunk's text, and whether it ends the answer (the last chance to check it whole)."""
    try:
        chunk = json.loads(data)
    except ValueError:
        return "", False
    text, finishing = "", False
    for choice in chunk.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        text += content if isinstance(content, str) else ""
        finishing = finishing or bool(choice.get("finish_reason"))
    return text, finishing
