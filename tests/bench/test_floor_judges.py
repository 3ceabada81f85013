"""gateway_bench judges a proxy's latency at a load only where the bare relay, the floor of
any gateway on this stack, meets the same targets: elsewhere the box set the tail."""

from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from bench import gateway_bench
from bench.gateway_noise import floor_judges
from bench.gateway_rows import Tally
from bench.gateway_verdicts import meets_latency_targets, versus_direct
from bench.timed_streams import Shot, Spec


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


def test_every_load_says_whether_the_box_could_judge_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each load's rounds are measured calm and show the steal; where the floor ran, whether
    it met the targets; a load where it missed them has no latency verdicts."""
    floor_tallies = {1: None, 16: _tally(0.051, 0.0204), 512: _tally(0.200, 0.060)}
    calls = []

    async def compare_calm(
        sides: dict[str, Any], spec: Spec, engine: Any, rounds: int
    ) -> tuple[dict[str, Tally], int]:
        calls.append(spec.concurrency)
        tallies = {name: _tally(0.052, 0.0202) for name in sides}
        tallies["direct"] = DIRECT
        if gateway_bench.FLOOR in sides:
            bare = floor_tallies[spec.concurrency]
            assert bare is not None
            tallies[gateway_bench.FLOOR] = bare
        return tallies, 1

    async def in_service(server: Any, model: str) -> None:
        return None

    monkeypatch.setattr(gateway_bench, "compare_calm", compare_calm)
    monkeypatch.setattr(gateway_bench, "in_service", in_service)
    sizes = dataclasses.replace(
        gateway_bench.QUICK,
        levels=((1, 1), (16, 1), (512, 1)),
        peer_levels=(),
        floor_levels=(16, 512),
        again_levels=(),
        own_core_levels=(),
        output_tokens=8,
    )
    engine = SimpleNamespace(name="emu")
    rows = asyncio.run(
        gateway_bench.bench_overhead(sizes, engine, object(), None, object())  # type: ignore[arg-type]
    )
    assert calls == [1, 16, 512]
    steal = [row for row in rows if "steal" in row.what]
    again = [row for row in rows if "measured again" in row.what]
    assert len(steal) == len(again) == 3
    judges = [row.ok for row in rows if row.what.strip().startswith("can the box judge")]
    assert judges == [True, False]
    latency = ("TTFT added, p50 / p99", "ITL p99 / direct")
    verdicts = [row.ok for row in rows if row.what.strip() in latency]
    # chatapp at 1 and 16 streams, the relay at 16 (a reference), chatapp and the relay at 512.
    assert verdicts == [True, True, True, True, None, None, None, None, None, None]
