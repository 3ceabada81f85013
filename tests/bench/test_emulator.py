"""The benchmark engine emulator: vLLM's stream shapes, usage, a working prefix cache, metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.emulator import EngineProfile, serve_in_thread
from chatapp.engines.supervisor import free_port
from chatapp.health import engine_load

PROFILE = EngineProfile(
    ttft_ms=5, prefill_ms_per_1k=200, tokens_per_second=500, prefix_cache_blocks=1000
)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with serve_in_thread(PROFILE, free_port()) as url, httpx.Client(base_url=url) as client:
        yield client


def stream(
    client: httpx.Client, messages: list[dict[str, str]], **extra: Any
) -> tuple[list[dict[str, Any]], float]:
    """Every chunk of a streamed answer, and the seconds to the first content."""
    body = {"model": "m", "messages": messages, "stream": True, **extra}
    chunks: list[dict[str, Any]] = []
    first = None
    started = time.perf_counter()
    with client.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
        for line in lines:
            assert line.startswith("data: ")
            if line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if first is None and any(c["delta"].get("content") for c in chunk["choices"]):
                first = time.perf_counter() - started
            chunks.append(chunk)
    assert lines[-1] == "data: [DONE]"
    assert first is not None
    return chunks, first


def test_a_stream_has_one_chunk_a_token_then_usage(client: httpx.Client) -> None:
    messages = [{"role": "user", "content": "hello there"}]
    chunks, _ = stream(client, messages, max_tokens=7, stream_options={"include_usage": True})
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) == 7
    assert content[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["completion_tokens"] == 7
    assert usage["prompt_tokens"] == usage["total_tokens"] - 7 > 0
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}


def test_without_max_tokens_the_default_length_stops(client: httpx.Client) -> None:
    chunks, _ = stream(client, [{"role": "user", "content": "hi"}])
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) == PROFILE.output_tokens
    assert content[-1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in chunks[-1]


def test_a_repeated_prompt_hits_the_prefix_cache_and_starts_sooner(client: httpx.Client) -> None:
    system = {"role": "system", "content": "a long shared document " * 180}  # ~1,000 tokens
    question = [system, {"role": "user", "content": "first question"}]
    options = {"max_tokens": 2, "stream_options": {"include_usage": True}}
    cold_chunks, cold = stream(client, question, **options)
    warm_chunks, warm = stream(
        client, [*question[:1], {"role": "user", "content": "next"}], **options
    )
    assert cold_chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = warm_chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 1000 and cached % 16 == 0
    assert cold > 0.2 and warm < cold - 0.1

    answer = client.post("/chat/completions", json={"model": "m", "messages": question})
    assert answer.json()["usage"]["prompt_tokens_details"]["cached_tokens"] >= 1000
    assert answer.json()["choices"][0]["message"]["content"] == "tok " * PROFILE.output_tokens


def test_the_next_turn_finds_the_last_answer_cached(client: httpx.Client) -> None:
    """vLLM caches the blocks an answer filled: a follow-up that sends the answer back only
    prefills what is new after it."""
    turn = [
        {"role": "system", "content": "another document entirely " * 40},
        {"role": "user", "content": "tell me"},
    ]
    options = {"max_tokens": 200, "stream_options": {"include_usage": True}}
    chunks, _ = stream(client, turn, **options)
    answer = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    follow_up = [*turn, {"role": "assistant", "content": answer}, {"role": "user", "content": "?"}]
    chunks, _ = stream(client, follow_up, **options)
    usage = chunks[-1]["usage"]
    prompt, cached = usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]
    # Everything up to the answer's last full block is cached: at most a block and the new
    # question (a few tokens) are computed again.
    assert prompt - cached <= 16 + 8
    assert cached > 200


def test_metrics_expose_vllm_prefix_cache_counters(client: httpx.Client) -> None:
    stream(client, [{"role": "user", "content": "warm " * 100}], max_tokens=1)
    stream(client, [{"role": "user", "content": "warm " * 100}], max_tokens=1)
    root = str(client.base_url).removesuffix("/v1/")
    assert httpx.get(root + "/health").status_code == 200
    metrics = httpx.get(root + "/metrics").text
    assert "vllm:prefix_cache_queries_total{" in metrics
    assert "vllm:prefix_cache_hits_total{" in metrics
    rate = engine_load(metrics).prefix_cache_hit_rate
    assert rate is not None and 0 < rate < 1
    assert client.get("/models").json()["data"][0]["object"] == "model"
