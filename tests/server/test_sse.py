"""EventStreamResponse at the ASGI level: which `send` each message of a stream goes through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from server.sse import SERVER_SEND, EventStreamResponse


async def _frames() -> AsyncIterator[bytes]:
    yield b"data: 1\n\n"
    yield b"data: 2\n\n"


def _recorder(into: list[dict[str, Any]]) -> Any:
    async def send(message: dict[str, Any]) -> None:
        into.append(message)

    return send


async def _receive() -> dict[str, Any]:
    """A client that stays connected: nothing more to read until the stream ends."""
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


async def test_the_start_goes_through_the_middleware_and_frames_straight_to_the_server() -> None:
    """Middleware sees the start (status, headers, request id); the frames skip the wrappers."""
    wrapped: list[dict[str, Any]] = []
    direct: list[dict[str, Any]] = []
    scope = {"type": "http", SERVER_SEND: _recorder(direct)}
    await EventStreamResponse(_frames(), keepalive=60)(scope, _receive, _recorder(wrapped))
    assert [m["type"] for m in wrapped] == ["http.response.start"]
    assert [m.get("body") for m in direct] == [b"data: 1\n\n", b"data: 2\n\n", b""]
    assert direct[-1]["more_body"] is False


async def test_without_the_server_send_in_the_scope_everything_goes_through_send() -> None:
    sent: list[dict[str, Any]] = []
    await EventStreamResponse(_frames(), keepalive=60)({"type": "http"}, _receive, _recorder(sent))
    assert [m["type"] for m in sent] == ["http.response.start"] + ["http.response.body"] * 3
