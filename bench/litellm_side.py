"""LiteLLM's proxy as the peer the gateway benchmark measures chatapp against.

It lives in its own virtual environment (bench/.litellm-venv, made on first use with
`python -m venv` and `pip install 'litellm[proxy]'`, reused after) so its dependencies never
meet chatapp's. The proxy is pointed at the same emulator as chatapp, with a master key (it
refuses to start without one), its cost map read from the package (no network at start), and
its repeated-chunk guard raised: the emulator's every token is the same text, which LiteLLM
would otherwise cut off after 100 chunks as a model stuck in a loop.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from chatapp.engines.supervisor import free_port

__all__ = ["VENV", "LiteLLM", "ensure_venv", "start_litellm", "version"]

VENV = Path(__file__).resolve().parent / ".litellm-venv"


def _binary(venv: Path) -> Path:
    return venv / "bin" / "litellm"


def ensure_venv(venv: Path = VENV, *, log: Path) -> str | None:
    """Make the venv with LiteLLM's proxy unless it is there; None, or why it could not."""
    if _binary(venv).exists():
        return None
    with log.open("ab") as out:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "litellm[proxy]"],
        ]
        for argv in steps:
            try:
                done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"{' '.join(argv[:3])}: {exc}"
            if done.returncode != 0:
                return f"`{' '.join(argv[-3:])}` failed ({done.returncode}), see {log}"
    return None if _binary(venv).exists() else f"no {_binary(venv)} after pip install"


def version(venv: Path = VENV) -> str:
    """The installed LiteLLM version, read from the venv's package metadata."""
    python = str(venv / "bin" / "python")
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    try:
        return subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


@dataclass
class LiteLLM:
    """A LiteLLM proxy process: its root URL (without /v1), the key it wants, its log."""

    root: str
    key: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.popen.pid)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until /health/liveliness answers; RuntimeError with the log's tail if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen.poll() is None:
            try:
                if httpx.get(f"{self.root}/health/liveliness", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"litellm did not start: {' / '.join(tail) or 'no output'}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_litellm(models: dict[str, str], tmp: Path, *, venv: Path = VENV) -> LiteLLM:
    """Start `litellm --config` routing each model name to its OpenAI-compatible /v1 base
    (not yet ready: call wait_ready)."""
    lines = ["model_list:"]
    for name, api_base in models.items():
        lines += [
            f"  - model_name: {name}",
            "    litellm_params:",
            f"      model: openai/{name}",
            f"      api_base: {api_base}",
            "      api_key: x",
        ]
    lines += ["litellm_settings:", "  telemetry: false"]
    config = tmp / "litellm.yaml"
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    key = "sk-" + secrets.token_hex(32)
    env = {
        **os.environ,
        "LITELLM_MASTER_KEY": key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "REPEATED_STREAMING_CHUNK_LIMIT": "100000000",
    }
    argv = [str(_binary(venv)), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    log = tmp / "litellm.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    return LiteLLM(f"http://127.0.0.1:{port}", key, popen, log)
