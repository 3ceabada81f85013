"""EventStreamResponse at the ASGI level: which `send` each message of a stream goes through."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.types import Message

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


async def _slow_frames(started: asyncio.Event, closed: list[str]) -> AsyncIterator[bytes]:
    try:
        yield b"data: 1\n\n"
        started.set()
        await asyncio.sleep(60)
        yield b"data: never\n\n"
    finally:
        closed.append("frames")


async def test_a_disconnect_cancels_the_frames_and_the_stream_ends_quietly() -> None:
    """The client left: the frame iterator is cancelled (closing the upstream), no end of body
    is written to a gone client, on_close runs, and the cancellation stays inside."""
    started, gone = asyncio.Event(), asyncio.Event()
    closed: list[str] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def on_close() -> None:
        await asyncio.sleep(0)
        closed.append("on_close")

    response = EventStreamResponse(_slow_frames(started, closed), keepalive=60, on_close=on_close)
    call = asyncio.ensure_future(response({"type": "http"}, receive, _recorder(sent)))
    await started.wait()
    gone.set()
    await asyncio.wait_for(call, 5)
    assert closed == ["frames", "on_close"]
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n"]
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_plain_on_close_runs_in_the_stream_itself_without_a_task() -> None:
    """A chat's follower only says it left: a plain function, called as the stream ends, even
    when the client left first, with no task made to shield it."""
    started, gone = asyncio.Event(), asyncio.Event()
    closed: list[str] = []
    tasks_when_closed: list[int] = []

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    def on_close() -> None:
        closed.append("on_close")
        tasks_when_closed.append(len(asyncio.all_tasks()))

    response = EventStreamResponse(_slow_frames(started, closed), keepalive=60, on_close=on_close)
    call = asyncio.ensure_future(response({"type": "http"}, receive, _recorder([])))
    await started.wait()
    gone.set()
    await asyncio.wait_for(call, 5)
    assert closed == ["frames", "on_close"]
    # This test's task and the stream's: no third one running on_close.
    assert tasks_when_closed == [2]


async def test_a_keepalive_goes_out_while_the_engine_is_quiet() -> None:
    started = asyncio.Event()
    sent: list[dict[str, Any]] = []
    response = EventStreamResponse(_slow_frames(started, []), keepalive=0.05)
    call = asyncio.ensure_future(response({"type": "http"}, _receive, _recorder(sent)))
    await asyncio.sleep(0.3)
    call.cancel()
    bodies = [m.get("body") for m in sent[1:]]
    assert bodies[0] == b"data: 1\n\n"
    assert 3 <= bodies.count(b": keep-alive\n\n") <= 7  # one each 50 ms of silence


async def test_a_cancelled_request_still_finishes_on_close_then_stays_cancelled() -> None:
    """Server shutdown cancels the request task: closing the upstream and metering the answer
    still run to their end, and the cancellation is not swallowed."""
    started, closing = asyncio.Event(), asyncio.Event()
    closed: list[str] = []

    async def on_close() -> None:
        closing.set()
        await asyncio.sleep(0.05)
        closed.append("metered")

    response = EventStreamResponse(_slow_frames(started, closed), keepalive=60, on_close=on_close)
    call = asyncio.ensure_future(response({"type": "http"}, _receive, _recorder([])))
    await started.wait()
    call.cancel()
    await closing.wait()
    call.cancel()  # a second cancellation while on_close runs
    await asyncio.wait((call,))
    assert call.cancelled()
    assert closed == ["frames", "metered"]


async def test_a_failed_keepalive_fails_the_stream_at_its_end() -> None:
    """A keep-alive that could not be written is not retried; its error ends the stream."""

    async def frames() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        await asyncio.sleep(0.2)  # four keep-alive intervals of silence
        yield b"data: 2\n\n"

    sent: list[Message] = []

    async def send(message: Message) -> None:
        if message.get("body") == b": keep-alive\n\n":
            sent.append(message)
            raise OSError("the socket is gone")

    response = EventStreamResponse(frames(), keepalive=0.05)
    with pytest.raises(OSError, match="the socket is gone"):
        await response({"type": "http"}, _receive, send)
    assert len(sent) == 1


async def test_a_finished_stream_leaves_no_reference_cycle() -> None:
    """What a stream made is freed when it ends, not left for the garbage collector: a cycle
    would hold the request's objects, and every collection would walk them."""
    gc.collect()
    gc.disable()
    try:
        await EventStreamResponse(_frames(), keepalive=60)(
            {"type": "http"}, _receive, _recorder([])
        )
        for _ in range(3):
            await asyncio.sleep(0)  # the cancelled disconnect watch finishes
        left = [o for o in gc.get_objects() if type(o).__module__ == "server.sse"]
    finally:
        gc.enable()
    assert [type(o).__name__ for o in left] == []
