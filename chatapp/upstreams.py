"""Upstreams a model can be served by (a supervised local engine or a remote node) and the pick."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from chatapp.config import Config, ModelConfig
from chatapp.engines.launch import EngineLaunch, build_launch
from chatapp.engines.supervisor import EngineSupervisor
from chatapp.errors import EngineUnavailable
from chatapp.plain_messages import plain_messages
from chatapp.token_count import CharEstimate, GgufTokenizer, TokenCounter

__all__ = ["ModelPool", "Upstream", "build_pools"]

LATENCY_SMOOTHING = 0.2  # weight of the newest sample in the latency EWMA


@dataclass(eq=False)
class Upstream:
    """One OpenAI-compatible server; `outstanding` counts requests in flight to it.

    A draining upstream gets no new requests while those in flight finish. The passive stats
    are what its answers showed: `served` 2xx answers, `failures` in a row (connection errors
    and 5xx), the last error, and an EWMA of the time to its answer (a stream's headers).
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
        ms = seconds * 1000
        previous = self.latency_ms
        self.latency_ms = ms if previous is None else previous + LATENCY_SMOOTHING * (ms - previous)

    def record_failure(self, error: str) -> None:
        """A connection error or 5xx answer: lengthen the streak and remember what it was."""
        self.failures += 1
        self.last_error = (error.strip().splitlines() or ["unknown error"])[0][:200]
        self.last_error_at = time.time()

    def status(self) -> dict[str, Any]:
        """What an admin sees of this upstream: its state, load and passive health."""
        supervisor = self.supervisor
        if supervisor is not None:
            state = supervisor.state.value
        else:
            state = "failing" if self.failures else "ok"
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
        }


@dataclass
class ModelPool:
    """The upstreams serving one model; picks the ready one with the fewest requests per weight."""

    model: ModelConfig
    upstreams: list[Upstream]

    @property
    def ready(self) -> bool:
        return any(u.ready for u in self.upstreams)

    def pick(self) -> Upstream:
        """The least-loaded ready upstream not draining, or EngineUnavailable (503, Retry-After)."""
        ready = [u for u in self.upstreams if u.ready]
        if not ready:
            raise EngineUnavailable(
                f"The model '{self.model.name}' is starting or restarting; retry shortly.",
                retry_after=5,
            )
        open_ = [u for u in ready if not u.draining]
        if not open_:
            raise EngineUnavailable(
                f"Every upstream of the model '{self.model.name}' is drained by an admin; "
                "retry later.",
                retry_after=30,
            )
        return min(open_, key=lambda u: u.outstanding / (u.weight or 1e-9))


def build_pools(config: Config, log_dir: Path) -> dict[str, ModelPool]:
    """One pool per model: a supervisor for its local engine (not started) plus its nodes."""
    pools: dict[str, ModelPool] = {}
    host = "127.0.0.1"
    for model in config.models.values():
        upstreams: list[Upstream] = []
        if model.engine is not None:
            # Fail now, not in the background, when the engine cannot run here.
            probe = build_launch(model, host=host, port=0, config_path=config.path)
            supervisor = EngineSupervisor(
                model.name,
                partial(_launch_on, model, host, config.path),
                host=host,
                log_path=log_dir / f"{model.name}.log",
                start_timeout=config.server.engine_start_timeout,
            )
            upstreams.append(
                Upstream(
                    name=f"{model.name}@local",
                    supervisor=supervisor,
                    reports_stream_usage=probe.reports_stream_usage,
                    plain_messages=probe.plain_messages,
                    counter=GgufTokenizer(probe.tokenizer) if probe.tokenizer else CharEstimate(),
                )
            )
        for node in model.nodes:
            upstreams.append(
                Upstream(
                    name=f"{model.name}@{node.url}",
                    url=node.url,
                    api_key=node.api_key,
                    weight=node.weight,
                )
            )
        pools[model.name] = ModelPool(model=model, upstreams=upstreams)
    return pools


def _launch_on(model: ModelConfig, host: str, config_path: Path, port: int) -> EngineLaunch:
    return build_launch(model, host=host, port=port, config_path=config_path)
