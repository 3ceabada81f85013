"""bench/engine_gateway.py's config for chatapp serve, and what its load sends an engine."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import httpx

from bench.engine_gateway import GIVE_UP_AFTER_RESTARTS, _restarts, gateway_config
from bench.timed_streams import Spec, run_shots
from chatapp.config import load_config
from tests.scripted_upstream import ScriptedUpstream


def _args(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "engine": "llama.cpp",
        "model": "embedded",
        "start_timeout": 900.0,
        "context_window": 2048,
        "gpu_memory_utilization": 0.5,
        "engine_arg": [],
    }
    return argparse.Namespace(**{**values, **overrides})


def test_a_vllm_config_is_one_chatapp_accepts_with_the_flags_passed_through(
    tmp_path: Path,
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        gateway_config(
            _args(
                engine="vllm", model="/models/smol", engine_arg=["enforce-eager", "max-num-seqs=64"]
            )
        )
    )
    model = load_config(path).models["bench-model"]
    assert (model.engine, model.model, model.context_window) == ("vllm", "/models/smol", 2048)
    assert model.vllm.gpu_memory_utilization == 0.5
    assert model.args == {"enforce-eager": True, "max-num-seqs": 64}


def test_a_llama_cpp_config_checks_the_engine_only_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(gateway_config(_args(engine_arg=["n_threads=1"])))
    config = load_config(path)
    assert config.server.health_check_seconds == 3600
    assert config.models["bench-model"].engine == "llama.cpp"
    assert config.models["bench-model"].args == {"n_threads": 1}


def test_engine_restarts_are_read_from_readyz() -> None:
    body = {"status": "starting", "models": {"m": {"upstreams": [{"restarts": 4}]}}}
    assert _restarts(httpx.Response(503, json=body)) == 4 >= GIVE_UP_AFTER_RESTARTS
    assert _restarts(httpx.Response(503, text="not json")) == 0


def test_the_load_sends_its_temperature_and_instruction(scripted: ScriptedUpstream) -> None:
    spec = Spec(
        model="any",
        concurrency=2,
        requests=2,
        prompt_tokens=16,
        max_tokens=4,
        temperature=0.0,
        instruction="\n\nRepeat the text above.",
    )
    before = len(scripted.recorder.requests)
    shots, _ = asyncio.run(run_shots(f"{scripted.url}", spec))
    assert [shot.error for shot in shots] == [None, None]
    sent = scripted.recorder.requests[before:]
    assert len(sent) == 2
    for body in sent:
        assert body["temperature"] == 0.0
        assert body["messages"][-1]["content"].endswith("\n\nRepeat the text above.")
        assert body["messages"][-1]["content"].startswith("Request ")
