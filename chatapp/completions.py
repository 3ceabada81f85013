"""Send a chat completion to an upstream engine and hand back its answer or its SSE chunks."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from httpx_sse import SSEError
from httpx_sse._decoders import SSEDecoder, SSELineDecoder  # run per read: see batches()

from chatapp import exchange_log
from chatapp.engine_transport import BODY, EngineHungUp
from chatapp.errors import EngineUnavailable, InvalidRequest, RequestError, UpstreamError
from chatapp.token_count import count_usage
from chatapp.tool_calls import ToolCallBuilder
from chatapp.upstreams import ModelPool, Upstream

__all__ = ["ChatStream", "Completion", "Completions"]


def _upstream_error(status: int, body: bytes) -> RequestError:
    """Map an engine's error answer to ours, keeping its message but never its traceback."""
    message = ""
    try:
        payload = json.loads(body)
        error = payload.get("error", payload) if isinstance(payload, dict) else {}
        message = str(error.get("message") or error.get("detail") or "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")
    message = (message.strip().splitlines() or [""])[0][:500]
    if 400 <= status < 500 and status not in (401, 403, 404, 408, 429):
        return InvalidRequest(message or f"The engine rejected the request ({status}).")
    if status in (429, 503):
        return EngineUnavailable(f"The engine is busy ({status}): {message}", retry_after=2)
    return UpstreamError(f"The engine failed ({status}): {message or 'no detail'}")


@dataclass(frozen=True)
class Completion:
    """A finished non-streamed answer: the engine's bytes, its usage, and who answered."""

    content: bytes
    usage: dict[str, Any] | None
    upstream: Upstream


class Completions:
    """Forwards chat completions over one shared httpx client (connection pooling per engine)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        on_token_gap: Callable[[str, float], None] | None = None,
    ) -> None:
        self.client = client
        # Called with (model, seconds) between successive tokens of a stream (metrics).
        self.on_token_gap = on_token_gap
        # Each upstream's endpoint parsed once (httpx's URL parser is a third of a request's
        # build); keyed by base URL, which changes when a supervised engine restarts.
        self._endpoints: dict[str, httpx.URL] = {}

    def _endpoint(self, upstream: Upstream) -> httpx.URL:
        base = upstream.base_url
        url = self._endpoints.get(base)
        if url is None:
            url = self._endpoints[base] = httpx.URL(f"{base}/chat/completions")
        return url

    async def create(
        self, pool: ModelPool, body: Mapping[str, Any], *, affinity: str | None = None
    ) -> Completion:
        """A non-streamed completion: the engine's JSON answer, unchanged, and its usage.

        An upstream that cannot be reached or answers 5xx (or busy) is left for the next one
        of the pool, then for the fallback model's: nothing has reached the client yet.
        """
        attempts = _Attempts(pool, affinity)
        while True:
            target, upstream = attempts.next()
            payload = {**upstream.prepare(body, target.model.name), "stream": False}
            payload["model"] = target.model.name
            exchange_log.sent(upstream.name, payload)
            upstream.outstanding += 1
            started = time.monotonic()
            request = self.client.build_request(
                "POST",
                self._endpoint(upstream),
                json=payload,
                headers=upstream.headers(),
            )
            try:
                response = await self._send(request, stream=False)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                attempts.failed(upstream, _connection_error(target, upstream, exc))
                continue
            finally:
                upstream.outstanding -= 1
                upstream.breaker.release_probe()  # however it ended, the probe is over
            if response.status_code != 200:
                error = _answer_error(upstream, response.status_code, response.content)
                if not _retryable(response.status_code):
                    raise error
                attempts.failed(upstream, error)
                continue
            upstream.record_success(time.monotonic() - started)
            exchange_log.answered(upstream.name, response.content)
            try:
                usage = json.loads(response.content).get("usage")
            except (ValueError, AttributeError):
                raise UpstreamError(
                    "The engine answered with something that is not JSON."
                ) from None
            return Completion(
                response.content, usage if isinstance(usage, dict) else None, upstream
            )

    async def open_stream(
        self,
        pool: ModelPool,
        body: Mapping[str, Any],
        *,
        include_usage: bool,
        affinity: str | None = None,
    ) -> ChatStream:
        """Start a streamed completion; fails (before any byte reaches the client) if it cannot.

        Fails over like `create` until an upstream answers 200 with its stream. The engine is
        always asked for usage; the usage chunk is passed on only when the client asked for
        it, and counted here when the engine sends none.
        """
        attempts = _Attempts(pool, affinity)
        while True:
            target, upstream = attempts.next()
            payload = {
                **upstream.prepare(body, target.model.name),
                "model": target.model.name,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            exchange_log.sent(upstream.name, payload)
            request = self.client.build_request(
                "POST",
                self._endpoint(upstream),
                json=payload,
                headers=upstream.headers(),
            )
            upstream.outstanding += 1
            started = time.monotonic()
            try:
                response = await self._send(request, stream=True)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                upstream.outstanding -= 1
                upstream.breaker.release_probe()
                attempts.failed(upstream, _connection_error(target, upstream, exc))
                continue
            except BaseException:
                # Cancelled (the client left, Stop, shutdown) before the engine answered.
                upstream.outstanding -= 1
                upstream.breaker.release_probe()
                raise
            if response.status_code != 200:
                upstream.breaker.release_probe()
                try:
                    content = await response.aread()
                finally:
                    await response.aclose()
                    upstream.outstanding -= 1
                error = _answer_error(upstream, response.status_code, content)
                if not _retryable(response.status_code):
                    raise error
                attempts.failed(upstream, error)
                continue
            upstream.record_success(time.monotonic() - started)
            stream = ChatStream(self.client, upstream, response, body, include_usage)
            stream.on_token_gap = self.on_token_gap
            return stream

    async def _send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        """Send, once more if the engine hung up at once without a word: it was closing the
        kept-alive connection the request went out on, and never saw the request. The failed
        connection is gone from the pool; an engine that really died fails the second try
        too. A hang-up after the engine had the request a while is not sent again."""
        try:
            return await self.client.send(request, stream=stream)
        except EngineHungUp:
            return await self.client.send(request, stream=stream)


def _retryable(status: int) -> bool:
    """Another upstream may well answer: the engine failed, is busy, or is not set up for
    this model (401/403/404: a node with another key or model list; 408: it timed out)."""
    return status >= 500 or status in (401, 403, 404, 408, 429)


@dataclass
class _Attempts:
    """One request's tries: the pool's upstreams not yet tried, then its fallback model's."""

    pool: ModelPool
    affinity: str | None
    tried: set[str] = field(default_factory=set)
    last_error: RequestError | None = None

    def next(self) -> tuple[ModelPool, Upstream]:
        """The next upstream; when none is left, the last failure (or why none was there)."""
        exclude = frozenset(self.tried)
        for target in (self.pool, self.pool.fallback):
            if target is None:
                continue
            try:
                return target, target.pick(self.affinity, exclude)
            except EngineUnavailable:
                continue
        raise self.last_error or self.pool.unavailable(exclude)

    def failed(self, upstream: Upstream, error: RequestError) -> None:
        self.tried.add(upstream.name)
        self.last_error = error


