"""The supervisor on a tiny stand-in engine process: backoff restarts and progress lines."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from chatapp.engines.launch import EngineLaunch
from chatapp.engines.supervisor import EngineState, EngineSupervisor
from chatapp.errors import ConfigError

# An "engine" that prints a line, serves /v1/models after a delay, and can be told to crash.
ENGINE = """
import http.server, sys, time
print("loading weights 1/2", flush=True)
time.sleep(float(sys.argv[2]))
print("loading weights 2/2", flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _supervisor(tmp_path: Path, delay: float, timeout: float = 30.0) -> EngineSupervisor:
    script = tmp_path / "engine.py"
    script.write_text(ENGINE)

    def launch(port: int) -> EngineLaunch:
        argv = (sys.executable, str(script), str(port), str(delay))
        return EngineLaunch(argv, health_path="/v1/models", reports_stream_usage=True)

    return EngineSupervisor(
        "fake", launch, host="127.0.0.1", log_path=tmp_path / "fake.log", start_timeout=timeout
    )


async def test_restarts_a_crashed_engine_with_a_new_process(tmp_path: Path) -> None:
    supervisor = _supervisor(tmp_path, delay=0)
    supervisor.start()
    try:
        await asyncio.wait_for(supervisor.ready_event.wait(), 20)
        first = supervisor.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await asyncio.sleep(0.3)
        assert supervisor.state is EngineState.RESTARTING
        await asyncio.wait_for(supervisor.ready_event.wait(), 20)
        assert supervisor.pid != first and supervisor.restarts == 1
    finally:
        await supervisor.stop()
    assert supervisor.state is EngineState.STOPPED
    assert "loading weights 2/2" in (tmp_path / "fake.log").read_text()


async def test_slow_engine_shows_progress_from_its_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = _supervisor(tmp_path, delay=5.5)
    caplog.set_level(logging.INFO, logger="chatapp.engines")
    supervisor.start()
    try:
        await asyncio.wait_for(supervisor.ready_event.wait(), 30)
    finally:
        await supervisor.stop()
    progress = [r.getMessage() for r in caplog.records if "still loading" in r.getMessage()]
    assert progress and "loading weights 1/2" in progress[0]


async def test_engine_that_never_gets_healthy_is_restarted(tmp_path: Path) -> None:
    supervisor = _supervisor(tmp_path, delay=60, timeout=1.0)
    supervisor.start()
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while supervisor.restarts < 1:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
        assert not supervisor.ready
    finally:
        await supervisor.stop()


PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "a").write(f"{child.pid}\\n")
time.sleep(600)
"""


async def test_children_of_a_crashed_engine_do_not_outlive_it(tmp_path: Path) -> None:
    """vLLM's engine-core processes hold GPU memory: they go when their engine dies."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    pids = tmp_path / "children"

    def launch(port: int) -> EngineLaunch:
        return EngineLaunch(
            (sys.executable, str(script), str(pids)), health_path="/", reports_stream_usage=True
        )

    supervisor = EngineSupervisor(
        "parent", launch, host="127.0.0.1", log_path=tmp_path / "p.log", start_timeout=1.0
    )
    supervisor.start()
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while supervisor.restarts < 1:  # never healthy: killed and started again
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
    finally:
        await supervisor.stop()
    children = [int(line) for line in pids.read_text().split()]
    assert children
    await asyncio.sleep(0.5)
    alive = [
        pid
        for pid in children
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == []


async def test_a_launch_that_fails_on_restart_is_retried_and_stop_is_clean(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def launch(port: int) -> EngineLaunch:
        raise ConfigError("m.toml", "models.x.model", "GGUF file not found")

    supervisor = EngineSupervisor(
        "broken", launch, host="127.0.0.1", log_path=tmp_path / "b.log", start_timeout=5.0
    )
    caplog.set_level(logging.ERROR, logger="chatapp.engines")
    supervisor.start()
    await asyncio.sleep(1.5)
    assert supervisor.restarts >= 1
    await supervisor.stop()
    assert supervisor.state is EngineState.STOPPED
    assert any("GGUF file not found" in r.getMessage() for r in caplog.records)
