"""ChatStream.batches: the chunks each read of the engine's answer brought stay together."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from chatapp.completions import Completions
from chatapp.config import ModelConfig
from chatapp.errors import UpstreamError
from chatapp.upstreams import ModelPool, Upstream

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _chunk(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    payload = json.dumps({"id": "c", "choices": [choice]}, ensure_ascii=False)  # as vLLM sends
    return b"data: " + payload.encode() + b"\n\n"


USAGE = b'data: {"id": "c", "choices": [], "usage": {"prompt_tokens": 3}}\n\n'
DONE = b"data: [DONE]\n\n"


class _Reads(httpx.AsyncByteStream):
    """An answer body that arrives in exactly these reads."""

    def __init__(self, reads: Sequence[bytes]) -> None:
        self.reads = reads

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for read in self.reads:
            yield read


async def _batches(
    reads: Sequence[bytes],
    include_usage: bool = False,
    content_type: str = "text/event-stream",
    into: list[list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> list[list[str]]:
    """The batches the stream gives for these reads (also in `into`, kept if it raises)."""

    def answer(request: httpx.Request) -> httpx.Response:
        head = {"content-type": content_type, **(headers or {})}
        return httpx.Response(200, headers=head, stream=_Reads(reads))

    model = ModelConfig(name="m", engine=None, model="m", context_window=1024)
    pool = ModelPool(model=model, upstreams=[Upstream(name="u0", url="http://u0/v1")])
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        stream = await Completions(client).open_stream(pool, BODY, include_usage=include_usage)
        out = [] if into is None else into
        try:
            async for batch in stream.batches():
                out.append(batch)
        finally:
            assert pool.upstreams[0].outstanding == 0
    return out


def _texts(batches: list[list[str]]) -> list[list[str]]:
    return [
        [json.loads(data)["choices"][0]["delta"]["content"] for data in batch] for batch in batches
    ]


async def test_chunks_that_arrived_together_are_passed_on_together() -> None:
    reads = [_chunk("a") + _chunk("b") + _chunk("c"), _chunk("d", "stop") + USAGE + DONE]
    assert _texts(await _batches(reads)) == [["a", "b", "c"], ["d"]]


async def test_a_chunk_split_across_reads_comes_with_the_read_that_completed_it() -> None:
    whole = _chunk("a") + _chunk("b", "stop")
    cut = len(_chunk("a")) + 10
    reads = [whole[:cut], whole[cut:] + DONE]
    assert _texts(await _batches(reads)) == [["a"], ["b"]]


async def test_the_usage_chunk_is_kept_in_its_batch_only_when_asked_for() -> None:
    reads = [_chunk("a", "stop") + USAGE + DONE]
    without = await _batches(reads)
    assert len(without) == 1 and len(without[0]) == 1
    with_usage = await _batches(reads, include_usage=True)
    assert [json.loads(data).get("usage") for data in with_usage[0]] == [
        None,
        {"prompt_tokens": 3},
    ]


async def test_what_follows_done_is_read_but_not_passed_on() -> None:
    reads = [_chunk("a", "stop") + DONE + _chunk("late")]
    assert _texts(await _batches(reads)) == [["a"]]


async def test_an_answer_that_is_not_an_event_stream_is_refused() -> None:
    with pytest.raises(UpstreamError, match="malformed stream"):
        await _batches([_chunk("a", "stop") + DONE], content_type="application/json")


async def test_a_character_split_between_reads_arrives_whole() -> None:
    whole = _chunk("né", "stop")
    cut = whole.index("é".encode()) + 1  # between the two bytes of é
    reads = [whole[:cut], whole[cut:] + DONE]
    assert _texts(await _batches(reads)) == [["né"]]


async def test_chunks_before_an_engine_error_in_the_same_read_still_go_out() -> None:
    error = b'data: {"error": {"message": "out of memory"}}\n\n'
    reads = [_chunk("Hello") + _chunk(" world") + error]
    got: list[list[str]] = []
    with pytest.raises(UpstreamError, match="out of memory"):
        await _batches(reads, into=got)
    assert _texts(got) == [["Hello", " world"]]


async def test_an_answer_with_carriage_returns_only_ends_whole() -> None:
    reads = [(_chunk("a") + _chunk("b", "stop")).replace(b"\n", b"\r")]
    texts = _texts(await _batches(reads))  # the last blank line is only known at the end
    assert [text for batch in texts for text in batch] == ["a", "b"]


async def test_a_compressed_event_stream_is_decoded() -> None:
    body = gzip.compress(_chunk("a") + _chunk("b", "stop") + DONE)
    got = await _batches([body[:20], body[20:]], headers={"content-encoding": "gzip"})
    assert [text for batch in _texts(got) for text in batch] == ["a", "b"]


@pytest.mark.parametrize(
    "data", [b"not json", b'{"id": "c", "choices": []} trailing', b'["a", "list"]']
)
async def test_a_chunk_that_is_not_one_json_object_fails_the_stream(data: bytes) -> None:
    reads = [_chunk("a") + b"data: " + data + b"\n\n" + DONE]
    got: list[list[str]] = []
    with pytest.raises(UpstreamError, match="not JSON|not an object"):
        await _batches(reads, into=got)
    assert _texts(got) == [["a"]]


async def test_a_chunk_with_trailing_whitespace_is_read() -> None:
    reads = [_chunk("a", "stop")[:-2] + b"  \n\n" + DONE]
    assert _texts(await _batches(reads)) == [["a"]]


MIXED = (
    _chunk("a")
    + b": keep-alive\n\n"
    + _chunk("b")
    + b"event: message\nid: 7\n"
    + _chunk("c")
    + _chunk("d").replace(b"\n", b"\r\n")
    + b"data:"
    + _chunk("e")[5:]
    + _chunk("f").replace(b', "choices"', b',\ndata: "choices"')  # data on two lines
    + _chunk("g", finish="stop")
    + DONE
)


@pytest.mark.parametrize("cut", range(len(MIXED)))
async def test_every_way_of_cutting_a_mixed_stream_gives_the_same_chunks(cut: int) -> None:
    """Plain `data:` events (split without the decoders) among comments, other fields, CRLF,
    `data:` without its space and data on two lines (through the decoders), cut anywhere."""
    reads = [MIXED[:cut], MIXED[cut : cut + 50], MIXED[cut + 50 :]]
    batches = await _batches([read for read in reads if read])
    assert [text for batch in _texts(batches) for text in batch] == list("abcdefg")


async def _stream_texts(
    reads: Sequence[bytes], into: list[list[str]] | None = None
) -> tuple[list[list[str]], str | None]:
    """What ChatStream.texts gives for these reads (also in `into`, kept if it raises), and
    the finish reason it saw."""

    def answer(request: httpx.Request) -> httpx.Response:
        head = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=head, stream=_Reads(reads))

    model = ModelConfig(name="m", engine=None, model="m", context_window=1024)
    pool = ModelPool(model=model, upstreams=[Upstream(name="u0", url="http://u0/v1")])
    out = [] if into is None else into
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        stream = await Completions(client).open_stream(pool, BODY, include_usage=True)
        async for texts in stream.texts():
            out.append(texts)
        return out, stream.finish_reason


async def test_texts_are_each_reads_pieces_of_text_as_the_batches_carry_them() -> None:
    role = b'data: {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n'
    reads = [
        role + _chunk(""),  # no text at all: nothing to give
        _chunk("Hé") + _chunk("llo"),
        _chunk(", ") + _chunk("wörld", "stop") + USAGE + DONE,
    ]
    texts, finish = await _stream_texts(reads)
    assert texts == [["Hé", "llo"], [", ", "wörld"]]
    assert texts == [[t for t in batch if t] for batch in _texts(await _batches(reads[1:]))]
    assert finish == "stop"


async def test_texts_raise_an_engines_error_chunk_after_what_came_before() -> None:
    error = b'data: {"error": {"message": "out of memory", "code": 500}}\n\n'
    seen: list[list[str]] = []
    with pytest.raises(UpstreamError):
        await _stream_texts([_chunk("a"), error], into=seen)
    assert seen == [["a"]]
