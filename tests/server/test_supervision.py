"""Engine supervision through a real `chatapp serve`: restart after a crash, no orphans on exit."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from tests.conftest import LiveServer, serving


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server of this test's own, since these tests kill things."""
    with serving(tmp_path / "home") as live:
        yield live


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _readyz(server: LiveServer) -> httpx.Response:
    return httpx.get(f"{server.url}/readyz", timeout=5)


def test_killed_engine_is_restarted_and_the_next_request_succeeds(own_server: LiveServer) -> None:
    [engine] = own_server.engine_processes()
    engine.kill()
    engine.wait(timeout=10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = _readyz(own_server).json()
        upstream = body["models"]["smollm2"]["upstreams"][0]
        if upstream["state"] == "ready" and upstream["restarts"] >= 1:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"engine was not restarted:\n{own_server.log()}")
    [restarted] = own_server.engine_processes()
    assert restarted.pid != engine.pid
    client = openai.OpenAI(base_url=own_server.base_url, api_key=own_server.key, max_retries=0)
    answer = client.chat.completions.create(
        model="smollm2", max_tokens=4, messages=[{"role": "user", "content": "Hi"}]
    )
    assert answer.choices[0].message.content
    assert "exited with code" in own_server.log()


def test_sigterm_stops_the_server_and_leaves_no_engine_behind(own_server: LiveServer) -> None:
    engines = own_server.engine_processes()
    assert engines
    own_server.process.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once it has shut down cleanly, as a shell expects.
    assert own_server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Traceback" not in own_server.log()
    # The lifespan's last line is written before the process goes, though a thread writes
    # it (cli/log_thread.py) and uvicorn ends the process by raising the signal again.
    assert own_server.log().rstrip().endswith("stopped")
    assert _wait_gone(engines, timeout=10) == []


def test_engine_dies_with_a_killed_server(own_server: LiveServer) -> None:
    """Even SIGKILL, which gives chatapp no chance to clean up, leaves no engine running."""
    engines = own_server.engine_processes()
    own_server.process.send_signal(signal.SIGKILL)
    own_server.process.wait(timeout=10)
    assert _wait_gone(engines, timeout=15) == []


def test_engine_log_is_written_in_the_data_dir(own_server: LiveServer) -> None:
    log = own_server.home / "logs" / "smollm2.log"
    assert log.is_file()
    assert "llama_cpp.server" in log.read_text(errors="replace")
