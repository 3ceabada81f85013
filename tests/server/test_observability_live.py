"""Observability through a live gateway: request ids, Prometheus metrics, JSON Lines logs."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from chatapp.paths import shipped_config_path
from tests.conftest import ADMIN_KEY, LiveServer, serving
from tests.scripted_upstream import ScriptedUpstream


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one series of a Prometheus text page (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return 0.0


def test_every_answer_carries_a_request_id(server: LiveServer) -> None:
    mine = httpx.get(f"{server.url}/healthz", headers={"x-request-id": "trace-42"})
    assert mine.headers["x-request-id"] == "trace-42"
    made = httpx.get(f"{server.url}/healthz", headers={"x-request-id": "bad id; drop"})
    assert re.fullmatch(r"req_[0-9a-f]{20}", made.headers["x-request-id"])
    refused = httpx.get(f"{server.base_url}/models")  # errors too
    assert refused.status_code == 401 and refused.headers["x-request-id"].startswith("req_")


def test_metrics_count_requests_tokens_latencies_and_live_state(server: LiveServer) -> None:
    before = httpx.get(f"{server.url}/metrics").text
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as client:
        stream = client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    page = httpx.get(f"{server.url}/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    after = page.text
    route = {"route": "/v1/chat/completions", "model": "scripted", "status": "200"}
    assert _metric(after, "chatapp_http_requests_total", **route) == (
        _metric(before, "chatapp_http_requests_total", **route) + 1
    )
    completion = {"model": "scripted", "kind": "completion"}
    assert _metric(after, "chatapp_tokens_total", **completion) == (
        _metric(before, "chatapp_tokens_total", **completion) + 3
    )
    gaps = "chatapp_inter_token_latency_seconds_count"
    assert _metric(after, gaps, model="scripted") == _metric(before, gaps, model="scripted") + 2
    ttft = "chatapp_time_to_first_token_seconds_count"
    assert _metric(after, ttft, model="scripted") >= 1
    assert "chatapp_upstream_outstanding_requests{" in after
    assert _metric(after, "chatapp_upstream_available", model="smollm2") == 1.0
    assert "chatapp_ledger_outbox_depth " in after and "chatapp_active_streams " in after
    assert "_created" not in after


def test_engine_metrics_list_only_engines_that_have_them(server: LiveServer) -> None:
    # llama-cpp-python's server has no /metrics: no scrape target, and asked for anyway,
    # the gateway says so instead of failing.
    listing = httpx.get(f"{server.url}/metrics/engines")
    assert listing.status_code == 200 and listing.text == ""
    proxied = httpx.get(f"{server.url}/metrics/engines/smollm2@local")
    assert proxied.status_code == 404 and "has no /metrics" in proxied.text
    assert httpx.get(f"{server.url}/metrics/engines/nope").status_code == 404


def test_the_text_access_log_is_one_plain_line_a_request(server: LiveServer) -> None:
    secret_words = "tangerine-umbrella-answer"
    answer = httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "x-request-id": "text-trace-9"},
        json={"model": "scripted", "messages": [{"role": "user", "content": secret_words}]},
        timeout=30,
    )
    assert answer.status_code == 200
    completion = answer.json()["usage"]["completion_tokens"]
    time.sleep(0.3)
    out = (server.home / "serve.out").read_text()
    (line,) = [line for line in out.splitlines() if "text-trace-9" in line]
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d POST /v1/chat/completions 200 ", line)
    assert "model=scripted" in line and f"+{completion} " in line
    assert line.endswith(" text-trace-9") and secret_words not in out
    # The client named it, so its usage row has an id of ours (a client's may repeat).
    assert re.search(r" usage=req_[0-9a-f]{32} ", line)
    unnamed = httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    made = unnamed.headers["x-request-id"]
    time.sleep(0.3)
    out = (server.home / "serve.out").read_text()
    (line,) = [line for line in out.splitlines() if made in line]
    assert line.endswith(f" {made}") and " usage=" not in line  # one id: the row's too


@pytest.fixture(scope="module")
def json_server(
    tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedUpstream
) -> Iterator[LiveServer]:
    config = tmp_path_factory.mktemp("jsonlogs") / "models.toml"
    config.write_text(
        f'[server]\nlog_format = "json"\n\n[[models.echo.nodes]]\nurl = "{scripted.url}"\n'
    )
    with serving(tmp_path_factory.mktemp("jsonhome"), config) as live:
        yield live


def _json_lines(path: Path) -> list[dict]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_json_logs_carry_the_request_id_and_never_the_prompt(json_server: LiveServer) -> None:
    secret_words = "purple-elephant-question"
    answer = httpx.post(
        f"{json_server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "x-request-id": "json-trace-7"},
        json={"model": "echo", "messages": [{"role": "user", "content": secret_words}]},
        timeout=30,
    )
    assert answer.status_code == 200
    time.sleep(0.3)
    lines = _json_lines(json_server.home / "serve.out")
    access = [line for line in lines if line.get("request_id") == "json-trace-7"]
    assert access, lines[-5:]
    (entry,) = [line for line in access if line["logger"] == "chatapp.access"]
    assert entry["status"] == 200 and entry["route"] == "/v1/chat/completions"
    assert entry["model"] == "echo" and entry["completion_tokens"] == 1
    assert entry["duration_ms"] > 0 and {"ts", "level", "message"} <= set(entry)
    assert re.fullmatch(r"req_[0-9a-f]{32}", entry["usage_id"])
    assert secret_words not in (json_server.home / "serve.out").read_text()


def test_a_usage_row_is_filed_under_the_id_the_gateway_gave(json_server: LiveServer) -> None:
    with openai.OpenAI(base_url=json_server.base_url, api_key=ADMIN_KEY, max_retries=0) as sdk:
        answer = sdk.chat.completions.with_raw_response.create(
            model="echo", messages=[{"role": "user", "content": "hi"}]
        )
    made = answer.headers["x-request-id"]
    assert re.fullmatch(r"req_[0-9a-f]{20}", made)
    time.sleep(0.3)
    lines = _json_lines(json_server.home / "serve.out")
    (entry,) = [line for line in lines if line.get("request_id") == made]
    assert entry["logger"] == "chatapp.access" and entry["usage_id"] == made


@pytest.fixture(scope="module")
def debug_server(
    tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedUpstream
) -> Iterator[LiveServer]:
    """The shipped config (the embedded model) at debug level, in JSON Lines, and a scripted
    model."""
    text = shipped_config_path().read_text()
    text = text.replace('log_format = "text"', 'log_format = "json"')
    text = text.replace('log_level = "info"', 'log_level = "debug"')
    text += f'\n[[models.scripted.nodes]]\nurl = "{scripted.url}"\n'
    config = tmp_path_factory.mktemp("debuglogs") / "models.toml"
    config.write_text(text)
    with serving(tmp_path_factory.mktemp("debughome"), config) as live:
        yield live


def _engine_lines(server: LiveServer, request: str) -> list[str]:
    """The messages of the engine-exchange lines one request caused."""
    time.sleep(0.3)  # the log thread writes them
    return [
        line["message"]
        for line in _json_lines(server.home / "serve.out")
        if line.get("request_id") == request and line["logger"] == "chatapp.engine"
    ]


def test_at_debug_level_the_prompt_and_answer_are_logged(debug_server: LiveServer) -> None:
    secret_words = "marmalade-lighthouse-question"
    with openai.OpenAI(base_url=debug_server.base_url, api_key=ADMIN_KEY, max_retries=0) as sdk:
        stream = sdk.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": f"Say {secret_words}."}],
            max_tokens=8,
            stream=True,
            extra_headers={"x-request-id": "debug-trace-1"},
        )
        heard = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        whole = sdk.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "script:say:plain answer here"}],
            extra_headers={"x-request-id": "debug-trace-2"},
        )
    assert heard and whole.choices[0].message.content == "plain answer here"

    sent, answered = _engine_lines(debug_server, "debug-trace-1")
    assert sent.startswith("to smollm2@local: ")
    payload = json.loads(sent.split(": ", 1)[1])
    assert payload["messages"][-1]["content"] == f"Say {secret_words}."
    assert payload["max_tokens"] == 8 and payload["stream"] is True
    head, _, text = answered.partition(": ")  # the usage and the upstream hold no ": "
    said = r"from smollm2@local, streamed, finish_reason \w+, usage (\{.+\}|none)"
    assert re.fullmatch(said, head)
    assert json.loads(text) == heard  # what the client got, word for word

    sent, answered = _engine_lines(debug_server, "debug-trace-2")
    assert sent.startswith("to scripted@") and "script:say:plain answer here" in sent
    assert answered.startswith("from scripted@") and "plain answer here" in answered


def test_at_debug_level_a_conversation_reply_is_logged_under_its_request(
    debug_server: LiveServer,
) -> None:
    with httpx.Client(
        base_url=debug_server.base_url, headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ) as http:
        made = http.post("/conversations", json={"model": "scripted", "title": "t"})
        cid = made.json()["id"]
        with http.stream(
            "POST",
            f"/conversations/{cid}/messages",
            headers={"x-request-id": "debug-trace-3"},
            json={"content": "script:say:stored reply words"},
        ) as response:
            assert response.status_code == 200
            body = response.read().decode()
    assert "message.completed" in body

    # The reply is made by a task of its own: its lines still carry the request's id.
    sent, answered = _engine_lines(debug_server, "debug-trace-3")
    assert sent.startswith("to scripted@") and "script:say:stored reply words" in sent
    assert answered.startswith("from scripted@") and ", streamed, finish_reason stop, " in answered
    assert answered.endswith(': "stored reply words"')


def test_at_debug_level_a_streamed_tool_call_is_logged_whole(debug_server: LiveServer) -> None:
    with openai.OpenAI(base_url=debug_server.base_url, api_key=ADMIN_KEY, max_retries=0) as sdk:
        stream = sdk.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": 'script:tool:lookup:{"city": "Oslo"}'}],
            stream=True,
            extra_headers={"x-request-id": "debug-trace-4"},
        )
        pieces = [c.choices[0].delta.tool_calls for c in stream if c.choices]
    assert any(pieces)  # the client got the call, in pieces

    sent, answered, called = _engine_lines(debug_server, "debug-trace-4")
    assert ", streamed, finish_reason tool_calls, " in answered
    head, _, calls = called.partition(": ")
    assert head.startswith("from scripted@") and head.endswith(", streamed, tool calls")
    (call,) = json.loads(calls)  # put back together from its deltas
    assert call["function"] == {"name": "lookup", "arguments": '{"city": "Oslo"}'}
