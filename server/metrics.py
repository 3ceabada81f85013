"""GET /metrics in Prometheus' text format, and the engines' own /metrics through the gateway.

Counters and histograms are fed as things happen (usage events from the meter, moderation
decisions, token gaps of streams, each HTTP request); gauges of live state (outstanding
requests per upstream, circuits, engine restarts, the ledger outbox) are read at scrape time,
so they are never stale. Labels are models, routes, upstreams and statuses: never users or
prompt text.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from chatapp.errors import NotFound
from chatapp.moderation import Decision
from chatapp.usage import UsageEvent

if TYPE_CHECKING:
    from server.state import GatewayState

__all__ = ["GatewayMetrics", "engine_metrics", "metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
disable_created_metrics()  # the *_created series double every counter for no use here
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_GAPS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
_GAP_BOUNDS = [floatToGoString(b) for b in _GAPS] + ["+Inf"]  # the `le` labels, as rendered


class GatewayMetrics:
    """The gateway's metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "chatapp_http_requests", "HTTP requests", ["route", "model", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "chatapp_http_request_duration_seconds",
            "Time from a request to the end of its answer (streams included)",
            ["route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.ttft = Histogram(
            "chatapp_time_to_first_token_seconds",
            "Time to first token of completions",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.token_gaps = _TokenGaps()
        r.register(self.token_gaps)
        self.tokens = Counter("chatapp_tokens", "Tokens processed", ["model", "kind"], registry=r)
        self.completions = Counter(
            "chatapp_completions", "Completions by how they ended", ["model", "status"], registry=r
        )
        self.active_streams = Gauge(
            "chatapp_active_streams", "SSE responses being streamed now", registry=r
        )
        self.moderation = Counter(
            "chatapp_moderation_decisions",
            "Moderation decisions",
            ["direction", "action", "category"],
            registry=r,
        )

    def observe_usage(self, event: UsageEvent) -> None:
        self.completions.labels(event.model, event.status).inc()
        if event.status == "rate_limited":
            return
        self.tokens.labels(event.model, "prompt").inc(event.prompt_tokens)
        self.tokens.labels(event.model, "completion").inc(event.completion_tokens)
        self.tokens.labels(event.model, "cached").inc(event.cached_tokens)
        if event.ttft_ms is not None:
            self.ttft.labels(event.model).observe(event.ttft_ms / 1000)

    def observe_gap(self, model: str, seconds: float) -> None:
        self.token_gaps.observe(model, seconds)

    def observe_moderation(self, decision: Decision, direction: str) -> None:
        self.moderation.labels(direction, decision.action, decision.category).inc()

    def watch(self, state: GatewayState) -> None:
        """Read the live state at each scrape."""
        self.registry.register(_LiveState(state))


class _TokenGaps(Collector):
    """The inter-token latency histogram, counted here rather than by prometheus-client's
    Histogram: it is fed once a token on the event loop, and a bisect into a list costs a
    fifth of Histogram.observe (a lock for the bucket, another for the sum)."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}  # per model: a count per bucket, then +Inf
        self.sums: dict[str, float] = {}

    def observe(self, model: str, seconds: float) -> None:
        counts = self.counts.get(model)
        if counts is None:
            counts = self.counts[model] = [0] * (len(_GAPS) + 1)
            self.sums[model] = 0.0
        counts[bisect.bisect_left(_GAPS, seconds)] += 1  # the first bound >= seconds
        self.sums[model] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "chatapp_inter_token_latency_seconds",
            "Time between successive tokens of a stream",
            labels=["model"],
        )
        for model, counts in list(self.counts.items()):
            cumulative = itertools.accumulate(counts)
            buckets = list(zip(_GAP_BOUNDS, cumulative, strict=True))
            family.add_metric([model], buckets, self.sums[model])
        yield family


class _LiveState(Collector):
    def __init__(self, state: GatewayState) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["model", "upstream"]
        outstanding = GaugeMetricFamily(
            "chatapp_upstream_outstanding_requests",
            "Requests in flight to an upstream",
            labels=labels,
        )
        available = GaugeMetricFamily(
            "chatapp_upstream_available", "1 if the upstream takes new requests", labels=labels
        )
        circuit_open = GaugeMetricFamily(
            "chatapp_upstream_circuit_open",
            "1 while the upstream's breaker is not closed",
            labels=labels,
        )
        failures = CounterMetricFamily(
            "chatapp_upstream_failures", "Failures in a row of an upstream", labels=labels
        )
        restarts = CounterMetricFamily(
            "chatapp_engine_restarts", "Restarts of a supervised engine", labels=labels
        )
        engine_requests = GaugeMetricFamily(
            "chatapp_upstream_engine_requests",
            "Requests a vLLM upstream runs and holds in its queue, by its own /metrics",
            labels=[*labels, "state"],
        )
        for name, pool in self.state.pools.items():
            for upstream in pool.upstreams:
                key = [name, upstream.name]
                outstanding.add_metric(key, upstream.outstanding)
                available.add_metric(key, 1.0 if upstream.available() else 0.0)
                circuit_open.add_metric(key, 0.0 if upstream.breaker.state == "closed" else 1.0)
                failures.add_metric(key, upstream.failures)
                if upstream.supervisor is not None:
                    restarts.add_metric(key, upstream.supervisor.restarts)
                if upstream.engine_running is not None:
                    engine_requests.add_metric([*key, "running"], upstream.engine_running)
                if upstream.engine_waiting is not None:
                    engine_requests.add_metric([*key, "waiting"], upstream.engine_waiting)
        yield from (outstanding, available, circuit_open, failures, restarts, engine_requests)
        depth = self.state.accounts.db.execute("SELECT count(*) FROM usage_outbox").fetchone()[0]
        yield GaugeMetricFamily(
            "chatapp_ledger_outbox_depth", "Usage events not yet in the ledger", value=depth
        )


async def metrics(request: Request) -> Response:
    """The gateway's metrics; the engines' are listed at /metrics/engines."""
    registry = request.app.state.chatapp.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)


async def engine_metrics(request: Request) -> Response:
    """GET /metrics/engines lists the local vLLM engines, the scrape targets;
    /metrics/engines/{upstream} proxies one engine's own /metrics (vLLM's queue depth, KV cache,
    prefix cache), so one scrape config covers a box. llama-cpp-python's server has no
    /metrics: listed, it would be a scrape target forever down."""
    state: GatewayState = request.app.state.chatapp
    local = {u.name: u for pool in state.pools.values() for u in pool.upstreams if u.supervisor}
    name = request.path_params.get("upstream")
    if name is None:
        listed = sorted(n for n, u in local.items() if u.engine_metrics)
        return PlainTextResponse("".join(f"/metrics/engines/{n}\n" for n in listed))
    upstream = local.get(name)
    if upstream is None:
        raise NotFound(f"No local engine '{name}' (see /metrics/engines).")
    try:
        answer = await state.client.get(
            upstream.base_url.removesuffix("/v1") + "/metrics", timeout=5.0
        )
    except httpx.HTTPError:
        return PlainTextResponse(f"# engine {name} is not answering\n", status_code=503)
    if answer.status_code != 200:
        return PlainTextResponse(
            f"# engine {name} has no /metrics (HTTP {answer.status_code})\n", status_code=404
        )
    return Response(answer.content, media_type=CONTENT_TYPE)
