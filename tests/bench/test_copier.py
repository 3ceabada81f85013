"""The bare relay gateway_bench measures as the floor: it passes an answer on as it came."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.emulator import EngineProfile, serve_in_thread
from chatapp.engines.supervisor import free_port

PROFILE = EngineProfile(ttft_ms=5, tokens_per_second=500)
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12}


@pytest.fixture(scope="module")
def engine_and_copier() -> Iterator[tuple[str, str]]:
    """The emulator's base URL and the relay's, in front of it."""
    port = free_port()
    with serve_in_thread(PROFILE, free_port()) as engine:
        argv = [sys.executable, "-m", "bench.copier", f"--port={port}", f"--upstream={engine}"]
        relay = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/v1"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                pytest.fail("the relay did not start")
            yield engine, url
        finally:
            relay.terminate()
            relay.wait(timeout=10)


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