def _answer_error(upstream: Upstream, status: int, content: bytes) -> RequestError:
    """Our error for an engine's non-200 answer. A 5xx, or an answer saying the node is not
    set up for this (401/403/404/408), counts against the upstream; any other 4xx means the
    upstream works and the request was wrong."""
    error = _upstream_error(status, content)
    if status >= 500 or status in (401, 403, 404, 408):
        upstream.record_failure(f"HTTP {status}: {error.message}")
    elif status != 429:
        upstream.breaker.record_success()
    return error


def _connection_error(
    pool: ModelPool, upstream: Upstream, exc: httpx.HTTPError | httpx.InvalidURL
) -> RequestError:
    """Our error for an engine that could not be reached or did not answer; counted against it."""
    upstream.record_failure(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return EngineUnavailable(
            f"The engine for '{pool.model.name}' is not answering; retry shortly.", retry_after=5
        )
    return UpstreamError(f"The engine for '{pool.model.name}' failed: {type(exc).__name__}")


class ChatStream:
    """An open upstream stream: iterate for each chunk's JSON text, then it closes itself.

    It remembers what metering needs: when the first token came, the text so far, the engine's
    usage, and how it ended (`outcome`: ok, error or cancelled).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        upstream: Upstream,
        response: httpx.Response,
        body: Mapping[str, Any],
        include_usage: bool,
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.response = response
        self.body = body
        self.include_usage = include_usage
        self.usage: dict[str, Any] | None = None
        self.first_token_at: float | None = None
        self.outcome = "cancelled"  # until the stream ends or fails
        self.finish_reason: str | None = None
        self._pieces: list[str] = []
        self._closed = False
        self.on_token_gap: Callable[[str, float], None] | None = None
        self._last_token_at: float | None = None
        # The latest chunk's data, for a usage chunk of ours. Its text, not its parse: a
        # parsed chunk kept until the next token is freed cold, at several times the cost.
        self._last: str | None = None
        self._model = str(body.get("model", ""))
        self._sse: tuple[SSELineDecoder, SSEDecoder] | None = None
        # With debug logging on, the answer's tool calls too, for its log line.
        self._logged_calls = ToolCallBuilder() if exchange_log.enabled() else None

    async def __aiter__(self) -> AsyncIterator[str]:
        """Each upstream chunk's data, as it arrives; ends with a usage chunk when asked for."""
        async for batch in self.batches():
            for data in batch:
                yield data

    async def batches(self) -> AsyncIterator[list[str]]:
        """The chunks each read of the engine's answer brought, as soon as it brought them.

        Chunks that arrived together stay together, so the gateway writes them to the client
        at once, as a byte-copying proxy would; nothing is held back waiting for more. A busy
        engine (or a gateway behind) sends several per read, and one write instead of one
        each is what keeps a loaded gateway from falling further behind.
        """
        reads = _reads(self.response)
        # An event stream is UTF-8 whatever its headers say (the SSE spec), so the bytes are
        # decoded here rather than by another of httpx's per-read layers.
        decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        try:
            _check_event_stream(self.response)
            ended = done = False
            # Between events (nothing of a line or an event held back by the decoders), a
            # read of whole `data: ...` events is split here: what the decoders would make
            # of it, at a fraction of their per-line cost. Anything else goes through them.
            between_events = True
            while not (ended or done):
                batch: list[str] = []
                try:
                    try:
                        text = decode(await reads.__anext__())
                    except StopAsyncIteration:  # no [DONE]: what the line decoder still holds
                        lines, events = self._decoders()
                        new_lines = lines.decode(decode(b"", True)) + lines.flush()
                        done = self._take_events(new_lines, events, batch)
                        ended = True
                    else:
                        data = _plain_events(text) if between_events else None
                        if data is not None:
                            done = self._take_data(data, batch)
                        else:
                            lines, events = self._decoders()
                            done = self._take_events(lines.decode(text), events, batch)
                            between_events = text.endswith("\n\n")
                except Exception:
                    if batch:  # what came before a bad chunk still goes out, as it came
                        yield batch
                    raise
                if batch:
                    yield batch
            if done:
                await _drain(reads)
        except SSEError as exc:  # an httpx error too: caught first for its own message
            self.outcome = "error"
            self.upstream.record_failure(f"not an event stream: {exc}")
            raise UpstreamError(f"The engine sent a malformed stream: {exc}") from exc
        except httpx.HTTPError as exc:
            self.outcome = "error"
            self.upstream.record_failure(f"stream cut: {type(exc).__name__}")
            raise UpstreamError(
                f"The engine stopped mid-answer ({type(exc).__name__}); the answer is incomplete."
            ) from exc
        except RequestError:
            self.outcome = "error"
            raise
        finally:
            await self.aclose()
        if self.finish_reason is None:
            # llama-cpp-python ends an interrupted answer with [DONE] and no finish_reason.
            self.outcome = "error"
            raise UpstreamError("The engine ended the answer without finishing it.")
        self.outcome = "ok"
        if self.include_usage and self.usage is None:
            last = _parse_chunk(self._last) if self._last is not None else None
            yield [json.dumps(_usage_chunk(last, self.body, await self.final_usage()))]

    async def texts(self) -> AsyncIterator[list[str]]:
        """The answer's text, as the pieces (chunk contents, in order, empty ones left out) that
        each read brought: read off the parse every chunk already gets here, for a caller that
        needs nothing else of a chunk (a conversation's reply with no tools offered), instead
        of parsing each one a second time."""
        taken = 0
        async for _ in self.batches():
            if len(self._pieces) > taken:
                pieces = [piece for piece in self._pieces[taken:] if piece]
                taken = len(self._pieces)
                if pieces:
                    yield pieces

    def _decoders(self) -> tuple[SSELineDecoder, SSEDecoder]:
        """httpx-sse's decoders, made at the first read that is not whole plain events: most
        streams never need them, and each open stream's objects are walked at every garbage
        collection."""
        if self._sse is None:
            self._sse = SSELineDecoder(), SSEDecoder()
        return self._sse

    def _take_events(self, lines: list[str], events: SSEDecoder, batch: list[str]) -> bool:
        """Add the data of the chunks these lines complete to `batch`; True at [DONE]."""
        data = []
        for line in lines:
            event = events.decode(line)
            if event is not None:
                data.append(event.data)
        return self._take_data(data, batch)

    def _take_data(self, data: list[str], batch: list[str]) -> bool:
        """Add what these events' data pass on to `batch`; True at [DONE]."""
        now = time.monotonic()
        for item in data:
            if not item:
                continue
            if item == "[DONE]":
                return True
            passed = self._take(item, now)
            if passed is not None:
                batch.append(passed)
        return False

    def _take(self, data: str, now: float) -> str | None:
        """Note what one chunk says (text, finish reason, usage); the data to pass on, if any."""
        chunk = _parse_chunk(data)
        if self._logged_calls is not None:
            self._logged_calls.add(chunk)
        if "error" in chunk:
            raise _upstream_error(502, data.encode())
        self._last = data
        choices = chunk.get("choices")
        said = False
        for choice in choices or ():
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            text = (choice.get("delta") or {}).get("content")
            if isinstance(text, str):
                self._pieces.append(text)
                said = True
        if said:
            if self.first_token_at is None:
                self.first_token_at = now
            elif self.on_token_gap is not None and self._last_token_at is not None:
                self.on_token_gap(self._model, now - self._last_token_at)
            self._last_token_at = now
        if chunk.get("usage"):
            self.usage = chunk["usage"]
            if not self.include_usage:
                if not choices:
                    return None
                return json.dumps({**chunk, "usage": None})
        return data

    async def final_usage(self) -> dict[str, Any]:
        """The engine's usage, or (it sent none, or the stream was cut) a count of our own."""
        if self.usage is not None:
            return self.usage
        counted: dict[str, Any] = await anyio.to_thread.run_sync(
            count_usage,
            self.upstream.counter,
            self.body.get("messages", []),
            "".join(self._pieces),
        )
        self.usage = counted
        return counted

    async def aclose(self) -> None:
        """Close the upstream response: the engine sees the disconnect and stops generating."""
        if not self._closed:
            self._closed = True
            self.upstream.outstanding -= 1
            exchange_log.finished(
                self.upstream.name,
                self._pieces,
                finish_reason=self.finish_reason,
                usage=self.usage,
                outcome=self.outcome,
                tool_calls=self._logged_calls.as_message_calls() if self._logged_calls else None,
            )
            # Often while a client disconnect is cancelling the request: asyncio delivers that
            # once, and the engine transport closes its connection without waiting on it.
            await self.response.aclose()


async def _drain(rest: AsyncIterator[Any]) -> None:
    """Read what follows [DONE] (the end of the chunked body): a response closed unread takes
    its connection with it, and the next request would pay a new TCP (or TLS) handshake."""
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(1.0):
            async for _ in rest:
                pass


def _reads(response: httpx.Response) -> AsyncIterator[bytes]:
    """The answer's bytes as each read brought them. Without a content encoding (engines do
    not compress event streams) straight from the transport (our engine transport's body when
    it is one): httpx's aiter_bytes, aiter_raw and its client's stream wrapper are three more
    async generators a read, and at 128 streams the steps that every suspended stream holds
    in each are most of what a young garbage collection walks."""
    stream = response.extensions.get(BODY, response.stream)
    if "content-encoding" in response.headers or not isinstance(stream, httpx.AsyncByteStream):
        return response.aiter_bytes()
    response.is_stream_consumed = True  # as aiter_raw marks it
    return stream.__aiter__()


def _plain_events(text: str) -> list[str] | None:
    """The data of a read made only of whole one-line `data: ...` events (as engines send
    them), or None for anything else (other fields, comments, CRs, an event cut off)."""
    if not text.endswith("\n\n") or "\r" in text:
        return None
    events = text[:-2].split("\n\n")
    for event in events:
        if not event.startswith("data: ") or "\n" in event:
            return None
    return [event[6:] for event in events]


def _check_event_stream(response: httpx.Response) -> None:
    """An answer that is not an event stream is refused as httpx-sse's EventSource does."""
    content_type = response.headers.get("content-type", "").partition(";")[0]
    if "text/event-stream" not in content_type:
        raise SSEError(f"expected an event stream, got content type {content_type!r}")


# `raw_decode` is json.loads without its per-call wrappers (type checks, two whitespace
# regexes): half the cost of a token's parse. An SSE data field has no leading whitespace.
_decode_json = json.JSONDecoder().raw_decode


def _parse_chunk(data: str) -> dict[str, Any]:
    try:
        chunk, end = _decode_json(data)
        if end != len(data) and data[end:].strip():
            json.loads(data)  # raises, with the position of what follows the object
    except ValueError as exc:
        raise UpstreamError(f"The engine sent a chunk that is not JSON: {data[:200]!r}") from exc
    if not isinstance(chunk, dict):
        raise UpstreamError(f"The engine sent a chunk that is not an object: {data[:200]!r}")
    return chunk


def _usage_chunk(
    last: Mapping[str, Any] | None, body: Mapping[str, Any], usage: dict[str, int]
) -> dict[str, Any]:
    """The final chunk OpenAI sends with `include_usage`: no choices, just usage."""
    last = last or {}
    return {
        "id": last.get("id", "chatcmpl-chatapp"),
        "object": "chat.completion.chunk",
        "created": last.get("created", int(time.time())),
        "model": last.get("model", body.get("model")),
        "choices": [],
        "usage": usage,
    }
