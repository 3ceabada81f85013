"""A local vLLM engine through a real `chatapp serve`, on CPU: a stand-in `vllm` on PATH
runs the engine emulator (which speaks vLLM's /health and /metrics), and a stand-in
`nvidia-smi` reports one GPU. What the GPU-marked test cannot show on CPU: that chatapp
supervises the engine it launched as vLLM, routes to it, and reads and lists its metrics.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from tests.conftest import ADMIN_KEY, LiveServer, serving, wait_for

ROOT = Path(__file__).resolve().parents[2]

# `vllm serve MODEL --served-model-name NAME --host H --port P ...` → the emulator.
STAND_IN_VLLM = f"""#!{sys.executable}
import os, sys
args = sys.argv[1:]
assert args[0] == "serve", args
def value(flag):
    return args[args.index(flag) + 1]
os.chdir({str(ROOT)!r})
os.execv(sys.executable, [
    sys.executable, "-m", "bench.emulator", "--host", value("--host"), "--port", value("--port"),
    "--model", value("--served-model-name"), "--ttft-ms", "5", "--tokens-per-second", "40",
])
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("local-vllm")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for name, text in (("vllm", STAND_IN_VLLM), ("nvidia-smi", "#!/bin/sh\necho 0\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    config = base / "models.toml"
    config.write_text(
        "[server]\nhealth_check_seconds = 0.2\n\n"
        '[models.gpu]\nengine = "vllm"\nmodel = "org/stand-in"\ncontext_window = 4096\n'
    )
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    with serving(base / "home", config, env=env) as live:
        yield live


def test_the_vllm_engine_is_launched_on_its_gpu_and_answers(gateway: LiveServer) -> None:
    (engine,) = [
        p
        for p in psutil.Process(gateway.process.pid).children(recursive=True)
        if "bench.emulator" in " ".join(p.cmdline())
    ]
    assert engine.environ()["CUDA_VISIBLE_DEVICES"] == "0"  # the GPU nvidia-smi listed
    with openai.OpenAI(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0) as sdk:
        stream = sdk.chat.completions.create(
            model="gpu", messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True
        )
        pieces = [c.choices[0].delta.content for c in stream if c.choices]
    assert len([p for p in pieces if p]) == 5


def test_its_metrics_are_listed_proxied_and_read(gateway: LiveServer) -> None:
    listing = httpx.get(f"{gateway.url}/metrics/engines").text.split()
    assert listing == ["/metrics/engines/gpu@local"]
    proxied = httpx.get(f"{gateway.url}{listing[0]}")
    assert proxied.status_code == 200 and "vllm:num_requests_running{" in proxied.text
    # Its load, read at the health checks, on the gateway's own page.
    want = 'chatapp_upstream_engine_requests{model="gpu",state="waiting",upstream="gpu@local"} 0.0'
    wait_for(lambda: want in httpx.get(f"{gateway.url}/metrics").text, timeout=5)
