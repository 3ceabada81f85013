"""A load client for OpenAI-compatible chat servers: concurrent users in multi-turn chats.

Each user takes conversations off a shared queue and runs their turns in order, streamed,
optionally pausing a random think time before each: every turn's prompt is the conversation
so far (its system prompt, the earlier questions and the answers received) plus a new
question, so the prompts of one conversation share a growing prefix. Per request it records
the time to the first content chunk, the total time, the content chunks received (one a
token) and any error. With `duration` set, users keep starting fresh conversations until
then, and only tokens received before it count.

Two HTTP clients: `raw` (HTTP/1.1 over asyncio streams, one keep-alive connection per user)
and `httpx` (one AsyncClient shared by the users). On the 2-core VM, 128 streams of 256
tokens at 50 tokens/s straight from the emulator (65,536 tokens) cost `raw` 3.6-4.0
CPU-seconds and httpx 12-14 (h11 parses in pure Python, and httpcore's pool hands out
connections slowly when it holds many), and httpx fell behind (3,800-4,900 tokens/s against
6,300), so `raw` is the default; `--client httpx` compares.
`python -m bench.load --url http://127.0.0.1:8100/v1 --users 16` runs one load.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from bench.report import percentile

__all__ = [
    "HttpxClient",
    "RawClient",
    "Sample",
    "Summary",
    "Workload",
    "run",
    "run_load",
    "summarize",
]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a load on uvloop, as the servers it measures run: on the stock asyncio loop the
    client spent a quarter more CPU a token, which on a 2-core box it takes from them."""
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it everywhere but Windows
        return asyncio.run(main)
    return uvloop.run(main)


CHARS_PER_TOKEN = 4
_WORDS = (
    "account billing cluster deploy engine fleet gateway health invoice latency model node "
    "order policy quota region replica request route schema stream tenant token upstream "
    "usage vector window worker yield zone"
).split()


@dataclass(frozen=True)
class Workload:
    """What the users send; `turns` 1 makes single requests of one fixed-size prompt."""

    model: str
    users: int = 8
    conversations: int = 24
    turns: int = 6
    system_tokens: int = 1500
    shared_system: bool = False  # one system prompt for all, else each conversation its own
    question_tokens: int = 40
    max_tokens: int = 64
    long_every: int = 0  # every Nth conversation asks for `long_factor` × max_tokens
    long_factor: int = 10
    session_header: bool = True  # send x-session-id: <conversation id>
    think_seconds: float = 0.0  # mean pause before each turn (uniform, 0 to twice this)
    duration: float | None = None  # run fresh conversations until then, counting tokens
    seed: int = 1


@dataclass(frozen=True)
class Sample:
    """One request: seconds to the first content chunk and to the end, tokens, error."""

    conversation: int
    turn: int
    started: float
    ttft: float | None
    total: float
    tokens: int
    error: str | None = None
    cut: bool = False  # cancelled at the run's deadline (not an error)
    prompt_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True)
