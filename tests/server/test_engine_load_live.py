"""A vLLM upstream's own load (running, waiting) on the gateway's /metrics and fleet status.

The engine emulator serves vLLM's metric names; the scripted stand-in is an OpenAI server
with no /metrics, as most remote providers are.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import openai
import pytest

from bench.emulator import EngineProfile, serve_in_thread
from chatapp.engines.supervisor import free_port
from tests.conftest import ADMIN_KEY, LiveServer, serving, wait_for
from tests.scripted_upstream import ScriptedUpstream


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedUpstream
) -> Iterator[LiveServer]:
    # Slow tokens: a stream stays in flight for seconds, while checks run every 0.2 s.
    profile = EngineProfile(model="emu", ttft_ms=5, tokens_per_second=20, output_tokens=60)
    with serve_in_thread(profile, free_port()) as engine_url:
        base = tmp_path_factory.mktemp("load")
        config = base / "models.toml"
        config.write_text(
            "[server]\nhealth_check_seconds = 0.2\n\n"
            f'[[models.emu.nodes]]\nurl = "{engine_url}"\n\n'
            f'[[models.scripted.nodes]]\nurl = "{scripted.url}"\n'
        )
        with serving(base / "home", config) as live:
            yield live


def _series(page: str, name: str) -> dict[str, float]:
    """A metric's samples on a Prometheus page, by their label text."""
    found = {}
    for line in page.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line.rpartition(" ")
            found[labels[len(name) :]] = float(value)
    return found


def _engine_requests(gateway: LiveServer) -> dict[str, float]:
    page = httpx.get(f"{gateway.url}/metrics").text
    return _series(page, "chatapp_upstream_engine_requests")


def test_a_vllm_upstreams_running_and_waiting_requests_are_gauges(gateway: LiveServer) -> None:
    def running() -> float:
        found = [v for k, v in _engine_requests(gateway).items() if 'state="running"' in k]
        return found[0] if found else -1.0

    wait_for(lambda: running() == 0.0, timeout=5)  # read from the engine at the checks, idle
    answered: list[str] = []

    def ask() -> None:
        with openai.OpenAI(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0) as sdk:
            answer = sdk.chat.completions.create(
                model="emu", messages=[{"role": "user", "content": "hi"}], max_tokens=60
            )
            answered.append(answer.choices[0].message.content or "")

    streams = [threading.Thread(target=ask) for _ in range(2)]
    for stream in streams:
        stream.start()
    wait_for(lambda: running() == 2.0, timeout=5)  # the engine's own count, both in flight
    series = _engine_requests(gateway)
    assert all('model="emu"' in labels for labels in series)  # the scripted node has none
    (waiting,) = [v for k, v in series.items() if 'state="waiting"' in k]
    assert waiting == 0.0
    for stream in streams:
        stream.join(timeout=30)
    assert len(answered) == 2 and all(answered)
    wait_for(lambda: running() == 0.0, timeout=5)


def test_fleet_status_shows_the_engine_queue_where_the_engine_says(gateway: LiveServer) -> None:
    fleet = httpx.get(
        f"{gateway.url}/admin/fleet", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ).json()["upstreams"]
    by_model = {u["model"]: u for u in fleet}
    assert by_model["emu"]["engine_waiting"] == 0.0
    assert by_model["emu"]["engine_running"] is not None
    # Not vLLM: its /metrics was asked for once, and it says nothing.
    assert by_model["scripted"]["engine_waiting"] is None
    assert by_model["scripted"]["engine_running"] is None
