"""A proxy's rows against the engine direct, the bare relay and LiteLLM, with the issue's
targets and their verdicts: what gateway_bench judges, in one place."""

from __future__ import annotations

from bench.gateway_rows import Tally, describe, fidelity, ms, streams_of
from bench.report import Row

__all__ = [
    "ADDED_TTFT",
    "ITL_RATIO",
    "added_ttft",
    "itl_ratio",
    "itl_within_target",
    "meets_latency_targets",
    "ttft_within_targets",
    "versus_direct",
    "versus_floor",
    "versus_peer",
]

# The latency targets for a proxy against the engine direct, at every load.
ADDED_TTFT = (0.005, 0.020)  # seconds added at p50, at p99
ITL_RATIO = 1.10  # inter-token p99 through the proxy / direct


def added_ttft(direct: Tally, via: Tally) -> tuple[float, float]:
    """Seconds the proxy added to the time to first token, at p50 and at p99."""
    d, v = direct.stats, via.stats
    return v.ttft[50] - d.ttft[50], v.ttft[99] - d.ttft[99]


def itl_ratio(direct: Tally, via: Tally) -> float:
    return via.stats.itl[99] / direct.stats.itl[99]


def ttft_within_targets(added50: float, added99: float) -> bool:
    return added50 < ADDED_TTFT[0] and added99 < ADDED_TTFT[1]


def itl_within_target(ratio: float) -> bool:
    return ratio <= ITL_RATIO


def meets_latency_targets(direct: Tally, via: Tally) -> bool:
    return ttft_within_targets(*added_ttft(direct, via)) and itl_within_target(
        itl_ratio(direct, via)
    )


def versus_direct(
    name: str,
    direct: Tally,
    via: Tally,
    streams: int,
    asked: int,
    judged: bool = True,
    latency_judged: bool = True,
) -> list[Row]:
    """A proxy's rows against direct at one load: throughput, added TTFT, ITL, fidelity;
    with the targets' verdicts unless it is only a reference (`judged=False`). Its latency
    is not judged where the bare relay missed the same targets (`latency_judged=False`):
    there the box, not the proxy, set the tail (gateway_noise.floor_judges)."""
    ratio = via.stats.throughput / direct.stats.throughput
    target = {16: 0.99, 128: 0.97}.get(streams) if judged else None
    added50, added99 = added_ttft(direct, via)
    itl = itl_ratio(direct, via)
    latency = judged and latency_judged
    unjudged = "-" if not judged else "not judged: the floor missed it"
    return [
        Row(f"{streams_of(streams)}, {name}", describe(via)),
        Row(
            "  throughput / direct",
            f"{ratio:.3f}x",
            f">= {target:.2f}x" if target else "-",
            ratio >= target if target else None,
        ),
        Row(
            "  TTFT added, p50 / p99",
            f"{ms(added50)} / {ms(added99)} ms",
            f"< {ADDED_TTFT[0] * 1000:g} / < {ADDED_TTFT[1] * 1000:g} ms" if latency else unjudged,
            ttft_within_targets(added50, added99) if latency else None,
        ),
        Row(
            "  ITL p99 / direct",
            f"{itl:.2f}x",
            f"<= {ITL_RATIO:.2f}x" if latency else unjudged,
            itl_within_target(itl) if latency else None,
        ),
        fidelity(via, asked),
    ]


def versus_floor(ours: Tally, bare: Tally) -> Row:
    """chatapp's tail over the bare relay's in the same rounds: what chatapp itself adds."""
    return Row("  chatapp's ITL p99 / the bare relay's", f"{itl_ratio(bare, ours):.2f}x")


def versus_peer(direct: Tally, ours: Tally, peer: Tally) -> list[Row]:
    """Our overhead over LiteLLM's, three ways: added TTFT, throughput lost, CPU a token."""
    d, o, p = direct.stats, ours.stats, peer.stats
    rows = []
    pairs = {
        "added TTFT p50": (added_ttft(direct, ours)[0], added_ttft(direct, peer)[0]),
        "throughput lost": (1 - o.throughput / d.throughput, 1 - p.throughput / d.throughput),
        "proxy CPU a token": (ours.cpu_per_1k, peer.cpu_per_1k),
    }
    for what, (mine, theirs) in pairs.items():
        if theirs <= 0.001:
            rows.append(Row(f"  chatapp / LiteLLM, {what}", "n/a (LiteLLM lost ~nothing)"))
            continue
        ratio = mine / theirs
        rows.append(Row(f"  chatapp / LiteLLM, {what}", f"{ratio:.2f}x", "<= 0.50x", ratio <= 0.5))
    return rows
