"""Which GPUs each vLLM replica gets: detected with nvidia-smi, planned as disjoint sets.

A model's replicas each take `tensor_parallel_size` GPUs from the model's `gpus` (or, when it
names none, from those no other model named). Asking for a GPU the box does not have, for
more GPUs than there are, or for a GPU another model holds is a start-up error that says so.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from chatapp.config import Config, ModelConfig
from chatapp.errors import ConfigError

__all__ = ["GpuPlan", "detect_gpus", "plan_gpus"]

log = logging.getLogger("chatapp.engines")

GpuPlan = Mapping[str, tuple[tuple[int, ...], ...]]  # model name -> one GPU set per replica


def detect_gpus(timeout: float = 10.0) -> list[int]:
    """The indexes of the NVIDIA GPUs nvidia-smi lists (of those CUDA_VISIBLE_DEVICES allows,
    when the operator set it); empty when there is none or the driver does not answer."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        done = subprocess.run(
            [executable, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        log.warning("nvidia-smi failed (%s): no GPU can be used", done.stderr.strip()[:200])
        return []
    found = sorted(int(line) for line in done.stdout.split() if line.strip().isdigit())
    allowed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if allowed is not None:
        wanted = {int(part) for part in allowed.split(",") if part.strip().isdigit()}
        found = [gpu for gpu in found if gpu in wanted]
    return found


def _fail(config: Config, model: ModelConfig, key: str, problem: str) -> ConfigError:
    return ConfigError(str(config.path), f"models.{model.name}.{key}", problem)


def plan_gpus(config: Config, available: Sequence[int]) -> GpuPlan:
    """One disjoint GPU set per replica of every local vLLM model (ConfigError if impossible)."""
    models = [m for m in config.models.values() if m.engine == "vllm"]
    if not models:
        return {}
    have = sorted(set(available))
    if not have:
        raise _fail(
            config,
            models[0],
            "engine",
            'vllm needs an NVIDIA GPU and nvidia-smi found none (use engine = "llama.cpp" '
            "on a CPU-only box)",
        )
    taken: dict[int, str] = {}
    plan: dict[str, tuple[tuple[int, ...], ...]] = {}
    # Models that name their GPUs first, then the others share what is left.
    for model in sorted(models, key=lambda m: m.vllm.gpus is None):
        need = model.replicas * model.vllm.tensor_parallel_size
        if model.vllm.gpus is not None:
            missing = [g for g in model.vllm.gpus if g not in have]
            if missing:
                raise _fail(
                    config,
                    model,
                    "gpus",
                    f"GPU {', '.join(map(str, missing))} does not exist "
                    f"(this box has {_describe(have)})",
                )
            clash = [g for g in model.vllm.gpus if g in taken]
            if clash:
                other = taken[clash[0]]
                raise _fail(
                    config,
                    model,
                    "gpus",
                    f"GPU {clash[0]} is already given to model '{other}': "
                    "give each model its own GPUs",
                )
            pool = list(model.vllm.gpus)
        else:
            pool = [g for g in have if g not in taken]
        if len(pool) < need:
            where = "its gpus" if model.vllm.gpus is not None else "the free GPUs"
            raise _fail(
                config,
                model,
                "replicas",
                f"{model.replicas} replica(s) × tensor_parallel_size "
                f"{model.vllm.tensor_parallel_size} need {need} GPU(s), but {where} are "
                f"{_describe(pool) if pool else 'none'}",
            )
        sets = tuple(
            tuple(
                pool[
                    i * model.vllm.tensor_parallel_size : (i + 1) * model.vllm.tensor_parallel_size
                ]
            )
            for i in range(model.replicas)
        )
        # A model that names its GPUs holds all of them (overlapping sets are refused).
        for gpu in model.vllm.gpus or [g for gpu_set in sets for g in gpu_set]:
            taken[gpu] = model.name
        plan[model.name] = sets
    return plan


def _describe(gpus: Sequence[int]) -> str:
    return ", ".join(map(str, gpus)) if len(gpus) < 6 else f"{gpus[0]}-{gpus[-1]}"


def nvidia_smi_path() -> Path | None:
    found = shutil.which("nvidia-smi")
    return Path(found) if found else None
