"""Upstreams a model can be served by (a supervised local engine or a remote node) and the pick."""

from __future__ import annotations

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


@dataclass(eq=False)
class Upstream:
    """One OpenAI-compatible server; `outstanding` counts requests in flight to it."""

    name: str
    url: str = ""
    api_key: str | None = None
    weight: float = 1.0
    supervisor: EngineSupervisor | None = None
    reports_stream_usage: bool = True
    plain_messages: bool = False
    counter: TokenCounter = field(default_factory=CharEstimate)
    outstanding: int = field(default=0)

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


@dataclass
class ModelPool:
    """The upstreams serving one model; picks the ready one with the fewest requests per weight."""

    model: ModelConfig
    upstreams: list[Upstream]

    @property
    def ready(self) -> bool:
        return any(u.ready for u in self.upstreams)

    def pick(self) -> Upstream:
        """The least-loaded ready upstream, or EngineUnavailable (503 with Retry-After)."""
        ready = [u for u in self.upstreams if u.ready]
        if not ready:
            raise EngineUnavailable(
                f"The model '{self.model.name}' is starting or restarting; retry shortly.",
                retry_after=5,
            )
        return min(ready, key=lambda u: u.outstanding / (u.weight or 1e-9))


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
