"""vLLM on the GPUs: config, the GPU plan per replica, and the command and environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatapp.config import Config, parse_config
from chatapp.engines.gpus import plan_gpus
from chatapp.engines.launch import build_launch
from chatapp.errors import ConfigError
from chatapp.upstreams import build_pools


def _config(models: dict[str, dict[str, object]]) -> Config:
    return parse_config({"models": models}, Path("models.toml"))


def _vllm(**options: object) -> dict[str, object]:
    return {"engine": "vllm", "model": "org/model", "context_window": 8192, **options}


@pytest.mark.usefixtures("vllm_on_path")
def test_named_vllm_options_become_flags_and_args_win() -> None:
    config = _config(
        {
            "big": _vllm(
                tensor_parallel_size=2,
                gpu_memory_utilization=0.85,
                tool_call_parser="hermes",
                dtype="bfloat16",
                quantization="fp8",
                args={"max-num-seqs": 64, "dtype": "float16"},
            )
        }
    )
    launch = build_launch(
        config.models["big"], host="127.0.0.1", port=8100, config_path=config.path, gpus=(2, 3)
    )
    argv = list(launch.argv)
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.85"
    assert argv[argv.index("--tool-call-parser") + 1] == "hermes"
    assert "--enable-auto-tool-choice" in argv and "--enable-prefix-caching" in argv
    assert argv[argv.index("--quantization") + 1] == "fp8"
    assert argv[argv.index("--max-num-seqs") + 1] == "64"
    assert argv.count("--dtype") == 1 and argv[argv.index("--dtype") + 1] == "float16"
    assert launch.env == {"CUDA_VISIBLE_DEVICES": "2,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert launch.health_path == "/health"


@pytest.mark.usefixtures("vllm_on_path")
def test_prefix_caching_can_be_switched_off() -> None:
    config = _config({"m": _vllm(enable_prefix_caching=False)})
    argv = build_launch(config.models["m"], host="h", port=1, config_path=config.path).argv
    assert "--no-enable-prefix-caching" in argv and "--enable-prefix-caching" not in argv


@pytest.mark.usefixtures("vllm_on_path")
def test_replicas_get_disjoint_gpu_sets_and_named_sets_come_first() -> None:
    config = _config(
        {
            "a": _vllm(replicas=2, tensor_parallel_size=2),
            "b": _vllm(gpus=[0]),
        }
    )
    plan = plan_gpus(config, [0, 1, 2, 3, 4, 5, 6, 7])
    assert plan["b"] == ((0,),)
    assert plan["a"] == ((1, 2), (3, 4))
    pools = build_pools(config, Path("/tmp/logs"), gpus=range(8))
    replicas = pools["a"].upstreams
    assert [u.name for u in replicas] == ["a@local/0", "a@local/1"]
    assert [u.gpus for u in replicas] == [(1, 2), (3, 4)]
    assert replicas[1].supervisor is not None
    launch = replicas[1].supervisor._make_launch(9000)
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "3,4"


@pytest.mark.parametrize(
    ("models", "gpus", "key", "words"),
    [
        ({"m": _vllm(gpus=[0, 9])}, [0, 1], "models.m.gpus", "GPU 9 does not exist"),
        ({"m": _vllm(replicas=3)}, [0, 1], "models.m.replicas", "need 3 GPU(s)"),
        (
            {"a": _vllm(gpus=[0, 1]), "b": _vllm(gpus=[1])},
            [0, 1],
            "models.b.gpus",
            "already given to model 'a'",
        ),
        ({"m": _vllm()}, [], "models.m.engine", "found none"),
        (
            {"a": _vllm(gpus=[0]), "b": _vllm(tensor_parallel_size=2)},
            [0, 1],
            "models.b.replicas",
            "the free GPUs are 1",
        ),
    ],
)
def test_impossible_gpu_plans_are_start_up_errors(
    models: dict[str, dict[str, object]], gpus: list[int], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        plan_gpus(_config(models), gpus)
    assert info.value.key == key and words in str(info.value)


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ({"engine": "llama.cpp", "model": "embedded", "tensor_parallel_size": 2}, "tensor_par"),
        (_vllm(gpus=[0, 0]), "gpus"),
        (_vllm(gpus="0,1"), "gpus"),
        (_vllm(gpu_memory_utilization=1.5), "gpu_memory_utilization"),
        (_vllm(replicas=0), "replicas"),
        (_vllm(fallback="m"), "fallback"),
        (_vllm(fallback="nope"), "fallback"),
        (_vllm(routing="random"), "routing"),
        (_vllm(args={"tensor-parallel-size": 2}), "args.tensor-parallel-size"),
        (_vllm(args={"port": 9000}), "args.port"),
        ({"nodes": [{"url": "http://[::1:8000/v1"}]}, "nodes[0].url"),
    ],
)
def test_bad_vllm_and_routing_settings_name_their_key(model: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config({"m": model})
    assert info.value.key is not None and info.value.key.startswith(f"models.m.{key}")
