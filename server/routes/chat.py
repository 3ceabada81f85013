"""POST /v1/chat/completions: OpenAI-compatible, streamed or not, metered against quotas."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from chatapp.completions import ChatStream
from chatapp.errors import RequestError
from server.auth import authenticate
from server.body import read_json
from server.protocol import parse_chat_request
from server.sse import DONE, EventStreamResponse, data_frame, error_frame
from server.state import state_of

__all__ = ["chat_completions"]


async def chat_completions(request: Request) -> Response | ASGIApp:
    """Validate and admit first, so any refusal is a plain JSON answer before a stream starts."""
    state = state_of(request)
    principal = authenticate(request)
    chat = parse_chat_request(await read_json(request, state.config.server.max_body_bytes))
    pool = state.pool(chat.model)
    meter = state.meter
    ticket = meter.admit(principal, pool.model, chat.body)
    try:
        if not chat.stream:
            completion = await state.completions.create(pool, chat.body)
        else:
            stream = await state.completions.open_stream(
                pool, chat.body, include_usage=chat.include_usage
            )
    except RequestError as exc:
        meter.finish(ticket, status="error", usage=None, upstream=None)
        exc.headers.update(meter.headers(ticket))
        raise
    except BaseException:
        meter.finish(ticket, status="cancelled", usage=None, upstream=None)
        raise
    if not chat.stream:
        meter.finish(ticket, status="ok", usage=completion.usage, upstream=completion.upstream.name)
        return Response(
            completion.content, media_type="application/json", headers=meter.headers(ticket)
        )

    async def close() -> None:
        """However the stream ended: close the engine request, then account for it."""
        await stream.aclose()
        usage = await stream.final_usage()
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


async def _frames(stream: ChatStream) -> AsyncIterator[bytes]:
    """SSE frames for each upstream chunk; a failure mid-stream becomes an error frame."""
    try:
        async for data in stream:
            yield data_frame(data)
    except RequestError as exc:
        yield error_frame(exc)
    yield DONE
