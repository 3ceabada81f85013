"""A closed-loop load of single chat completions that keeps every chunk's arrival time.

bench/load.py's summaries say when a stream's first token came and when it ended; the
gateway benchmark and `chatapp bench` also need the gaps between tokens (inter-token latency),
how far each token is from where a steady stream would put it, and how many chunks each
stream got. `concurrency` users share `requests` requests, each user sending its next one as
soon as the last ends, over bench/load.py's raw HTTP/1.1 client (one keep-alive connection
a user); unstreamed requests go over httpx, since the answer is one JSON body.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from bench.load import HttpError, RawClient
from bench.report import percentile

__all__ = ["Shot", "Spec", "Stats", "gaps", "run_shots", "stats"]

_FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "


@dataclass(frozen=True)
class Spec:
    """One load: `requests` requests shared by `concurrency` users, fixed prompt and output.

    `start_spread` starts the users uniformly over that many seconds (seeded, so two runs of
    one spec start alike) instead of all in the same instant.

    `route` "conversation" has each user chat as in the TUI, in a conversation of its own
    (`conversations`, the i-th user's i-th; made by `new_chats`, or by run_shots before it
    starts the clock): each request a message after the reply before (`POST
    /v1/conversations/{id}/messages`, streamed, the history sent with it), questions and
    replies stored in SQLite. "chat" is `POST /v1/chat/completions`.
    """

    model: str
    concurrency: int
    requests: int
    prompt_tokens: int = 64
    max_tokens: int = 128
    stream: bool = True
    start_spread: float = 0.0
    seed: int = 1
    route: Literal["chat", "conversation"] = "chat"
    conversations: tuple[str, ...] = ()
    # 0 on a real engine: greedy answers are the same through any path, so two paths that
    # are compared produce the same number of tokens (the emulator ignores it).
    temperature: float | None = None
    # Appended to every prompt: what the model is asked to do with it. A real engine's
    # answers end where the model stops; "repeat the text above" makes them run to
    # max_tokens, so every path is given the same work.
    instruction: str = ""


@dataclass(frozen=True)
class Shot:
    """One request: its start, each content chunk's arrival (perf_counter), tokens, error."""

    started: float
    ended: float
    arrivals: tuple[float, ...] = ()
    tokens: int = 0  # content chunks (streamed) or the usage's completion tokens
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        return self.arrivals[0] - self.started if self.arrivals else None


