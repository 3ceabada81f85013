"""The steal row of gateway_bench: a run whose host took CPU from the VM says so."""

from __future__ import annotations

import psutil

from bench.gateway_noise import STEAL, host_steal
from bench.gateway_rows import Tally


def _tally(seconds: float, stolen: float) -> Tally:
    return Tally(seconds=seconds, stolen=stolen)


def test_steal_is_a_share_of_every_core_over_the_rounds() -> None:
    cores = psutil.cpu_count() or 1
    tally = _tally(seconds=10.0, stolen=0.1 * cores)
    assert abs(tally.stolen_share - 0.01) < 1e-9
    assert _tally(seconds=0.0, stolen=0.0).stolen_share == 0.0


def test_one_side_over_the_limit_fails_the_row() -> None:
    cores = psutil.cpu_count() or 1
    calm = _tally(seconds=10.0, stolen=0.0)
    stolen = _tally(seconds=10.0, stolen=10.0 * cores * STEAL * 2)
    row = host_steal({"direct": calm, "chatapp": stolen})
    assert row.ok is False
    assert "direct 0.0%" in row.measured and "chatapp 1.0%" in row.measured
    assert host_steal({"direct": calm, "chatapp": calm}).ok is True
