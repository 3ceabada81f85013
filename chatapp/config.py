"""models.toml read with tomllib into typed, validated config; errors name the file and key."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chatapp.errors import ConfigError
from chatapp.limits import LIMIT_KINDS, Limits, Tier
from chatapp.moderation_config import ModerationConfig, parse_moderation
from chatapp.toml_table import Table

__all__ = [
    "ENGINE_KINDS",
    "ROUTING_POLICIES",
    "VllmOptions",
    "Config",
    "ModelConfig",
    "NodeConfig",
    "Pricing",
    "ServerConfig",
    "load_config",
    "parse_config",
]

ENGINE_KINDS = ("llama.cpp", "vllm")
ROUTING_POLICIES = ("affinity", "least_outstanding", "round_robin")
EngineArg = str | int | float | bool


@dataclass(frozen=True)
class ServerConfig:
    """Where the gateway listens and the limits it applies to every request."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path | None = None
    max_body_bytes: int = 1_048_576
    keepalive_seconds: float = 10.0
    engine_start_timeout: float = 300.0
    default_tier: str = "free"
    ledger_flush_seconds: float = 30.0
    resume_grace_seconds: float = 10.0
    deleted_retention_days: float = 30.0
    health_check_seconds: float = 5.0
    breaker_failures: int = 3
    breaker_cooldown_seconds: float = 15.0
    drain_seconds: float = 30.0
    tool_iterations: int = 4
    tool_timeout_seconds: float = 10.0
    log_format: str = "text"  # or "json": one JSON object per line, for log shippers
    log_level: str = "info"
    record_usage: bool = True  # false only to measure what the ledger costs (benchmarks)


@dataclass(frozen=True)
class Pricing:
    """Price in the operator's currency per million tokens, for usage reports."""

    input_per_1m: float = 0.0
    output_per_1m: float = 0.0


@dataclass(frozen=True)
class NodeConfig:
    """A remote OpenAI-compatible upstream (another chatapp node or any such server)."""

    url: str
    api_key: str | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class VllmOptions:
    """The `vllm serve` options chatapp knows by name; anything else goes in [args]."""

    tensor_parallel_size: int = 1
    gpus: tuple[int, ...] | None = None  # the GPUs this model's replicas share; None: all
    gpu_memory_utilization: float | None = None
    enable_prefix_caching: bool = True
    tool_call_parser: str | None = None
    dtype: str | None = None
    quantization: str | None = None


@dataclass(frozen=True)
class ModelConfig:
    """One model clients can name: a local engine chatapp supervises, remote nodes, or both."""

    name: str
    engine: str | None
    model: str
    context_window: int
    args: Mapping[str, EngineArg] = field(default_factory=dict)
    pricing: Pricing = field(default_factory=Pricing)
    nodes: tuple[NodeConfig, ...] = ()
    output_reserve: int = 512
    summarize: bool = False
    replicas: int = 1
    vllm: VllmOptions = field(default_factory=VllmOptions)
    fallback: str | None = None
    routing: str = "affinity"
    tools: bool = False  # whether requests may carry `tools` (the engine can call them)


@dataclass(frozen=True)
class Config:
    """The whole of models.toml, plus the path it came from (for messages)."""

    path: Path
    server: ServerConfig
    models: Mapping[str, ModelConfig]
    tiers: Mapping[str, Tier] = field(default_factory=dict)
    moderation: ModerationConfig = field(default_factory=ModerationConfig)

    def tier(self, name: str | None) -> Tier:
        """The named tier; an unknown or missing name falls back to the default tier."""
        if name and name in self.tiers:
            return self.tiers[name]
        return self.tiers.get(self.server.default_tier) or Tier(self.server.default_tier)


