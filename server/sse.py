"""SSE framing and the streaming response: chunks go out as they come, with keep-alives between."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping

from starlette.types import Receive, Scope, Send

from chatapp.errors import RequestError
from server.errors import error_body

__all__ = [
    "DONE",
    "SERVER_SEND",
    "EventStreamResponse",
    "data_frame",
    "error_frame",
    "until_disconnect",
]

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
_KEEPALIVE_MESSAGE = {"type": "http.response.body", "body": KEEPALIVE, "more_body": True}
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
]


# The scope key of the server's own `send`, kept there by the app before any middleware wraps
# it. The wrappers (Starlette's error handlers, the request log) look only at a response's
# start; passing each streamed token through four of them cost more than framing it.
SERVER_SEND = "chatapp.server_send"


def data_frame(data: str) -> bytes:
    return b"data: " + data.encode("utf-8") + b"\n\n"


def error_frame(exc: RequestError) -> bytes:
    """An error after the stream has started: OpenAI clients raise on a chunk with `error`."""
    return data_frame(json.dumps(error_body(exc)))


class EventStreamResponse:
    """A pure ASGI SSE response.

    Each item of `frames` is sent as its own body message the moment it is produced (no
    batching). While nothing has been sent for `keepalive` seconds a comment line goes out, so
    proxies keep a long wait for the first token open. When the client disconnects, the frame
    iterator is cancelled, which closes the upstream request and stops the engine's work.
    The start goes through the middleware; body frames go straight to the server's `send`
    when the app kept it in the scope (`SERVER_SEND`).
    """

    def __init__(
        self,
        frames: AsyncIterable[bytes],
        *,
        keepalive: float,
        on_close: Callable[[], Awaitable[None] | None] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.frames = frames
        self.on_close = on_close
        self.headers = HEADERS + [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        ]
        self.keepalive = keepalive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(receive, send, scope.get(SERVER_SEND, send))
        finally:
            if self.on_close is not None:
                # Also when the client left before the first frame: the upstream must close.
                # One that needs no await has nothing to be cut short: no task to shield it.
                closing = self.on_close()
                if closing is not None:
                    await _to_the_end(closing)

    async def _stream(self, receive: Receive, send: Send, send_body: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        watch = _Disconnects(receive)
        keepalives = _KeepAlives(send_body, self.keepalive)
        try:
            async for frame in self.frames:
                await send_body({"type": "http.response.body", "body": frame, "more_body": True})
                keepalives.last_sent = time.monotonic()
        except asyncio.CancelledError:
            if not watch.client_left or watch.streamer.uncancel() > 0:
                raise  # someone else's cancellation too (shutdown): it goes on
        finally:
            watch.stop()  # before any await: a disconnect now must not cancel the ending
            await keepalives.stop()
        if not watch.client_left:
            await send_body({"type": "http.response.body", "body": b"", "more_body": False})


class _Disconnects:
    """While a response streams, a client disconnect cancels the streaming task (its frames,
    and so the upstream request).

    A plain asyncio task, not an anyio task group: its cancel scopes cost a request several
    times what the task does. An object, not a closure: fewer objects that every open stream
    holds for the garbage collector to walk.
    """

    def __init__(self, receive: Receive) -> None:
        streamer = asyncio.current_task()
        assert streamer is not None
        self.streamer = streamer
        self.client_left = False
        self._task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
            self._watch(receive)
        )

    async def _watch(self, receive: Receive) -> None:
        await until_disconnect(receive)
        if self._task is not None:  # still streaming: stop() lets go of the task
            self.client_left = True
            self.streamer.cancel()

    def stop(self) -> None:
        # The task, once cancelled, keeps its traceback and with it `_watch`'s frame, which
        # holds this object: let go of it, or each stream would end as a reference cycle
        # holding the request's whole cycle for the garbage collector.
        task, self._task = self._task, None
        if task is not None:
            task.cancel()


class _KeepAlives:
    """Sends a comment line whenever `every` seconds have passed with nothing sent.

    A timer, not a task per stream: a task and its coroutines are more for the garbage
    collector to walk at every collection, for each open stream. No lock between frames and
    keep-alives: uvicorn's send waits for the socket to drain before it writes, then writes a
    message whole, so sends never interleave.
    """

    def __init__(self, send: Send, every: float) -> None:
        self.send = send
        self.every = every
        self.last_sent = time.monotonic()
        self.sending: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(every, self._due)

    def _due(self) -> None:
        sending = self.sending
        if sending is not None and sending.done() and sending.exception() is not None:
            return  # the last one failed: no more, and stop() raises its error
        wait = self.last_sent + self.every - time.monotonic()
        if wait <= 0:
            if sending is None or sending.done():
                self.sending = self._loop.create_task(self._send())
            wait = self.every
        self._timer = self._loop.call_later(wait, self._due)

    async def _send(self) -> None:
        await self.send(_KEEPALIVE_MESSAGE)
        self.last_sent = time.monotonic()

    async def stop(self) -> None:
        """No more keep-alives; one that failed raises its error here."""
        self._timer.cancel()
        sending, self.sending = self.sending, None  # no cycle through its traceback
        if sending is not None:
            await _stop(sending)


async def until_disconnect(receive: Receive) -> None:
    """Return once the client has disconnected (request body messages are skipped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a helper task; one failed (not cancelled) raises its error here."""
    task.cancel()
    await asyncio.wait((task,))
    if not task.cancelled():
        task.result()


async def _to_the_end(work: Awaitable[None]) -> None:
    """Await `work` to its end even if this task is cancelled meanwhile (the cancellation is
    raised after): closing the upstream and metering an answer must not be cut short."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done() and task.cancelled():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()
