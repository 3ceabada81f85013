"""Shared fixtures: a temp data dir, the scripted stand-in, and a live `chatapp serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from chatapp.engines.supervisor import free_port
from chatapp.paths import shipped_config_path
from tests.scripted_upstream import ScriptedUpstream

ADMIN_KEY = "ca-test-admin-key-0123456789abcdef"
CHATAPP = [sys.executable, "-m", "cli"]


@dataclass
class LiveServer:
    """A running `chatapp serve` child process and how to reach it."""

    process: subprocess.Popen[bytes]
    home: Path
    port: int
    key: str = ADMIN_KEY

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def engine_processes(self) -> list[psutil.Process]:
        """The llama.cpp engine children of this server."""
        return [
            p
            for p in psutil.Process(self.process.pid).children(recursive=True)
            if "llama_cpp.server" in " ".join(p.cmdline())
        ]

    def log(self) -> str:
        out = self.home / "serve.out"
        return out.read_text(errors="replace") if out.exists() else ""

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chatapp serve exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"chatapp serve not ready after {timeout}s:\n{self.log()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start_server(
    home: Path, config: Path | None = None, env: dict[str, str] | None = None
) -> LiveServer:
    """Start `chatapp serve` on a free loopback port with its own data dir (not yet ready)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {
        **os.environ,
        "CHATAPP_HOME": str(home),
        "CHATAPP_ADMIN_KEY": ADMIN_KEY,
        **(env or {}),
    }
    argv = [*CHATAPP, "serve", "--port", str(port)]
    if config is not None:
        argv += ["--config", str(config)]
    with (home / "serve.out").open("wb") as out:
        process = subprocess.Popen(
            argv,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parent.parent,
        )
    return LiveServer(process=process, home=home, port=port)


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Return once `condition()` is true; fail the test if it is not within `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextmanager
def serving(
    home: Path,
    config: Path | None = None,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> Iterator[LiveServer]:
    """A live `chatapp serve`, ready, for the block's time; stopped however the block ends."""
    live = start_server(home, config, env)
    try:
        live.wait_ready(timeout)
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(free_port()) as upstream:
        yield upstream


@pytest.fixture(scope="session")
def test_config(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedUpstream) -> Path:
    """The shipped models.toml plus a scripted model, a dead one, and small limits to test."""
    text = shipped_config_path().read_text()
    text = text.replace("max_body_bytes = 1048576", "max_body_bytes = 65536")
    text = text.replace("keepalive_seconds = 10", "keepalive_seconds = 0.25")
    text = text.replace("resume_grace_seconds = 10", "resume_grace_seconds = 1")
    text += f"""
[[models.scripted.nodes]]
url = "{scripted.url}"

[models.tiny]
context_window = 100
output_reserve = 20
summarize = true

[[models.tiny.nodes]]
url = "{scripted.url}"

[[models.dead.nodes]]
url = "http://127.0.0.1:{free_port()}/v1"

[tiers.trial]                       # tiny, for tests that switch a user onto it
requests_per_minute = 2

[tiers.moderated]                   # users on it get the "strict" moderation policy
requests_per_minute = 100000

[moderation]
tiers = {{ moderated = "strict" }}
check_every_chars = 40

[[moderation.policies.strict.rules]]
category = "secrets"
keywords = ["zebra-secret"]
patterns = ['\\bAKIA[0-9A-Z]{{16}}\\b']

[[moderation.policies.strict.rules]]
category = "spoilers"
keywords = ["rosebud"]
applies_to = "output"

[[moderation.policies.strict.rules]]
category = "mild-language"
action = "flag"
keywords = ["darn"]
applies_to = "input"

[moderation.policies.strict.classifier]
url = "{scripted.url}/moderations"
thresholds = {{ hate = 0.9 }}
"""
    path = tmp_path_factory.mktemp("config") / "models.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, test_config: Path) -> Iterator[LiveServer]:
    """One live `chatapp serve` on the real embedded model, shared by the session's tests."""
    with serving(tmp_path_factory.mktemp("home"), test_config) as live:
        yield live


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir, set as CHATAPP_HOME for code running in this process."""
    path = tmp_path / "home"
    monkeypatch.setenv("CHATAPP_HOME", str(path))
    monkeypatch.delenv("CHATAPP_ADMIN_KEY", raising=False)
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """llama-cpp-python opens /dev/null twice at import and never closes it; a test that
    loads the tokenizer in process would end the run with two ResourceWarnings."""
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()
