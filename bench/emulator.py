"""An OpenAI-compatible engine emulator for benchmarks and tests, timed like a vLLM server.

It answers /v1/chat/completions (streamed with vLLM's chunk shapes, or not), /v1/models,
/health and /metrics, with no model behind it: the first token comes after a base delay plus
a prefill delay for the prompt tokens its prefix cache does not hold, then "tok " tokens at a
per-stream rate that an aggregate decode capacity shares out, so an overloaded engine is
slower. The prefix cache is vLLM's idea in miniature: the prompt (about four characters a
token) is cut into 16-token blocks, each block's hash includes the previous one, and an LRU
of block hashes says how many leading blocks are cached; a prompt's blocks join it once its
prefill is done (as in vLLM, a request arriving meanwhile can already share them), and the
blocks its answer filled join it when the answer ends (vLLM caches decoded blocks too, so the
next turn of a conversation, which sends that answer back, finds it cached). Prefill
delays are independent of load; decoding is what a busy engine slows. Any model name is
accepted.

`python -m bench.emulator --port 8100 --prefix-cache-blocks 20000` runs one; `serve_in_thread`
runs one inside a test. `POST /reset` empties the cache and counters (for benchmarks that
need a cold engine without restarting it). Not an engine anyone picks to chat with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["Engine", "EngineProfile", "PrefixCache", "create_app", "main", "serve_in_thread"]

BLOCK_TOKENS = 16
CHARS_PER_TOKEN = 4
TOKEN_TEXT = "tok "  # one emulated token, four characters, so a 4-chars-a-token count agrees
# uvloop's timers tick in whole milliseconds: a token due within this is sent now, or the
# loop would wake early, find nothing due and sleep again, dozens of times a token.
TIMER_SLACK = 0.002


@dataclass(frozen=True)
class EngineProfile:
    """How the emulated engine behaves; `capacity` 0 means decoding is never shared out."""

    model: str = "emulated"
    ttft_ms: float = 20.0
    prefill_ms_per_1k: float = 0.0
    tokens_per_second: float = 50.0
    capacity: float = 0.0
    output_tokens: int = 64
    prefix_cache_blocks: int = 0


def prompt_text(messages: Sequence[Any]) -> str:
    """The prompt as one string: each message's role and text, as a template would lay it out."""
    parts = []
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, list):  # OpenAI content parts: only the text counts
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        parts.append(f"{message.get('role', '')}\n{content or ''}\n")
    return "".join(parts)


def block_hashes(text: str) -> list[int]:
    """The hash chain of the prompt's full blocks (a partial last block is never cached)."""
    size = BLOCK_TOKENS * CHARS_PER_TOKEN
    hashes = []
    previous = 0
    for start in range(0, len(text) - size + 1, size):
        previous = hash((previous, text[start : start + size]))
        hashes.append(previous)
    return hashes


class PrefixCache:
    """An LRU of block hashes; a prompt's cached prefix is its leading blocks found here."""

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity = capacity_blocks
        self.blocks: OrderedDict[int, None] = OrderedDict()

    def lookup(self, hashes: Sequence[int]) -> int:
        """How many leading blocks are cached; those are touched, as a hit keeps them warm."""
        found = 0
        for h in hashes:
            if h not in self.blocks:
                break
            self.blocks.move_to_end(h)
            found += 1
        return found

    def insert(self, hashes: Sequence[int]) -> None:
        """Remember a computed prompt's blocks, evicting the least recently used."""
        if self.capacity <= 0:
            return
        for h in hashes:
            self.blocks[h] = None
            self.blocks.move_to_end(h)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)

    def clear(self) -> None:
        self.blocks.clear()


@dataclass(frozen=True)
class Admission:
    """A request as the engine sees it: its size, what the cache held, its delay to token 1."""

    prompt_tokens: int
    cached_tokens: int
    hashes: list[int]
    ttft: float
    text: str  # the prompt as laid out, which the answer's blocks continue


