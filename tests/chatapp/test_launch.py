"""Engine command lines: llama.cpp for the embedded model, vLLM for GPU models."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chatapp.config import ModelConfig, VllmOptions
from chatapp.engines.launch import build_launch, vllm_command
from chatapp.errors import ConfigError
from chatapp.paths import embedded_model_path


def _model(**kwargs: object) -> ModelConfig:
    defaults: dict = {
        "name": "m",
        "engine": "llama.cpp",
        "model": "embedded",
        "context_window": 1024,
    }
    return ModelConfig(**{**defaults, **kwargs})


def test_embedded_gguf_is_found_in_the_installed_wheel() -> None:
    path = embedded_model_path()
    assert path is not None and path.suffix == ".gguf"
    assert path.stat().st_size > 50_000_000


def test_llama_cpp_command_serves_the_model_under_its_name() -> None:
    launch = build_launch(
        _model(args={"n_threads": 2}), host="127.0.0.1", port=9999, config_path=Path("m.toml")
    )
    argv = list(launch.argv)
    assert argv[1:3] == ["-m", "llama_cpp.server"]
    assert argv[argv.index("--model_alias") + 1] == "m"
    assert argv[argv.index("--model") + 1] == str(embedded_model_path())
    assert argv[argv.index("--n_ctx") + 1] == "1024"
    assert argv[argv.index("--n_threads") + 1] == "2"
    assert argv[argv.index("--port") + 1] == "9999"
    assert not launch.reports_stream_usage


def test_missing_gguf_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_launch(
            _model(model=str(tmp_path / "nope.gguf")), host="h", port=1, config_path=Path("m.toml")
        )
    assert info.value.key == "models.m.model"


@pytest.mark.usefixtures("vllm_on_path")
def test_vllm_command_passes_engine_args_through() -> None:
    model = _model(
        engine="vllm",
        model="org/model",
        args={"tensor_parallel_size": 2, "enforce-eager": True, "enable-prefix-caching": False},
    )
    argv = list(build_launch(model, host="127.0.0.1", port=8100, config_path=Path("m.toml")).argv)
    assert argv[1:3] == ["serve", "org/model"]
    assert argv[argv.index("--served-model-name") + 1] == "m"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[argv.index("--max-model-len") + 1] == "1024"
    assert "--enforce-eager" in argv
    assert "--no-enable-prefix-caching" in argv
    assert "--enable-prefix-caching" not in argv


def test_vllm_installed_beside_python_comes_before_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vllm_on_path: Path
) -> None:
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    beside = venv_bin / "vllm"
    beside.write_text("#!/bin/sh\nexit 1\n")
    beside.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    model = _model(engine="vllm", model="org/model")
    launch = build_launch(model, host="127.0.0.1", port=8100, config_path=Path("m.toml"))
    assert launch.argv[0] == str(beside)
    beside.chmod(0o644)  # not a program: PATH's is used
    launch = build_launch(model, host="127.0.0.1", port=8100, config_path=Path("m.toml"))
    assert launch.argv[0] == str(vllm_on_path)


def test_missing_vllm_is_a_config_error_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ConfigError) as info:
        build_launch(
            _model(engine="vllm", model="org/model"), host="h", port=1, config_path=Path("m.toml")
        )
    assert info.value.key == "models.m.engine"
    assert "pip install 'chatapp[gpu]'" in str(info.value)


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None or vllm_command() is None:
        return False
    return subprocess.run(["nvidia-smi"], capture_output=True).returncode == 0


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu(), reason="needs an NVIDIA GPU and vllm installed")
def test_vllm_knows_every_flag_chatapp_passes() -> None:
    options = VllmOptions(
        gpu_memory_utilization=0.5,
        enable_prefix_caching=False,
        tool_call_parser="hermes",
        dtype="bfloat16",
        quantization="fp8",
    )
    model = _model(engine="vllm", model="org/model", vllm=options, args={"enforce_eager": True})
    argv = list(build_launch(model, host="127.0.0.1", port=8100, config_path=Path("m.toml")).argv)
    # vLLM 0.25's `serve --help` lists only the option groups; `--help=all` lists every flag.
    result = subprocess.run([*argv[:2], "--help=all"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    listed = set(re.findall(r"--[a-z0-9-]+", result.stdout))
    flags = [arg for arg in argv[3:] if arg.startswith("--")]
    assert len(flags) == 12
    assert [flag for flag in flags if flag not in listed] == []
