"""gateway_bench judges a proxy's latency at a load only where the bare relay, the floor of
any gateway on this stack, meets the same targets: elsewhere the box set the tail."""

from __future__ import annotations

from bench.gateway_bench import versus_direct
from bench.gateway_noise import floor_judges
from bench.gateway_rows import Tally, meets_latency_targets
from bench.timed_streams import Shot


def _tally(ttft: float, gap: float, streams: int = 20, tokens: int = 8) -> Tally:
    """Streams whose first token takes `ttft` and every next one `gap` seconds."""
    shots = [
        Shot(
            started=0.0,
            ended=ttft + gap * tokens,
            arrivals=tuple(ttft + gap * i for i in range(tokens)),
            tokens=tokens,
        )
        for _ in range(streams)
    ]
    return Tally(shots=shots, seconds=1.0, emitted=streams * tokens)


DIRECT = _tally(ttft=0.050, gap=0.020)


def _rows(via: Tally, **kwargs: bool) -> dict[str, tuple[str, bool | None]]:
    rows = versus_direct("chatapp", DIRECT, via, 512, 8, **kwargs)
    return {row.what.strip(): (row.target, row.ok) for row in rows}


def test_a_floor_within_the_targets_lets_the_box_judge() -> None:
    floor = _tally(ttft=0.051, gap=0.0204)  # 1 ms added, 1.02x
    assert meets_latency_targets(DIRECT, floor)
    row = floor_judges(DIRECT, floor)
    assert row.ok is True
    assert row.measured == "1.0 / 1.0 ms, 1.02x"


def test_a_floor_over_any_target_means_the_box_cannot_judge() -> None:
    slow_start = _tally(ttft=0.080, gap=0.020)  # 30 ms added: over both TTFT targets
    stretched = _tally(ttft=0.050, gap=0.024)  # 1.20x between tokens
    for floor in (slow_start, stretched):
        assert not meets_latency_targets(DIRECT, floor)
        assert floor_judges(DIRECT, floor).ok is False


def test_where_the_box_cannot_judge_a_proxys_latency_has_no_verdict() -> None:
    slow = _tally(ttft=0.200, gap=0.060)
    judged = _rows(slow)
    assert judged["TTFT added, p50 / p99"] == ("< 5 / < 20 ms", False)
    assert judged["ITL p99 / direct"] == ("<= 1.10x", False)
    unjudged = _rows(slow, latency_judged=False)
    for what in ("TTFT added, p50 / p99", "ITL p99 / direct"):
        assert unjudged[what] == ("not judged: the floor missed it", None)
    # What the box can still judge keeps its verdict: every chunk arrived.
    assert unjudged["errors, chunks received / engine's"][1] is True


def test_a_reference_side_is_never_judged() -> None:
    rows = _rows(_tally(ttft=0.200, gap=0.060), judged=False)
    assert rows["TTFT added, p50 / p99"] == ("-", None)
    assert rows["ITL p99 / direct"] == ("-", None)
