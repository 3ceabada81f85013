"""A busy engine is not a dead one: the embedded llama.cpp engine, checked while it answers.

llama-cpp-python's server answers /v1/models only between generations, so every health
check made during a long answer times out. Counted as failures, two of them marked the
engine unhealthy and every other request got a 503 while it was working.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from chatapp.paths import shipped_config_path
from tests.conftest import LiveServer, serving

# About 600 prompt tokens and 400 answer tokens (greedy, it repeats until max_tokens):
# seconds of generation even on a fast box, many times the checks' half-second timeout.
LONG = "lorem ipsum dolor sit amet " * 120 + "\nRepeat the text above, word for word."


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    text = shipped_config_path().read_text()
    assert "health_check_seconds = 5 " in text
    base = tmp_path_factory.mktemp("busy")
    config = base / "models.toml"
    config.write_text(text.replace("health_check_seconds = 5 ", "health_check_seconds = 0.2 "))
    with serving(base / "home", config) as live:
        yield live


def _upstream(gateway: LiveServer) -> dict:
    headers = {"authorization": f"Bearer {gateway.key}"}
    fleet = httpx.get(f"{gateway.url}/admin/fleet", headers=headers, timeout=10).json()
    (upstream,) = fleet["upstreams"]
    return upstream


def test_requests_during_a_long_answer_wait_for_the_engine_instead_of_a_503(
    gateway: LiveServer,
) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
    streamed: list[str] = []

    def long_answer() -> None:
        stream = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": LONG}],
            max_tokens=400,
            temperature=0,
            stream=True,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                streamed.append(chunk.choices[0].delta.content)

    worker = threading.Thread(target=long_answer)
    worker.start()
    try:
        # Checks every 0.2 s, each given 0.5 s: well past two timed-out checks in a row.
        time.sleep(2.5)
        assert worker.is_alive(), "the long answer ended before the checks could time out"
        seen = _upstream(gateway)
        assert seen["outstanding"] == 1
        assert seen["healthy"] and seen["failures"] == 0, seen
        answer = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Say hi."}],
            max_tokens=5,
        )
        assert answer.choices[0].message.content
    finally:
        worker.join(timeout=120)
    assert len(streamed) > 100
    after = _upstream(gateway)
    assert after["healthy"] and after["failures"] == 0 and after["outstanding"] == 0


def test_an_engine_that_stops_answering_is_still_marked_unhealthy(gateway: LiveServer) -> None:
    """With nothing of ours in flight, a check that times out still counts."""
    (engine,) = gateway.engine_processes()
    engine.suspend()  # alive, listening, answering nothing
    try:
        deadline = time.monotonic() + 10
        while _upstream(gateway)["healthy"] and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = _upstream(gateway)
        assert not seen["healthy"]
        assert "Timeout" in (seen["last_error"] or "")
    finally:
        engine.resume()
    deadline = time.monotonic() + 10
    while not _upstream(gateway)["healthy"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _upstream(gateway)["healthy"]
