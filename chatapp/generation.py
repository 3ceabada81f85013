"""Replies generated on their own task, so a client can leave, come back and miss nothing.

A Generation keeps the numbered events of one reply (message.started, token.delta, error,
message.completed) in memory while it runs and for a while after. Clients attach, read from
any event number (SSE's Last-Event-ID) and detach. When the last one leaves, the reply goes
on for a grace period so a reconnect can pick it up; after that it is stopped and stored
`incomplete` with what was generated. The registry forgets finished replies after
`keep_seconds`.

Events are kept as their SSE frames, bytes: each is rendered once however many clients follow,
and the frames of the finished replies kept for late resumes are nothing for the garbage
collector to walk. Kept as objects (an event and its data, for each token of every reply of
the last five minutes), they made each full collection of a busy gateway stop the event loop
for 80-130 ms, and every stream with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

__all__ = ["Generation", "GenerationRegistry"]

log = logging.getLogger("chatapp.generation")

# A str as json.dumps writes it (ASCII, escaped), without json.dumps' per-call layers.
_json_str: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


class Generation:
    """The events of one reply and the task producing them.

    Each event's id (`seq`) is its number, from `numbered_after` + 1, without gaps.
    """

    def __init__(self, reply_id: str, *, grace_seconds: float, numbered_after: int = 0) -> None:
        self.reply_id = reply_id
        self.grace_seconds = grace_seconds
        self.frames: list[bytes] | tuple[bytes, ...] = []  # a tuple once finished: finish()
        self.numbered_after = numbered_after
        self.completed = False  # message.completed is out: a reply's last event
        self.done = False
        self.stop_status = "incomplete"  # what a stop means: abandoned, unless cancelled
        self.task: asyncio.Task[None] | None = None
        # A future per follower waiting for the next event: a third cheaper per token than an
        # asyncio.Event, which every token would set and every follower clear and wait on.
        self._waiting: list[asyncio.Future[None]] = []
        self._followers = 0
        self._stopping = False
        self._abandon: asyncio.TimerHandle | None = None

    def publish(self, name: str, data: dict[str, Any]) -> None:
        self.completed = self.completed or name == "message.completed"
        self._add(name, json.dumps(data))

    def publish_text(self, text: str) -> None:
        """A token.delta event, the same frame as publish("token.delta", {"text": text}):
        json.dumps walks a dict through its encoder's layers, a tenth of the cost written out."""
        self._add("token.delta", f'{{"text": {_json_str(text)}}}')

    def _add(self, name: str, data: str) -> None:
        """The next event, its data already JSON, as its frame; its followers woken."""
        frames = self.frames
        assert isinstance(frames, list), "a finished reply takes no more events"
        seq = self.numbered_after + len(frames) + 1
        frames.append(f"id: {seq}\nevent: {name}\ndata: {data}\n\n".encode())
        self._wake()

    def finish(self) -> None:
        """The reply is over: nothing is published after this."""
        self.done = True
        # Kept for late resumes: a tuple of bytes, which the collector stops tracking at its
        # next pass, so no full collection walks a finished reply's events again (a list
        # of them was most of what one walked in a busy gateway).
        self.frames = tuple(self.frames)
        self._wake()

    def _wake(self) -> None:
        if self._waiting:
            waiting, self._waiting = self._waiting, []
            for future in waiting:
                if not future.done():  # its follower was cancelled while it waited
                    future.set_result(None)

    def stop(self, status: str) -> None:
        """Stop generating (the engine request is closed); stored with `status`.

        Only the first stop cancels: a second cancel would interrupt the storing of the reply.
        """
        if self.task is not None and not self.done and not self._stopping:
            self._stopping = True
            self.stop_status = status
            self.task.cancel()

    def attach(self) -> None:
        """A client follows the reply: no abandoning it while anyone does."""
        self._followers += 1
        if self._abandon is not None:
            self._abandon.cancel()
            self._abandon = None

    def detach(self) -> None:
        """A client left; when none is left, the grace period for a reconnect starts."""
        self._followers -= 1
        if self._followers == 0 and not self.done:
            loop = asyncio.get_running_loop()
            self._abandon = loop.call_later(self.grace_seconds, self.stop, "incomplete")

    async def frames_after(self, after: int = 0) -> AsyncIterator[bytes]:
        """Every event after event `after` as an SSE frame, as they come, until the reply is
        finished: at its message.completed, without waiting for its task to end."""
        sent = max(0, after - self.numbered_after)
        while True:
            while sent < len(self.frames):
                sent += 1
                yield self.frames[sent - 1]
            if self.completed or self.done:
                return
            woken = asyncio.get_running_loop().create_future()
            self._waiting.append(woken)
            await woken


class GenerationRegistry:
    """Replies by id: the running ones, and finished ones for a while (for late resumes)."""

    def __init__(self, *, grace_seconds: float = 10.0, keep_seconds: float = 300.0) -> None:
        self.grace_seconds = grace_seconds
        self.keep_seconds = keep_seconds
        self._replies: dict[str, Generation] = {}
        # Finished replies in the order they finished, each with when it is forgotten: one
        # queue looked at when replies are asked for, not a timer per reply (with its context
        # and handle, more for the collector to walk for five minutes).
        self._finished: deque[tuple[float, str]] = deque()
        self._background: set[asyncio.Task[Any]] = set()

    def get(self, reply_id: str) -> Generation | None:
        self._forget_expired()
        return self._replies.get(reply_id)

    def _forget_expired(self) -> None:
        finished, now = self._finished, time.monotonic()
        while finished and finished[0][0] <= now:
            self._replies.pop(finished.popleft()[1], None)

    def start(
        self, reply_id: str, run: Callable[[Generation], Coroutine[Any, Any, None]]
    ) -> Generation:
        """Run `run(generation)` on its own task; it must publish and then call finish()."""
        self._forget_expired()
        generation = Generation(reply_id, grace_seconds=self.grace_seconds)
        self._replies[reply_id] = generation

        async def runner() -> None:
            try:
                await run(generation)
            except asyncio.CancelledError:
                pass  # `run` stored the reply as stopped; nothing else waits on this task
            except Exception:
                log.exception("reply %s failed", reply_id)

        def finished(_: asyncio.Task[None]) -> None:
            # A callback, not a `finally`: it runs even if the task was cancelled before it
            # ever started. The task goes: kept five minutes, it and the request's context
            # it holds were six of a finished reply's nine objects for the collector to walk.
            generation.task = None
            generation.finish()
            self._finished.append((time.monotonic() + self.keep_seconds, reply_id))

        generation.task = asyncio.create_task(runner(), name=f"reply:{reply_id}")
        generation.task.add_done_callback(finished)
        return generation

    def background(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run follow-up work (a title) that no client waits for; kept referenced until done."""
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def shutdown(self) -> None:
        """Stop every running reply (stored `incomplete`) and wait until each is stored."""
        running = [g for g in self._replies.values() if not g.done and g.task is not None]
        for generation in running:
            generation.stop("incomplete")
        for generation in running:
            assert generation.task is not None
            with contextlib.suppress(asyncio.CancelledError):
                await generation.task
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
