"""POST /v1/chat/completions: OpenAI-compatible, streamed or not, metered against quotas."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from chatapp.completions import ChatStream
from chatapp.errors import EngineUnavailable, InvalidRequest, RequestError, UpstreamError
from chatapp.router import affinity_key
from chatapp.token_count import count_usage
from chatapp.tool_calls import tools_not_supported
from chatapp.upstreams import ModelPool
from server.auth import authenticate
from server.body import read_json
from server.protocol import ChatRequest, parse_chat_request
from server.sse import DONE, EventStreamResponse, data_frame, error_frame
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
    # An answer with no max_tokens is capped at the model's output reserve, so the tokens
    # reserved against quotas are the most it can use (set max_tokens for longer answers).
    chat.body.setdefault("max_tokens", pool.model.output_reserve)
    meter = state.meter
    ticket = meter.admit(principal, pool.model, chat.body)
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
    except (EngineUnavailable, InvalidRequest) as exc:
        # The engine never worked on it (not reached, or refused it up front).
        meter.finish(ticket, status="error", usage=None, upstream=None)
        exc.headers.update(meter.headers(ticket))
        raise
    except RequestError as exc:
        meter.finish(ticket, status="error", usage=await _prompt_usage(pool, chat), upstream=None)
        exc.headers.update(meter.headers(ticket))
        raise
    except _ClientGone:
        # The engine read the prompt before the client left: that much was used.
        meter.finish(
            ticket, status="cancelled", usage=await _prompt_usage(pool, chat), upstream=None
        )
        return Response(status_code=499)  # nobody reads it; the log shows why it ended
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
        meter.finish(ticket, status=status, usage=None, upstream=None)
        raise
    if not chat.stream:
        meter.finish(ticket, status="ok", usage=completion.usage, upstream=completion.upstream.name)
        return Response(
            completion.content, media_type="application/json", headers=meter.headers(ticket)
        )

    async def close() -> None:
        """However the stream ended: close the engine request, then account for it."""
        usage = None
        try:
            await stream.aclose()
            usage = await stream.final_usage()
        finally:
            meter.finish(
                ticket,
                status=stream.outcome,
                usage=usage,
                upstream=stream.upstream.name,
                first_token_at=stream.first_token_at,
            )

    return EventStreamResponse(
        _frames(stream),
        keepalive=state.config.server.keepalive_seconds,
        on_close=close,
        headers=meter.headers(ticket),
    )


async def _prompt_usage(pool: ModelPool, chat: ChatRequest) -> dict[str, int]:
    """What the prompt alone costs, counted like an answer the engine gave no usage for."""
    counter = pool.upstreams[0].counter
    return await anyio.to_thread.run_sync(count_usage, counter, chat.body["messages"], "")


class _ClientGone(Exception):
    """The client disconnected before a non-streamed answer was ready."""


async def _while_connected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await `work`, cancelling it (and so the engine request) if the client disconnects."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work_task = asyncio.ensure_future(work)
    watch_task = asyncio.ensure_future(disconnected())
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


async def _frames(stream: ChatStream) -> AsyncIterator[bytes]:
    """SSE frames for each upstream chunk; a failure mid-stream becomes an error frame."""
    try:
        async for data in stream:
            yield data_frame(data)
    except RequestError as exc:
        yield error_frame(exc)
    except Exception:
        # A bug or an engine answer we did not foresee: the client still gets a proper end.
        log.exception("stream failed")
        stream.outcome = "error"
        yield error_frame(UpstreamError("The answer failed; the server log has the details."))
    yield DONE
