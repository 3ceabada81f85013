"""Active health checks: every few seconds, ask each upstream whether it answers.

A remote node is asked for `/models` (any OpenAI-compatible server has it); a local engine
for its own health route (vLLM's /health), only while its supervisor says it is up. A
failing check marks the upstream unhealthy and counts toward its breaker; a passing one
brings it back and closes a half-open breaker. A check that times out while the upstream
has requests of ours in flight counts neither way: the engine is busy, and those requests
say whether it works. vLLM's /metrics gives the prefix-cache hit rate shown by `chatapp
fleet status`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import httpx

from chatapp.upstreams import ModelPool, Upstream

__all__ = ["check_forever", "check_upstream", "prefix_cache_hit_rate"]

log = logging.getLogger("chatapp.health")

# vLLM's counters (V1 engine names, then the older ones).
_HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")
_QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")


def prefix_cache_hit_rate(metrics: str) -> float | None:
    """Hits over queries summed across label sets, from Prometheus text; None if absent."""
    hits = queries = 0.0
    seen = False
    for line in metrics.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            value = float(line.rsplit(" ", 1)[-1])
        except ValueError:
            continue
        if name in _HITS:
            hits += value
            seen = True
        elif name in _QUERIES:
            queries += value
            seen = True
    if not seen or queries <= 0:
        return None
    return round(hits / queries, 4)


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
    if launch is not None and launch.health_path == "/health":
        try:
            metrics = await client.get(root + "/metrics", timeout=timeout)
            upstream.prefix_cache_hit_rate = prefix_cache_hit_rate(metrics.text)
        except httpx.HTTPError:
            pass  # the hit rate is a nicety; the check itself passed


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
