"""Upstreams a model can be served by (supervised local replicas, remote nodes) and the pick."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from chatapp.breaker import CircuitBreaker
from chatapp.config import Config, ModelConfig
from chatapp.engines.gpus import detect_gpus, plan_gpus
from chatapp.engines.launch import EngineLaunch, build_launch
from chatapp.engines.supervisor import EngineSupervisor
from chatapp.errors import EngineUnavailable
from chatapp.plain_messages import plain_messages
from chatapp.router import HashRing, choose
from chatapp.token_count import CharEstimate, GgufTokenizer, TokenCounter

__all__ = ["ModelPool", "Upstream", "build_pools"]

UNHEALTHY_AFTER = 2
LATENCY_SMOOTHING = 0.2  # weight of the newest sample in the latency EWMA


@dataclass(eq=False)
class Upstream:
    """One OpenAI-compatible server; `outstanding` counts requests in flight to it.

    A draining upstream gets no new requests while those in flight finish. The passive stats
    are what its answers showed: `served` 2xx answers, `failures` in a row (connection errors
    and 5xx), the last error, and an EWMA of the time to its answer (a stream's headers).
    Its breaker opens after failures in a row (answers or health checks) and `healthy` is the
    last active health check; it takes requests only while ready, healthy, closed, undrained.
    """

    name: str
    url: str = ""
    api_key: str | None = None
    weight: float = 1.0
    supervisor: EngineSupervisor | None = None
    reports_stream_usage: bool = True
    plain_messages: bool = False
    counter: TokenCounter = field(default_factory=CharEstimate)
    outstanding: int = field(default=0)
    draining: bool = False
    served: int = 0
    failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    latency_ms: float | None = None
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    healthy: bool = True
    failed_checks: int = 0  # health checks failed in a row
    checked_at: float | None = None
    prefix_cache_hit_rate: float | None = None
    # A vLLM engine's own count of requests it runs and holds in its queue (chatapp/health.py);
    # None where unknown. `engine_metrics`: whether it serves vLLM's /metrics, known for a
    # local engine from its kind, for a remote node from its first answer (None: not asked).
    engine_running: float | None = None
    engine_waiting: float | None = None
    engine_metrics: bool | None = None
    gpus: tuple[int, ...] = ()

    def available(self) -> bool:
        """Whether new requests may go here now."""
        if self.draining or not self.healthy or not self.ready:
            return False
        breaker = self.breaker
        return breaker.opened_at is None or breaker.allows()  # closed is the common case

    @property
    def base_url(self) -> str:
        """The /v1 base; a supervised engine's port changes when it is restarted."""
        return self.supervisor.base_url if self.supervisor else self.url

    @property
    def ready(self) -> bool:
        return self.supervisor.ready if self.supervisor else True

    def prepare(self, body: Mapping[str, Any], model: str) -> dict[str, Any]:
        """The request body in the form this upstream accepts."""
        return plain_messages(body, model) if self.plain_messages else dict(body)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def record_success(self, seconds: float) -> None:
        """A 2xx answer after `seconds`: count it, end the failure streak, update the EWMA."""
        self.served += 1
        self.failures = 0
        self.breaker.record_success()
        ms = seconds * 1000
        previous = self.latency_ms
        self.latency_ms = ms if previous is None else previous + LATENCY_SMOOTHING * (ms - previous)

    def record_failure(self, error: str) -> None:
        """A connection error or 5xx answer: lengthen the streak and remember what it was."""
        self.failures += 1
        self.last_error = (error.strip().splitlines() or ["unknown error"])[0][:200]
        self.last_error_at = time.time()
        self.breaker.record_failure()

    def record_check(self, healthy: bool, error: str | None = None) -> None:
        """An active health check's result. It takes UNHEALTHY_AFTER failed checks in a row to
        stop sending requests: one check that timed out under a burst of load would otherwise
        turn every request away until the next check (requests that fail meanwhile open the
        breaker anyway). One passing check brings the upstream back."""
        self.checked_at = time.time()
        if healthy:
            # Healthy again, but the breaker closes only when a real request succeeds (its
            # half-open probe): a /health that answers says little about /chat/completions.
            self.healthy = True
            self.failed_checks = 0
        else:
            self.failed_checks += 1
            self.healthy = self.failed_checks < UNHEALTHY_AFTER
            self.engine_running = self.engine_waiting = None  # no longer known
            self.record_failure(error or "health check failed")

    def status(self) -> dict[str, Any]:
        """What an admin sees of this upstream: its state, load and passive health."""
        supervisor = self.supervisor
        if supervisor is not None:
            state = supervisor.state.value
        else:
            state = "failing" if self.failures else "ok"
        if not self.healthy:
            state = "unhealthy"
        return {
            "name": self.name,
            "url": self.base_url,
            "kind": "local" if supervisor else "remote",
            "state": state,
            "ready": self.ready,
            "draining": self.draining,
            "outstanding": self.outstanding,
            "weight": self.weight,
            "served": self.served,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "restarts": supervisor.restarts if supervisor else 0,
            "pid": supervisor.pid if supervisor else None,
            "healthy": self.healthy,
            "checked_at": self.checked_at,
            "circuit": self.breaker.state.value,
            "circuit_opened": self.breaker.opened_count,
            "prefix_cache_hit_rate": self.prefix_cache_hit_rate,
            "engine_running": self.engine_running,
            "engine_waiting": self.engine_waiting,
            "gpus": list(self.gpus),
        }


@dataclass
class ModelPool:
    """The upstreams serving one model, the routing policy, and the model to fall back to."""

    model: ModelConfig
    upstreams: list[Upstream]
    fallback: ModelPool | None = None
    turn: itertools.count[int] = field(default_factory=itertools.count)
    ring: HashRing | None = None  # built at the first pick; the upstreams do not change

    @property
    def ready(self) -> bool:
        return any(u.ready for u in self.upstreams)

    def pick(self, key: str | None = None, exclude: frozenset[str] = frozenset()) -> Upstream:
        """The upstream for a request (see chatapp.router), or EngineUnavailable (503 with
        Retry-After) saying why none can take it."""
        if self.ring is None:
            self.ring = HashRing(self.upstreams)
        chosen = choose(
            self.upstreams,
            policy=self.model.routing,
            key=key,
            exclude=exclude,
            turn=next(self.turn),
            ring=self.ring,
        )
        if chosen is not None:
            chosen.breaker.on_send()
            return chosen
        raise self.unavailable(exclude)

    def unavailable(self, exclude: frozenset[str] = frozenset()) -> EngineUnavailable:
        """Why no upstream of this model can take a request now."""
        name = self.model.name
        left = [u for u in self.upstreams if u.name not in exclude]
        if not any(u.ready for u in left):
            return EngineUnavailable(
                f"The model '{name}' is starting or restarting; retry shortly.", retry_after=5
            )
        if all(u.draining for u in left if u.ready):
            return EngineUnavailable(
                f"Every upstream of the model '{name}' is drained by an admin; retry later.",
                retry_after=30,
            )
        waits = [u.breaker.retry_in() for u in left if u.ready and not u.draining]
        return EngineUnavailable(
            f"No upstream of the model '{name}' can take the request now (failing or "
            "unhealthy); retry shortly.",
            retry_after=max(1, min(30, int(min(waits, default=5.0)) + 1)),
        )


def build_pools(
    config: Config,
    log_dir: Path,
    *,
    gpus: Sequence[int] | None = None,
    host: str = "127.0.0.1",
    base_port: int = 0,
) -> dict[str, ModelPool]:
    """One pool per model: a supervisor per local replica (not started), plus its nodes.

    `gpus` are the GPUs to plan vLLM replicas on (default: what nvidia-smi finds);
    `base_port` > 0 gives the engines fixed ports from it up (for `serve --engine-only`).
    """
    needs_gpus = any(m.engine == "vllm" for m in config.models.values())
    plan = plan_gpus(config, detect_gpus() if gpus is None and needs_gpus else gpus or [])
    ports = itertools.count(base_port) if base_port else None
    server = config.server
    pools: dict[str, ModelPool] = {}
    for model in config.models.values():
        upstreams: list[Upstream] = []
        if model.engine is not None:
            gpu_sets = plan.get(model.name) or tuple(() for _ in range(model.replicas))
            for replica, gpu_set in enumerate(gpu_sets):
                upstreams.append(
                    _local(
                        config,
                        model,
                        replica,
                        gpu_set,
                        host=host,
                        port=next(ports) if ports else 0,
                        log_dir=log_dir,
                    )
                )
            for copy in upstreams[1:]:
                copy.counter = upstreams[0].counter  # one tokenizer per model, not per copy
        for node in model.nodes:
            upstreams.append(
                Upstream(
                    name=f"{model.name}@{node.url}",
                    url=node.url,
                    api_key=node.api_key,
                    weight=node.weight,
                )
            )
        for upstream in upstreams:
            upstream.breaker = CircuitBreaker(
                server.breaker_failures, server.breaker_cooldown_seconds
            )
        pools[model.name] = ModelPool(model=model, upstreams=upstreams)
    for pool in pools.values():
        if pool.model.fallback is not None:
            pool.fallback = pools[pool.model.fallback]
    return pools


def _local(
    config: Config,
    model: ModelConfig,
    replica: int,
    gpus: tuple[int, ...],
    *,
    host: str,
    port: int,
    log_dir: Path,
) -> Upstream:
    """A supervised engine for one replica; its command is checked now, not in the background."""
    gpu_arg = gpus if model.engine == "vllm" else None
    probe = build_launch(model, host=host, port=port, config_path=config.path, gpus=gpu_arg)
    suffix = "" if model.replicas == 1 else f"/{replica}"
    supervisor = EngineSupervisor(
        model.name + suffix,
        partial(_launch_on, model, host, config.path, gpu_arg),
        host=host,
        log_path=log_dir / f"{model.name}{suffix.replace('/', '.')}.log",
        start_timeout=config.server.engine_start_timeout,
        port=port,
    )
    upstream = Upstream(
        name=f"{model.name}@local{suffix}",
        supervisor=supervisor,
        reports_stream_usage=probe.reports_stream_usage,
        plain_messages=probe.plain_messages,
        engine_metrics=model.engine == "vllm",  # llama-cpp-python's server has no /metrics
        gpus=gpus,
    )
    if replica == 0 and probe.tokenizer:
        upstream.counter = GgufTokenizer(probe.tokenizer)
    return upstream


def _launch_on(
    model: ModelConfig,
    host: str,
    config_path: Path,
    gpus: tuple[int, ...] | None,
    port: int,
) -> EngineLaunch:
    return build_launch(model, host=host, port=port, config_path=config_path, gpus=gpus)