@dataclass(frozen=True)
class Stats:
    """What a load came to; latencies in seconds, NaN when there were no samples."""

    requests: int
    errors: int
    tokens: int
    seconds: float
    ttft: dict[int, float]  # percentile → seconds (50, 95, 99)
    itl: dict[int, float]
    first_error: str | None = None
    shots: list[Shot] = field(default_factory=list, repr=False)

    @property
    def throughput(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def prompt(index: int, tokens: int) -> str:
    """About `tokens` tokens (four characters a token) opening with the request's number, so
    an engine's prefix cache cannot serve one request from another's."""
    head = f"Request {index}: "
    body = _FILLER * (tokens * 4 // len(_FILLER) + 1)
    return (head + body)[: max(len(head), tokens * 4)]


def _chat_body(spec: Spec, text: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": spec.model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": spec.max_tokens,
        "stream": spec.stream,
    }
    if spec.stream:
        body["stream_options"] = {"include_usage": True}
    if spec.temperature is not None:
        body["temperature"] = spec.temperature
    return body


async def _streamed(client: RawClient, body: dict[str, Any], headers: dict[str, str]) -> Shot:
    started = time.perf_counter()
    arrivals: list[float] = []
    error: str | None = None
    try:
        async for data in client.stream("/chat/completions", body, headers):
            if data == b"[DONE]":
                continue  # read on to the end of the body: the connection stays reusable
            chunk = json.loads(data)
            if "error" in chunk:
                error = f"error frame: {str(chunk['error'].get('message'))[:200]}"
                continue
            for choice in chunk.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    arrivals.append(time.perf_counter())
    except HttpError as exc:
        error = str(exc)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Shot(started, time.perf_counter(), tuple(arrivals), len(arrivals), error)


async def new_chats(base_url: str, spec: Spec, api_key: str | None = None) -> tuple[str, ...]:
    """A conversation for each user of a load (titled, so no title request runs), as a user
    opens a new chat before typing in it; HttpError saying why if the server refuses one."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    made: list[str] = []
    async with httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", timeout=30) as client:
        for _ in range(spec.concurrency):
            try:
                answer = await client.post(
                    "conversations", json={"title": "bench", "model": spec.model}, headers=headers
                )
                if answer.status_code != 201:
                    raise HttpError(f"HTTP {answer.status_code}: {answer.text[:300]}")
                made.append(str(answer.json()["id"]))
            except (httpx.HTTPError, HttpError, ValueError, KeyError, TypeError) as exc:
                raise HttpError(f"making a conversation: {exc}") from exc
    return tuple(made)


async def _conversed(
    client: RawClient, conversation: str, body: dict[str, Any], headers: dict[str, str]
) -> Shot:
    """One message to a conversation; its reply's token.delta events are the tokens."""
    started = time.perf_counter()
    arrivals: list[float] = []
    error: str | None = None
    path = f"/conversations/{conversation}/messages"
    try:
        async for data in client.stream(path, body, headers):
            event = json.loads(data)
            if event.get("text"):  # token.delta
                arrivals.append(time.perf_counter())
            elif "code" in event:  # error
                error = f"error event: {str(event.get('message'))[:200]}"
            elif event.get("status", "complete") != "complete":  # message.completed
                error = error or f"reply {event['status']}"
    except HttpError as exc:
        error = str(exc)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Shot(started, time.perf_counter(), tuple(arrivals), len(arrivals), error)


async def _unstreamed(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str]
) -> Shot:
    started = time.perf_counter()
    try:
        response = await client.post("chat/completions", json=body, headers=headers)
        ended = time.perf_counter()
        if response.status_code != 200:
            return Shot(started, ended, error=f"HTTP {response.status_code}: {response.text[:300]}")
        usage = response.json().get("usage") or {}
        # The whole answer arrives at once: its "first token" is the end of the response.
        return Shot(started, ended, (ended,), int(usage.get("completion_tokens") or 0))
    except (httpx.HTTPError, ValueError) as exc:
        return Shot(started, time.perf_counter(), error=f"{type(exc).__name__}: {exc}")


async def run_shots(
    base_url: str,
    spec: Spec,
    *,
    api_key: str | None = None,
    on_shot: Callable[[Shot], None] | None = None,
) -> tuple[list[Shot], float]:
    """Run the load against a /v1 base URL: every request's Shot, and the wall seconds."""
    chats = spec.conversations
    if spec.route == "conversation" and len(chats) < spec.concurrency:
        chats = await new_chats(base_url, spec, api_key)
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    pending = iter(range(spec.requests))
    shots: list[Shot] = []
    rng = random.Random(spec.seed)
    delays = [rng.uniform(0, spec.start_spread) for _ in range(spec.concurrency)]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(connect=10.0, read=600.0, write=30.0, pool=None)
    shared = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", limits=limits, timeout=timeout)

    async def user(number: int, delay: float) -> None:
        await asyncio.sleep(delay)
        raw = RawClient(base_url)
        try:
            while (index := next(pending, None)) is not None:
                text = prompt(index, spec.prompt_tokens) + spec.instruction
                if spec.route == "conversation":
                    message = {"content": text, "max_tokens": spec.max_tokens}
                    shot = await _conversed(raw, chats[number], message, headers)
                elif spec.stream:
                    shot = await _streamed(raw, _chat_body(spec, text), headers)
                else:
                    shot = await _unstreamed(shared, _chat_body(spec, text), headers)
                shots.append(shot)
                if on_shot is not None:
                    on_shot(shot)
        finally:
            await raw.aclose()

    started = time.perf_counter()
    try:
        await asyncio.gather(*(user(number, d) for number, d in enumerate(delays)))
    finally:
        await shared.aclose()
    return shots, time.perf_counter() - started


def gaps(shots: Sequence[Shot]) -> list[float]:
    """Every inter-token gap of every good stream, sorted."""
    out: list[float] = []
    for shot in shots:
        if not shot.error:
            a = shot.arrivals
            out += [a[i] - a[i - 1] for i in range(1, len(a))]
    out.sort()
    return out


def _percentiles(values: Sequence[float]) -> dict[int, float]:
    return {q: percentile(values, q) if values else float("nan") for q in (50, 95, 99)}


def stats(shots: Sequence[Shot], seconds: float) -> Stats:
    """Throughput counts every token received; latencies only the requests that succeeded."""
    ttfts = sorted(s.ttft for s in shots if s.ttft is not None and not s.error)
    errors = [s for s in shots if s.error]
    return Stats(
        requests=len(shots),
        errors=len(errors),
        tokens=sum(s.tokens for s in shots),
        seconds=seconds,
        ttft=_percentiles(ttfts),
        itl=_percentiles(gaps(shots)),
        first_error=errors[0].error if errors else None,
        shots=list(shots),
    )
