"""The bare relay gateway_bench measures as the floor: it passes an answer on as it came."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from bench.emulator import EngineProfile, serve_in_thread
from bench.servers import Server, processes_in, start_copier
from chatapp.engines.supervisor import free_port

PROFILE = EngineProfile(ttft_ms=5, tokens_per_second=500)
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12}


@pytest.fixture(scope="module")
def engine_and_copier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The emulator's base URL and the relay's in front of it, started as gateway_bench does."""
    logs: Path = tmp_path_factory.mktemp("copier")
    with serve_in_thread(PROFILE, free_port()) as engine, processes_in(logs) as procs:
        emulator = Server("emu", engine.removesuffix("/v1"), psutil.Process())
        yield engine, start_copier(procs, emulator).base_url


def _events(base: str, body: dict[str, object]) -> tuple[int, list[str]]:
    with httpx.stream("POST", f"{base}/chat/completions", json=body) as answer:
        return answer.status_code, [line for line in answer.iter_lines() if line]


def test_a_stream_comes_through_event_for_event(engine_and_copier: tuple[str, str]) -> None:
    engine, relay = engine_and_copier
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    direct_status, direct = _events(engine, body)
    relayed_status, relayed = _events(relay, body)
    assert direct_status == relayed_status == 200
    assert len(relayed) == len(direct) == 12 + 3  # role, tokens (the last with finish), usage, DONE
    assert relayed[-1] == "data: [DONE]"


def test_an_engine_refusal_comes_through_with_its_status(
    engine_and_copier: tuple[str, str],
) -> None:
    _, relay = engine_and_copier
    status, _ = _events(relay, {"model": "m", "messages": []})
    assert status == 400