def load_config(path: Path) -> Config:
    """Read and validate a models.toml; raises ConfigError naming the file and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, f"cannot be read ({exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), None, f"not valid TOML: {exc}") from None
    return parse_config(raw, path)


def parse_config(raw: Mapping[str, Any], path: Path) -> Config:
    """Turn parsed TOML into Config, rejecting unknown keys so typos do not pass silently."""
    table = Table(raw, str(path), "")
    table.only("server", "models", "tiers", "moderation")
    server = _parse_server(table.table("server"))
    models_table = table.table("models")
    models = {name: _parse_model(models_table.table(name), name) for name in models_table.keys()}
    if not models:
        raise ConfigError(str(path), "models", "define at least one model, e.g. [models.smollm2]")
    for model in models.values():
        if model.fallback is not None and model.fallback not in models:
            raise ConfigError(
                str(path),
                f"models.{model.name}.fallback",
                f"names no model (defined: {', '.join(sorted(models))})",
            )
        if model.fallback == model.name:
            raise ConfigError(str(path), f"models.{model.name}.fallback", "cannot be itself")
    tiers_table = table.table("tiers")
    tiers = {name: _parse_tier(tiers_table.table(name), name) for name in tiers_table.keys()}
    if tiers and server.default_tier not in tiers:
        raise ConfigError(
            str(path),
            "server.default_tier",
            f"names no tier in [tiers] (defined: {', '.join(sorted(tiers))})",
        )
    moderation = parse_moderation(table.table("moderation"))
    for tier in moderation.tiers:
        if tier not in tiers:
            raise ConfigError(str(path), f"moderation.tiers.{tier}", "names no tier in [tiers]")
    return Config(path=path, server=server, models=models, tiers=tiers, moderation=moderation)


def _parse_limit_values(t: Table) -> dict[str, int]:
    values = {}
    for kind in t.keys():
        if kind in LIMIT_KINDS:
            values[kind] = t.integer(kind, 0, low=1)
    return values


def _parse_tier(t: Table, name: str) -> Tier:
    t.only(*LIMIT_KINDS, "models")
    models_table = t.table("models")
    per_model = {}
    for model in models_table.keys():
        model_table = models_table.table(model)
        model_table.only(*LIMIT_KINDS)
        per_model[model] = _parse_limit_values(model_table)
    return Tier(name=name, limits=Limits(**_parse_limit_values(t)), models=per_model)


def _parse_server(t: Table) -> ServerConfig:
    t.only(
        "host",
        "port",
        "data_dir",
        "max_body_bytes",
        "keepalive_seconds",
        "engine_start_timeout",
        "default_tier",
        "ledger_flush_seconds",
        "resume_grace_seconds",
        "deleted_retention_days",
        "health_check_seconds",
        "breaker_failures",
        "breaker_cooldown_seconds",
        "drain_seconds",
        "tool_iterations",
        "tool_timeout_seconds",
        "log_format",
        "log_level",
        "record_usage",
    )
    default = ServerConfig()
    data_dir = t.string("data_dir", None)
    return ServerConfig(
        host=t.string("host", default.host) or default.host,
        port=t.integer("port", default.port, low=1, high=65535),
        data_dir=Path(data_dir).expanduser() if data_dir else None,
        max_body_bytes=t.integer("max_body_bytes", default.max_body_bytes, low=1024),
        keepalive_seconds=t.number("keepalive_seconds", default.keepalive_seconds, low=0.05),
        engine_start_timeout=t.number(
            "engine_start_timeout", default.engine_start_timeout, low=1.0
        ),
        default_tier=t.string("default_tier", default.default_tier) or default.default_tier,
        ledger_flush_seconds=t.number(
            "ledger_flush_seconds", default.ledger_flush_seconds, low=0.01
        ),
        resume_grace_seconds=t.number(
            "resume_grace_seconds", default.resume_grace_seconds, low=0.0
        ),
        deleted_retention_days=t.number(
            "deleted_retention_days", default.deleted_retention_days, low=0.0
        ),
        health_check_seconds=t.number(
            "health_check_seconds", default.health_check_seconds, low=0.05
        ),
        breaker_failures=t.integer("breaker_failures", default.breaker_failures, low=1),
        breaker_cooldown_seconds=t.number(
            "breaker_cooldown_seconds", default.breaker_cooldown_seconds, low=0.05
        ),
        drain_seconds=t.number("drain_seconds", default.drain_seconds, low=0.0),
        tool_iterations=t.integer("tool_iterations", default.tool_iterations, low=1, high=50),
        tool_timeout_seconds=t.number(
            "tool_timeout_seconds", default.tool_timeout_seconds, low=0.01
        ),
        log_format=t.choice("log_format", default.log_format, ("text", "json")),
        log_level=t.choice("log_level", default.log_level, ("debug", "info", "warning", "error")),
        record_usage=t.boolean("record_usage", default.record_usage),
    )


def _parse_model(t: Table, name: str) -> ModelConfig:
    t.only(
        "engine",
        "model",
        "context_window",
        "args",
        "pricing",
        "nodes",
        "output_reserve",
        "summarize",
        "replicas",
        "fallback",
        "routing",
        "tools",
        *_VLLM_KEYS,
    )
    engine = t.string("engine", None)
    if engine is not None and engine not in ENGINE_KINDS:
        t.fail("engine", f"must be one of {', '.join(ENGINE_KINDS)} (got {engine!r})")
    nodes = tuple(_parse_node(node) for node in t.tables("nodes"))
    if engine is None and not nodes:
        t.fail("engine", 'missing: set engine = "llama.cpp" or "vllm", or list [[nodes]]')
    model = t.string("model", None)
    if engine is not None and not model:
        t.fail("model", 'missing: a GGUF path or "embedded" for llama.cpp, a model id for vllm')
    args_table = t.table("args")
    args: dict[str, EngineArg] = {}
    for key in args_table.keys():
        value = args_table.raw[key]
        if not isinstance(value, str | int | float | bool):
            args_table.fail(key, "engine arguments must be strings, numbers or booleans")
        reserved = _RESERVED_ARGS.get(key.replace("-", "_"))
        if reserved is not None:
            args_table.fail(key, reserved)
        args[key] = value
    pricing = t.table("pricing")
    pricing.only("input_per_1m", "output_per_1m")
    context_window = t.integer("context_window", 4096, low=16)
    return ModelConfig(
        name=name,
        engine=engine,
        model=model or name,
        context_window=context_window,
        args=args,
        pricing=Pricing(
            input_per_1m=pricing.number("input_per_1m", 0.0, low=0.0),
            output_per_1m=pricing.number("output_per_1m", 0.0, low=0.0),
        ),
        nodes=nodes,
        output_reserve=t.integer("output_reserve", min(4096, context_window // 4), low=1),
        summarize=t.boolean("summarize", False),
        replicas=t.integer("replicas", 1, low=1, high=64),
        vllm=(vllm := _parse_vllm(t, engine)),
        fallback=t.string("fallback", None),
        routing=_routing(t),
        # Tool calls need an engine that parses them: vLLM with a tool_call_parser; a remote
        # node is trusted to; llama.cpp's server only with a function-calling chat format.
        tools=t.boolean(
            "tools", vllm.tool_call_parser is not None if engine == "vllm" else engine is None
        ),
    )


# Engine arguments chatapp sets itself: passing them would break supervision or planning.
_RESERVED_ARGS = {
    "host": "chatapp chooses the engine's address (serve --host for --engine-only)",
    "port": "chatapp chooses the engine's port (serve --port for --engine-only)",
    "model": "set the model with the model key",
    "served_model_name": "the model is served under its name in models.toml",
    "model_alias": "the model is served under its name in models.toml",
    "tensor_parallel_size": "use the tensor_parallel_size key (GPUs are planned from it)",
    "max_model_len": "use the context_window key",
    "n_ctx": "use the context_window key",
}

_VLLM_KEYS = (
    "tensor_parallel_size",
    "gpus",
    "gpu_memory_utilization",
    "enable_prefix_caching",
    "tool_call_parser",
    "dtype",
    "quantization",
)


def _routing(t: Table) -> str:
    routing = t.string("routing", "affinity") or "affinity"
    if routing not in ROUTING_POLICIES:
        t.fail("routing", f"must be one of {', '.join(ROUTING_POLICIES)} (got {routing!r})")
    return routing


def _parse_vllm(t: Table, engine: str | None) -> VllmOptions:
    """vLLM's named options; on another engine they would be silently ignored, so refuse."""
    if engine != "vllm":
        for key in _VLLM_KEYS:
            if key in t.raw:
                t.fail(key, 'is a vLLM option: set engine = "vllm" (or pass it in [args])')
        return VllmOptions()
    gpus = t.raw.get("gpus")
    if gpus is not None and (
        not isinstance(gpus, list)
        or not gpus
        or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in gpus)
        or len(set(gpus)) != len(gpus)
    ):
        t.fail("gpus", "must be a list of distinct GPU indexes, e.g. [0, 1]")
    utilization = t.raw.get("gpu_memory_utilization")
    if utilization is not None:
        utilization = t.number("gpu_memory_utilization", 0.9, low=0.01)
        if utilization > 1.0:
            t.fail("gpu_memory_utilization", f"must be at most 1.0 (got {utilization})")
    return VllmOptions(
        tensor_parallel_size=t.integer("tensor_parallel_size", 1, low=1, high=64),
        gpus=tuple(gpus) if gpus is not None else None,
        gpu_memory_utilization=utilization,
        enable_prefix_caching=t.boolean("enable_prefix_caching", True),
        tool_call_parser=t.string("tool_call_parser", None),
        dtype=t.string("dtype", None),
        quantization=t.string("quantization", None),
    )


def _parse_node(t: Table) -> NodeConfig:
    t.only("url", "api_key", "weight")
    url = t.string("url", None)
    if not url or not url.startswith(("http://", "https://")):
        t.fail("url", "must be an http:// or https:// URL of an OpenAI-compatible /v1 base")
    try:
        if not httpx.URL(url).host:
            raise httpx.InvalidURL("no host")
    except httpx.InvalidURL as exc:
        t.fail("url", f"not a usable URL ({exc})")
    return NodeConfig(
        url=url.rstrip("/"),
        api_key=t.string("api_key", None),
        weight=t.number("weight", 1.0, low=0.0),
    )