class Summary:
    """What a run came to; throughput counts every content chunk received in `seconds`."""

    requests: int
    errors: int
    tokens: int
    seconds: float
    ttft_p50: float
    ttft_p99: float
    ttft_mean: float
    total_p50: float
    cached_share: float  # cached prompt tokens over prompt tokens, from the usage chunks
    first_error: str | None = None
    samples: list[Sample] = field(default_factory=list, repr=False)

    @property
    def throughput(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class Client(Protocol):
    """Streams one chat completion: yields each SSE `data:` payload as it arrives."""

    def stream(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class HttpError(Exception):
    """The server answered with a status other than 200."""


class RawClient:
    """HTTP/1.1 over one asyncio connection, kept alive between requests; SSE bodies only."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._conn is None:
            self._conn = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        return self._conn

    async def stream(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> AsyncIterator[bytes]:
        payload = json.dumps(body).encode()
        head = [
            f"POST {self.prefix}{path} HTTP/1.1",
            f"host: {self.host}:{self.port}",
            "content-type: application/json",
            "accept: text/event-stream",
            f"content-length: {len(payload)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        reader, writer = await self._connection()
        done = False
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            status_line = await reader.readuntil(b"\r\n")
            status = int(status_line.split(b" ", 2)[1])
            length: int | None = None
            chunked, keep_alive = False, True
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding":
                    chunked = "chunked" in value
                elif name == "connection":
                    keep_alive = value != "close"
            if status != 200:
                content = await self._body(reader, chunked, length)
                done = keep_alive
                raise HttpError(f"HTTP {status}: {content[:300].decode(errors='replace')}")
            buffer = b""
            async for piece in self._pieces(reader, chunked, length):
                buffer += piece
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    for line in event.split(b"\n"):
                        if line.startswith(b"data:"):
                            yield line[5:].strip()
            done = keep_alive
        finally:
            if not done:  # cut short or closed by the server: never reuse it
                self._conn = None
                writer.close()

    async def _pieces(
        self, reader: asyncio.StreamReader, chunked: bool, length: int | None
    ) -> AsyncIterator[bytes]:
        if not chunked:
            if length is None:
                while piece := await reader.read(65536):
                    yield piece
            elif length:
                yield await reader.readexactly(length)
            return
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]

    async def _body(self, reader: asyncio.StreamReader, chunked: bool, length: int | None) -> bytes:
        return b"".join([piece async for piece in self._pieces(reader, chunked, length)])

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


class HttpxClient:
    """The same over httpx (HTTP/1.1, no pool limits): one shared by all users, as its pool
    is meant to be."""

    def __init__(self, base_url: str) -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        timeout = httpx.Timeout(connect=10.0, read=600.0, write=30.0, pool=None)
        self.client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout)

    async def stream(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> AsyncIterator[bytes]:
        async with self.client.stream("POST", path.lstrip("/"), json=body, headers=headers) as r:
            if r.status_code != 200:
                content = await r.aread()
                raise HttpError(f"HTTP {r.status_code}: {content[:300].decode(errors='replace')}")
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    yield line[5:].strip().encode()

    async def aclose(self) -> None:
        await self.client.aclose()


CLIENTS = ("raw", "httpx")


def _clients(kind: str, base_url: str, users: int) -> list[Client]:
    """A client for each user: its own connection (raw), or one shared pool (httpx)."""
    if kind == "httpx":
        shared = HttpxClient(base_url)
        return [shared] * users
    return [RawClient(base_url) for _ in range(users)]


def _text(rng: random.Random, tokens: int) -> str:
    """About `tokens` tokens of words (four characters a token)."""
    words: list[str] = []
    size = 0
    while size < tokens * CHARS_PER_TOKEN:
        word = rng.choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


@dataclass
class _Conversation:
    """One chat: its id, messages so far, and how long its answers may be."""

    id: int
    messages: list[dict[str, str]]
    max_tokens: int
    rng: random.Random


class _Deck:
    """Hands out conversations: a fixed number, or endlessly until the deadline."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.ids: Iterator[int] = (
            itertools.count() if workload.duration else iter(range(workload.conversations))
        )
        self.shared = _text(random.Random(workload.seed), workload.system_tokens)

    def next(self) -> _Conversation | None:
        w = self.workload
        conversation_id = next(self.ids, None)
        if conversation_id is None:
            return None
        rng = random.Random(w.seed * 1_000_003 + conversation_id)
        if w.shared_system:
            system = self.shared
        else:
            system = f"You are assistant #{conversation_id}. " + _text(rng, w.system_tokens)
        long = w.long_every and conversation_id % w.long_every == w.long_every - 1
        max_tokens = w.max_tokens * (w.long_factor if long else 1)
        messages = [{"role": "system", "content": system}]
        return _Conversation(conversation_id, messages, max_tokens, rng)


async def _request(
    client: Client,
    run: _Run,
    conversation: _Conversation,
    turn: int,
) -> Sample:
    """Send one turn, streamed; its answer joins the conversation when it ends well.

    The sample is recorded however the request ends, also when the deadline cancels it
    (`cut`), so the tokens it received in time count.
    """
    w = run.workload
    body = {
        "model": w.model,
        "messages": conversation.messages,
        "max_tokens": conversation.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = dict(run.headers)
    if w.session_header:
        headers["x-session-id"] = f"conv-{w.seed}-{conversation.id}"
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    pieces: list[str] = []
    usage: dict[str, Any] = {}
    error: str | None = None
    cut = True
    try:
        async for data in client.stream("/chat/completions", body, headers):
            if data == b"[DONE]":
                continue  # the body ends next; reading on keeps the connection reusable
            chunk = json.loads(data)
            if "error" in chunk:
                error = f"error frame: {str(chunk['error'].get('message'))[:200]}"
                continue
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text and time.perf_counter() <= run.deadline:
                    if first is None:
                        first = time.perf_counter()
                    tokens += 1
                    pieces.append(text)
            if chunk.get("usage"):
                usage = chunk["usage"]
        cut = False
    except HttpError as exc:
        error, cut = str(exc), False
    except (OSError, asyncio.IncompleteReadError, ValueError, httpx.HTTPError) as exc:
        error, cut = f"{type(exc).__name__}: {exc}", False
    finally:
        details = usage.get("prompt_tokens_details") or {}
        sample = Sample(
            conversation=conversation.id,
            turn=turn,
            started=started,
            ttft=None if first is None else first - started,
            total=time.perf_counter() - started,
            tokens=tokens,
            error=error,
            cut=cut,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
        )
        run.samples.append(sample)
    if not error:
        conversation.messages.append({"role": "assistant", "content": "".join(pieces)})
    return sample


@dataclass
class _Run:
    """What every user of one run shares."""

    workload: Workload
    deck: _Deck
    headers: dict[str, str]
    deadline: float
    samples: list[Sample] = field(default_factory=list)


async def _user(client: Client, run: _Run) -> None:
    """Run conversations off the deck, turn by turn, until it is empty (or time is up)."""
    while (conversation := run.deck.next()) is not None:
        for turn in range(run.workload.turns):
            if run.workload.think_seconds:
                await asyncio.sleep(conversation.rng.uniform(0, 2 * run.workload.think_seconds))
            question = _text(conversation.rng, run.workload.question_tokens)
            conversation.messages.append({"role": "user", "content": f"Q{turn}: {question}"})
            sample = await _request(client, run, conversation, turn)
            if sample.error:
                break  # the history is broken: this conversation is over


async def run_load(
    base_url: str, workload: Workload, *, client: str = "raw", api_key: str | None = None
) -> Summary:
    """Run the workload against an OpenAI-compatible /v1 base and summarize it."""
    started = time.perf_counter()
    run = _Run(
        workload=workload,
        deck=_Deck(workload),
        headers={"authorization": f"Bearer {api_key}"} if api_key else {},
        deadline=started + workload.duration if workload.duration else float("inf"),
    )
    clients = _clients(client, base_url, workload.users)
    users = [asyncio.ensure_future(_user(c, run)) for c in clients]
    try:
        if workload.duration:
            _, pending = await asyncio.wait(users, timeout=workload.duration)
            for task in pending:
                task.cancel()  # requests in flight at the deadline: their tokens so far count
            await asyncio.gather(*pending, return_exceptions=True)
            seconds = workload.duration
        else:
            await asyncio.gather(*users)
            seconds = time.perf_counter() - started
    finally:
        for c in {id(c): c for c in clients}.values():
            await c.aclose()
    return summarize(run.samples, seconds)


def summarize(samples: Sequence[Sample], seconds: float) -> Summary:
    ttfts = sorted(s.ttft for s in samples if s.ttft is not None and not s.error)
    totals = sorted(s.total for s in samples if not s.error and not s.cut)
    errors = [s for s in samples if s.error]
    prompt = sum(s.prompt_tokens for s in samples)
    return Summary(
        requests=len(samples),
        errors=len(errors),
        tokens=sum(s.tokens for s in samples),
        seconds=seconds,
        ttft_p50=percentile(ttfts, 50) if ttfts else float("nan"),
        ttft_p99=percentile(ttfts, 99) if ttfts else float("nan"),
        ttft_mean=sum(ttfts) / len(ttfts) if ttfts else float("nan"),
        total_p50=percentile(totals, 50) if totals else float("nan"),
        cached_share=sum(s.cached_tokens for s in samples) / prompt if prompt else 0.0,
        first_error=errors[0].error if errors else None,
        samples=list(samples),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the /v1 base, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="emulated")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--client", choices=CLIENTS, default="raw")
    defaults = Workload(model="")
    for name in ("users", "conversations", "turns", "system_tokens", "question_tokens"):
        parser.add_argument(
            "--" + name.replace("_", "-"), type=int, default=getattr(defaults, name)
        )
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    parser.add_argument("--long-every", type=int, default=0)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--think-seconds", type=float, default=0.0)
    parser.add_argument("--shared-system", action="store_true")
    parser.add_argument("--no-session-header", action="store_true")
    args = parser.parse_args(argv)
    workload = Workload(
        model=args.model,
        users=args.users,
        conversations=args.conversations,
        turns=args.turns,
        system_tokens=args.system_tokens,
        question_tokens=args.question_tokens,
        max_tokens=args.max_tokens,
        long_every=args.long_every,
        duration=args.duration,
        think_seconds=args.think_seconds,
        shared_system=args.shared_system,
        session_header=not args.no_session_header,
    )
    summary = run(run_load(args.url, workload, client=args.client, api_key=args.api_key))
    print(
        f"{summary.requests} requests, {summary.errors} errors, {summary.tokens} tokens in "
        f"{summary.seconds:.1f} s: {summary.throughput:,.0f} tokens/s, TTFT p50 "
        f"{summary.ttft_p50 * 1000:.0f} ms p99 {summary.ttft_p99 * 1000:.0f} ms, "
        f"cached {summary.cached_share:.0%}"
    )
    if summary.first_error:
        print(f"first error: {summary.first_error}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