class Engine:
    """The emulated engine's state: its prefix cache, streams decoding now, and counters."""

    def __init__(self, profile: EngineProfile) -> None:
        self.profile = profile
        self.cache = PrefixCache(profile.prefix_cache_blocks)
        self.decoding = 0
        self.running = 0
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.requests = 0
        self.peers: set[tuple[str, int]] = set()  # client addresses: one per connection
        self._ids = itertools.count(1)

    def admit(self, messages: Sequence[Any]) -> Admission:
        """Count the prompt, look its prefix up, and say how long its prefill takes."""
        text = prompt_text(messages)
        prompt_tokens = max(1, math.ceil(len(text) / CHARS_PER_TOKEN))
        hashes = block_hashes(text) if self.cache.capacity > 0 else []
        # As vLLM: the last prompt token is always computed, so a full hit drops a block.
        hashes = hashes[: (prompt_tokens - 1) // BLOCK_TOKENS]
        cached = self.cache.lookup(hashes) * BLOCK_TOKENS
        self.requests += 1
        self.prefix_queries += prompt_tokens
        self.prefix_hits += cached
        self.prompt_tokens += prompt_tokens
        profile = self.profile
        ttft_ms = profile.ttft_ms + profile.prefill_ms_per_1k * (prompt_tokens - cached) / 1000
        return Admission(prompt_tokens, cached, hashes, ttft_ms / 1000, text)

    def rate(self) -> float:
        """Tokens a second for one stream now: its own rate, or its share of the capacity."""
        capacity = self.profile.capacity
        per_stream = self.profile.tokens_per_second
        if capacity <= 0:
            return per_stream
        return min(per_stream, capacity / max(1, self.decoding))

    async def generate(self, admission: Admission, n: int) -> AsyncIterator[int]:
        """Wait out the prefill, then yield how many tokens are due, as they fall due.

        Tokens that fell due while the event loop was busy come out together (as vLLM merges
        the deltas a slow reader has not taken), so a late loop never slows the rate.
        """
        loop = asyncio.get_running_loop()
        self.running += 1
        try:
            await asyncio.sleep(admission.ttft)
            self.cache.insert(admission.hashes)  # computed now: later prompts may share it
            self.decoding += 1
            try:
                due = loop.time()
                sent = 0
                while sent < n:
                    now = loop.time()
                    ready = 0
                    while sent + ready < n and due <= now + TIMER_SLACK:
                        ready += 1
                        due += 1 / self.rate()
                    if ready:
                        sent += ready
                        self.generation_tokens += ready
                        yield ready
                    else:
                        await asyncio.sleep(due - now)
                self.remember_answer(admission, n)
            finally:
                self.decoding -= 1
        finally:
            self.running -= 1

    def remember_answer(self, admission: Admission, n: int) -> None:
        """Cache the full blocks of prompt and answer, as they will come back next turn: the
        answer after the assistant's turn opening, as a chat template lays it out."""
        if self.cache.capacity > 0:
            answer = f"assistant\n{TOKEN_TEXT * n}"
            self.cache.insert(block_hashes(admission.text + answer))

    def completion_id(self) -> str:
        return f"chatcmpl-emu-{next(self._ids)}"

    def reset(self) -> None:
        """A cold engine again: empty cache, zero counters (streams in flight go on)."""
        self.cache.clear()
        self.prefix_queries = self.prefix_hits = self.prompt_tokens = 0
        self.generation_tokens = self.requests = 0
        self.peers.clear()

    def metrics(self) -> str:
        """Prometheus text with vLLM's metric names, the prefix-cache counters among them."""
        label = f'{{model_name="{self.profile.model}"}}'
        rows = [
            ("vllm:num_requests_running", "gauge", self.running),
            ("vllm:num_requests_waiting", "gauge", 0),  # no queue: every request runs at once
            ("vllm:prefix_cache_queries_total", "counter", self.prefix_queries),
            ("vllm:prefix_cache_hits_total", "counter", self.prefix_hits),
            ("vllm:prompt_tokens_total", "counter", self.prompt_tokens),
            ("vllm:generation_tokens_total", "counter", self.generation_tokens),
            ("vllm:request_success_total", "counter", self.requests),
            # Not vLLM's: how many connections requests came on (is the client pooling?).
            ("emulator:connections_total", "counter", len(self.peers)),
        ]
        lines = []
        for name, kind, value in rows:
            lines += [f"# TYPE {name} {kind}", f"{name}{label} {float(value)}"]
        return "\n".join(lines) + "\n"


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    body = {
        "error": {"message": message, "type": "BadRequestError", "param": param, "code": status}
    }
    return JSONResponse(body, status_code=status)


def _usage(admission: Admission, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": admission.prompt_tokens,
        "total_tokens": admission.prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": {"cached_tokens": admission.cached_tokens},
    }


def _frame(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def _stream(
    engine: Engine, admission: Admission, n: int, finish: str, include_usage: bool, model: str
) -> AsyncIterator[bytes]:
    """vLLM's stream: a role chunk, one chunk per token (the last with its finish reason),
    then a usage chunk when asked for, then [DONE]."""
    head: dict[str, Any] = {
        "id": engine.completion_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _frame({**head, "choices": [choice]})

    token = chunk({"content": TOKEN_TEXT})  # every token's chunk is the same bytes
    sent = 0
    async for ready in engine.generate(admission, n):
        out = chunk({"role": "assistant", "content": ""}) if sent == 0 else b""
        sent += ready
        if sent < n:
            yield out + token * ready
        else:
            yield out + token * (ready - 1) + chunk({"content": TOKEN_TEXT}, finish)
    if include_usage:
        yield _frame({**head, "choices": [], "usage": _usage(admission, n)})
    yield b"data: [DONE]\n\n"


def create_app(profile: EngineProfile) -> Starlette:
    """The emulator's ASGI app over one Engine (kept on app.state.engine)."""
    engine = Engine(profile)

    async def chat_completions(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "The body is not valid JSON.")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return _error(400, "messages must be a non-empty list", "messages")
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            return _error(400, "max_tokens must be a positive integer", "max_tokens")
        n = limit or profile.output_tokens
        finish = "length" if limit else "stop"
        model = str(body.get("model") or profile.model)
        if request.client is not None:
            engine.peers.add((request.client.host, request.client.port))
        admission = engine.admit(messages)
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
            frames = _stream(engine, admission, n, finish, include_usage, model)
            return StreamingResponse(
                frames, media_type="text/event-stream", headers={"cache-control": "no-cache"}
            )
        async for _ in engine.generate(admission, n):
            pass
        message = {"role": "assistant", "content": TOKEN_TEXT * n, "tool_calls": []}
        return JSONResponse(
            {
                "id": engine.completion_id(),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": _usage(admission, n),
            }
        )

    async def models(request: Request) -> JSONResponse:
        card = {"id": profile.model, "object": "model", "created": 0, "owned_by": "emulator"}
        return JSONResponse({"object": "list", "data": [card]})

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(engine.metrics(), media_type="text/plain; version=0.0.4")

    async def reset(request: Request) -> Response:
        engine.reset()
        return Response(status_code=204)

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models),
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/reset", reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.engine = engine
    return app


@contextlib.contextmanager
def serve_in_thread(profile: EngineProfile, port: int, host: str = "127.0.0.1") -> Iterator[str]:
    """Run an emulator on a thread of this process; yields its /v1 base URL."""
    config = uvicorn.Config(
        create_app(profile), host=host, port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"emulator:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the emulator on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, EngineProfile]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--model", default="emulated", help="the id /v1/models lists")
    parser.add_argument("--ttft-ms", type=float, default=20.0, help="base time to first token")
    parser.add_argument(
        "--prefill-ms-per-1k", type=float, default=0.0, help="more TTFT per 1,000 uncached tokens"
    )
    parser.add_argument("--tokens-per-second", type=float, default=50.0, help="per stream")
    parser.add_argument(
        "--capacity", type=float, default=0.0, help="aggregate decode tokens/s (0: unlimited)"
    )
    parser.add_argument(
        "--output-tokens", type=int, default=64, help="answer length when max_tokens is absent"
    )
    parser.add_argument(
        "--prefix-cache-blocks", type=int, default=0, help="LRU size in 16-token blocks (0: off)"
    )
    args = parser.parse_args(argv)
    profile = EngineProfile(
        model=args.model,
        ttft_ms=args.ttft_ms,
        prefill_ms_per_1k=args.prefill_ms_per_1k,
        tokens_per_second=args.tokens_per_second,
        capacity=args.capacity,
        output_tokens=args.output_tokens,
        prefix_cache_blocks=args.prefix_cache_blocks,
    )
    return args, profile


def main(argv: Sequence[str] | None = None) -> int:
    args, profile = parse_args(argv)
    uvicorn.run(
        create_app(profile), host=args.host, port=args.port, log_level="warning", access_log=False
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
