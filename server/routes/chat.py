"""POST /v1/chat/completions: OpenAI-compatible, streamed or not."""

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
    """Validate everything first, so any error is a plain JSON answer before the stream starts."""
    state = state_of(request)
    authenticate(request)
    chat = parse_chat_request(await read_json(request, state.config.server.max_body_bytes))
    pool = state.pool(chat.model)
    if not chat.stream:
        content = await state.completions.create(pool, chat.body)
        return Response(content, media_type="application/json")
    stream = await state.completions.open_stream(pool, chat.body, include_usage=chat.include_usage)
    return EventStreamResponse(
        _frames(stream), keepalive=state.config.server.keepalive_seconds, on_close=stream.aclose
    )


async def _frames(stream: ChatStream) -> AsyncIterator[bytes]:
    """SSE frames for each upstream chunk; a failure mid-stream becomes an error frame."""
    try:
        async for data in stream:
            yield data_frame(data)
    except RequestError as exc:
        yield error_frame(exc)
    yield DONE
