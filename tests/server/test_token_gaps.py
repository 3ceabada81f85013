"""The inter-token histogram counted by the gateway itself: Prometheus' bucket semantics."""

from __future__ import annotations

from prometheus_client import generate_latest

from server.metrics import GatewayMetrics


def _samples(metrics: GatewayMetrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    lines = [line for line in text.splitlines() if line.startswith("chatapp_inter_token")]
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in lines)}


def test_each_bucket_counts_the_gaps_up_to_its_bound_and_inf_counts_all() -> None:
    metrics = GatewayMetrics()
    for seconds in (0.0005, 0.02, 0.021, 5.0):  # 0.02 lies on a bound: it counts there
        metrics.observe_gap("m", seconds)
    metrics.observe_gap("other", 0.01)
    samples = _samples(metrics)
    bucket = 'chatapp_inter_token_latency_seconds_bucket{le="%s",model="m"}'
    assert samples[bucket % "0.001"] == 1
    assert samples[bucket % "0.02"] == 2
    assert samples[bucket % "0.04"] == 3
    assert samples[bucket % "2.56"] == 3
    assert samples[bucket % "+Inf"] == 4
    assert samples['chatapp_inter_token_latency_seconds_count{model="m"}'] == 4
    assert abs(samples['chatapp_inter_token_latency_seconds_sum{model="m"}'] - 5.0415) < 1e-9
    assert samples['chatapp_inter_token_latency_seconds_count{model="other"}'] == 1
