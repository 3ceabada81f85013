"""gateway_bench's judged 128-stream loads measure a round again when the host took CPU
from the VM during it, every side of the round, and say how many they measured again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from bench import gateway_noise
from bench.gateway_noise import CALM_RETRIES, STEAL, compare_calm
from bench.gateway_rows import Tally
from bench.timed_streams import Shot

SECONDS = 10.0


def _round(stolen_share: float, mark: int) -> Tally:
    cores = psutil.cpu_count() or 1
    shot = Shot(started=0.0, ended=1.0, arrivals=(0.05 + mark / 1000,), tokens=1)
    return Tally(shots=[shot], seconds=SECONDS, stolen=stolen_share * SECONDS * cores)


@pytest.fixture
def rounds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The steal share each measured round will have (its sides alike), in order."""
    shares: list[float] = []
    calls: list[list[str]] = []

    async def compare(sides: dict[str, Any], *args: Any, rounds: int) -> dict[str, Tally]:
        assert rounds == 1
        calls.append(list(sides))
        share = shares.pop(0)
        return {name: _round(share, len(calls)) for name in sides}

    monkeypatch.setattr(gateway_noise, "compare", compare)
    yield shares
    assert not shares, "every planned round was measured"
    # The sides take turns at running first, round after round.
    assert all(a == b[::-1] for a, b in zip(calls, calls[1:], strict=False))


def _compare(rounds: int) -> tuple[dict[str, Tally], int]:
    sides: dict[str, Any] = {"direct": object(), "chatapp": object()}
    return asyncio.run(compare_calm(sides, spec=None, engine=None, rounds=rounds))  # type: ignore[arg-type]


def test_a_round_the_host_took_cpu_in_is_measured_again(rounds: list[float]) -> None:
    rounds += [0.0, STEAL * 3, 0.001]
    tallies, remeasured = _compare(rounds=2)
    assert remeasured == 1
    for tally in tallies.values():
        assert len(tally.shots) == 2  # the first round and the third, not the noisy one
        assert [round(shot.arrivals[0], 3) for shot in tally.shots] == [0.051, 0.053]
        assert tally.seconds == 2 * SECONDS
        assert tally.stolen_share < STEAL


def test_after_its_retries_a_noisy_round_is_kept_and_shows(rounds: list[float]) -> None:
    rounds += [STEAL * 2] * (CALM_RETRIES + 1)
    tallies, remeasured = _compare(rounds=1)
    assert remeasured == CALM_RETRIES
    assert all(tally.stolen_share >= STEAL for tally in tallies.values())  # the steal row fails


def test_a_calm_run_measures_each_round_once(rounds: list[float]) -> None:
    rounds += [0.0, 0.0]
    tallies, remeasured = _compare(rounds=2)
    assert remeasured == 0 and all(len(t.shots) == 2 for t in tallies.values())
