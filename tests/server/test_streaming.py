"""Streaming behaviour through a live gateway: framing, keep-alives, failures and disconnects."""

from __future__ import annotations

import json
import threading
import time
from contextlib import AbstractContextManager
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveServer
from tests.scripted_upstream import SLOW_SECONDS, ScriptedUpstream


def _post(server: LiveServer, body: dict | None, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", 30)
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {server.key}"},
        **kwargs,
    )


def _open_stream(server: LiveServer, body: dict) -> AbstractContextManager[httpx.Response]:
    return httpx.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {server.key}"},
    )


def _stream_lines(server: LiveServer, body: dict) -> tuple[httpx.Headers, list[str]]:
    with _open_stream(server, body) as response:
        assert response.status_code == 200
        return response.headers, [line for line in response.iter_lines() if line]


def _ask(content: str, model: str = "scripted", **extra: object) -> dict:
    return {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def test_stream_headers_stop_proxies_from_buffering(server: LiveServer) -> None:
    headers, lines = _stream_lines(server, _ask("hello"))
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert lines[-1] == "data: [DONE]"


def test_every_upstream_chunk_is_passed_on_as_its_own_event(server: LiveServer) -> None:
    _, lines = _stream_lines(server, _ask("hello"))
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert [d["choices"][0]["delta"].get("content") for d in data] == ["ok", " ok", " ok", None]


def test_usage_chunk_and_cached_tokens_pass_through_when_asked(server: LiveServer) -> None:
    _, lines = _stream_lines(server, _ask("hello", stream_options={"include_usage": True}))
    last = json.loads(lines[-2][6:])
    assert last["choices"] == []
    assert last["usage"]["prompt_tokens_details"]["cached_tokens"] == 1


def test_gateway_always_asks_the_engine_for_usage(
    server: LiveServer, scripted: ScriptedUpstream
) -> None:
    _stream_lines(server, _ask("hello"))
    assert scripted.recorder.requests[-1]["stream_options"] == {"include_usage": True}


def test_keepalive_comments_flow_while_the_engine_is_busy(server: LiveServer) -> None:
    started = time.monotonic()
    _, lines = _stream_lines(server, _ask("script:slow"))
    assert time.monotonic() - started >= SLOW_SECONDS
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    keepalives = [line for line in lines[:first_data] if line.startswith(":")]
    assert len(keepalives) >= 2
    assert lines[-1] == "data: [DONE]"


def test_engine_failing_mid_stream_ends_with_an_error_frame_and_done(server: LiveServer) -> None:
    _, lines = _stream_lines(server, _ask("script:error"))
    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2][6:])["error"]
    assert error["type"] == "server_error"
    assert "incomplete" in error["message"]
    assert any('"ok"' in line for line in lines[:-2])


def test_sdk_raises_on_the_error_frame(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=server.key, max_retries=0)
    stream = client.chat.completions.create(
        model="scripted", stream=True, messages=[{"role": "user", "content": "script:error"}]
    )
    with pytest.raises(openai.APIError):
        list(stream)


def test_client_disconnect_aborts_the_upstream_request(
    server: LiveServer, scripted: ScriptedUpstream
) -> None:
    before = len(scripted.recorder.disconnects)
    with _open_stream(server, _ask("script:endless")) as response:
        lines = response.iter_lines()
        ticks = [next(lines) for _ in range(6)]
        assert any("tick" in line for line in ticks)
    deadline = time.monotonic() + 5
    while len(scripted.recorder.disconnects) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(scripted.recorder.disconnects) > before


def test_client_disconnect_stops_the_real_engine(server: LiveServer) -> None:
    """llama.cpp serves one request at a time: if the abandoned answer went on, this would wait.

    The bound is relative to the engine's own measured speed, so a loaded machine does not
    make it flaky: the follow-up must finish in a third of the time the rest of the abandoned
    answer would have taken.
    """
    max_tokens = 1500
    long = _ask(
        "Write a very long essay about the history of every country in the world.",
        model="smollm2",
        max_tokens=max_tokens,
        temperature=0,
    )
    stamps = []
    with _open_stream(server, long) as response:
        lines = (line for line in response.iter_lines() if line.startswith("data:"))
        for _ in range(12):
            next(lines)
            stamps.append(time.monotonic())
    per_token = (stamps[-1] - stamps[2]) / 9
    rest_of_answer = (max_tokens - 12) * per_token
    started = time.monotonic()
    answer = _post(
        server,
        {"model": "smollm2", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert answer.status_code == 200
    assert time.monotonic() - started < rest_of_answer / 3


def test_non_streamed_request_through_a_node(server: LiveServer) -> None:
    response = _post(server, {"model": "scripted", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "ok"


def test_engine_error_is_502_without_its_traceback(server: LiveServer) -> None:
    for stream in (False, True):
        response = _post(server, _ask("script:reject", stream=stream))
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["message"].endswith("boom")
        assert "/secret/path.py" not in response.text


def test_unreachable_engine_is_503_with_retry_after(server: LiveServer) -> None:
    for stream in (False, True):
        response = _post(server, _ask("hi", model="dead", stream=stream))
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["error"]["code"] == "engine_unavailable"


def test_invalid_json_is_400(server: LiveServer) -> None:
    response = _post(server, None, content=b'{"model": "smollm2", "messages": [')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_oversized_body_is_413(server: LiveServer) -> None:
    big = _ask("x" * 70_000, model="smollm2")
    response = _post(server, big)
    assert response.status_code == 413
    assert "max_body_bytes" in response.json()["error"]["message"]


def test_missing_key_is_401_in_openai_shape(server: LiveServer) -> None:
    response = httpx.post(f"{server.base_url}/chat/completions", json=_ask("hi"), timeout=10)
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_unknown_route_is_404_in_openai_shape(server: LiveServer) -> None:
    response = httpx.get(f"{server.base_url}/nothing-here", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_get_of_chat_completions_is_405_in_openai_shape(server: LiveServer) -> None:
    response = httpx.get(f"{server.base_url}/chat/completions", timeout=10)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("script", ["script:garbage", "script:cut"])
def test_a_broken_or_cut_answer_ends_with_an_error_frame_and_done(
    server: LiveServer, script: str
) -> None:
    _, lines = _stream_lines(server, _ask(script))
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][6:])["error"]["type"] == "server_error"


def test_client_leaving_a_non_streamed_request_aborts_the_upstream(
    server: LiveServer, scripted: ScriptedUpstream
) -> None:
    before = len(scripted.recorder.disconnects)
    with pytest.raises(httpx.ReadTimeout):
        _post(server, _ask("script:slow", stream=False), timeout=0.3)
    deadline = time.monotonic() + 5
    while len(scripted.recorder.disconnects) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(scripted.recorder.disconnects) > before


def test_concurrent_streams_on_the_real_engine_all_finish(server: LiveServer) -> None:
    """llama.cpp's server cuts a running answer short when another request arrives, unless
    told not to: every concurrent answer must come back whole, with a finish_reason."""
    client = openai.OpenAI(base_url=server.base_url, api_key=server.key, max_retries=0)
    results: list[tuple[str, str | None]] = []

    def ask() -> None:
        text, reason = "", None
        for chunk in client.chat.completions.create(
            model="smollm2",
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Name three colours."}],
        ):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                reason = chunk.choices[0].finish_reason or reason
        results.append((text, reason))

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 3
    assert all(text and reason in ("stop", "length") for text, reason in results)
