"""Active health checks: every few seconds, ask each upstream whether it answers.

A remote node is asked for `/models` (any OpenAI-compatible server has it); a local engine
for its own health route (vLLM's /health), only while its supervisor says it is up. A
failing check marks the upstream unhealthy and counts toward its breaker; a passing one
brings it back and closes a half-open breaker. A check that times out while the upstream
has requests of ours in flight counts neither way: the engine is busy, and those requests
say whether it works. A vLLM engine's /metrics gives its load (requests running and waiting
in its queue) and its prefix-cache hit rate: a local vLLM engine's is read at every passing
check, a remote node's too if its first answer showed vLLM's metrics (one request to learn
that a node is not vLLM, never again). The load shows on the gateway's /metrics and in
`chatapp fleet status`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from chatapp.upstreams import ModelPool, Upstream

__all__ = ["EngineLoad", "check_forever", "check_upstream", "engine_load"]

log = logging.getLogger("chatapp.health")

# vLLM's counters (V1 engine names, then the older ones).
_HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")
_QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")
_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"
_WANTED = {*_HITS, *_QUERIES, _RUNNING, _WAITING}


@dataclass(frozen=True)
class EngineLoad:
    """What a vLLM engine's /metrics says; None for what it does not say."""

    running: float | None = None
    waiting: float | None = None
    prefix_cache_hit_rate: float | None = None

    @property
    def is_vllm(self) -> bool:
        return self.running is not None or self.waiting is not None


def engine_load(metrics: str) -> EngineLoad:
    """Each figure summed across label sets (one set per model an engine serves), read from
    Prometheus text. Only these few lines matter of a page of many histograms, so lines are
    matched by name rather than the whole page parsed."""
    sums: dict[str, float] = {}
    for line in metrics.splitlines():
        if not line.startswith("vllm:"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in _WANTED:
            continue
        try:
            value = float(line.rsplit(" ", 1)[-1])
        except ValueError:
            continue
        key = "hits" if name in _HITS else "queries" if name in _QUERIES else name
        sums[key] = sums.get(key, 0.0) + value
    queries = sums.get("queries", 0.0)
    hit_rate = round(sums.get("hits", 0.0) / queries, 4) if queries > 0 else None
    return EngineLoad(sums.get(_RUNNING), sums.get(_WAITING), hit_rate)


async def check_upstream(client: httpx.AsyncClient, upstream: Upstream, timeout: float) -> None:
    """One check of one upstream, its result recorded on it."""
    supervisor = upstream.supervisor
    launch = supervisor.launch if supervisor is not None else None
    root = upstream.base_url.removesuffix("/v1")
    if supervisor is not None:
        if not supervisor.ready or launch is None:
            return  # starting or restarting: the supervisor reports that itself
        url = root + launch.health_path
    else:
        url = upstream.base_url + "/models"
    try:
        response = await client.get(url, headers=upstream.headers(), timeout=timeout)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        if isinstance(exc, httpx.TimeoutException) and upstream.outstanding:
            # Busy, not down: llama-cpp-python answers /v1/models only between generations,
            # so every check during a long answer timed out, and two in a row turned every
            # request away with a 503 while the engine was working for us. The requests in
            # flight show whether it works: a failing one counts toward the breaker.
            log.debug("health check of %s timed out while it serves requests", upstream.name)
            return
        upstream.record_check(False, f"health check: {type(exc).__name__}")
        return
    if response.status_code != 200:
        upstream.record_check(False, f"health check: HTTP {response.status_code}")
        return
    upstream.record_check(True)
    if upstream.engine_metrics is not False:  # a vLLM engine, or a node not yet asked
        await _read_load(client, upstream, root, timeout)


async def _read_load(
    client: httpx.AsyncClient, upstream: Upstream, root: str, timeout: float
) -> None:
    """The engine's load from its /metrics, a nicety: the check itself has passed."""
    try:
        answer = await client.get(root + "/metrics", headers=upstream.headers(), timeout=timeout)
    except httpx.HTTPError:
        return  # asked again at the next check
    load = engine_load(answer.text) if answer.status_code == 200 else EngineLoad()
    if upstream.supervisor is None:  # a remote node's answer says whether it is vLLM
        upstream.engine_metrics = load.is_vllm
    upstream.engine_running, upstream.engine_waiting = load.running, load.waiting
    upstream.prefix_cache_hit_rate = load.prefix_cache_hit_rate


async def check_forever(
    pools: Iterable[ModelPool], client: httpx.AsyncClient, every: float
) -> None:
    """Check every upstream of every pool each `every` seconds, all at once."""
    upstreams = [u for pool in pools for u in pool.upstreams]
    timeout = max(0.5, min(5.0, every))
    while True:
        results = await asyncio.gather(
            *(check_upstream(client, u, timeout) for u in upstreams), return_exceptions=True
        )
        for upstream, result in zip(upstreams, results, strict=True):
            if isinstance(result, Exception):
                # One upstream's surprise must not stop the checks of all the others.
                log.error("health check of %s failed: %r", upstream.name, result)
        await asyncio.sleep(every)
