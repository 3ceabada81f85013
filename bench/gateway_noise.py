"""Whether a run can judge a tail, and the rounds that let it.

On the development VM the host takes CPU from the guest (steal) in some hours and not in
others, and a tail measured then is the host's, not the gateway's. These put the run's own
noise beside its ratios (the engine measured twice; the steal each side saw) and measure a
judged load's round again when the host took CPU during it.
"""

from __future__ import annotations

from bench.gateway_rows import Tally, describe, measure, ms, streams_of
from bench.gateway_verdicts import added_ttft, itl_ratio, meets_latency_targets
from bench.report import Row
from bench.servers import Server
from bench.timed_streams import Spec

__all__ = [
    "CALM_RETRIES",
    "NOISE",
    "STEAL",
    "compare",
    "compare_calm",
    "floor_judges",
    "host_steal",
    "measured_again",
    "remeasured_row",
]

NOISE = 0.03  # how far apart two ITL p99s of one engine may be for a run to judge 1.10x
# The most of the box's CPU the host may take (steal) in a side's rounds for a run to judge
# a tail: on the 2-core VM, rounds with 0.0-0.3% measured alike and those at 0.8-6% did not.
STEAL = 0.005
CALM_RETRIES = 2  # rounds of one load measured again at most, when the host took STEAL or more


async def compare(
    sides: dict[str, Server], spec: Spec, engine: Server, rounds: int
) -> dict[str, Tally]:
    """The same load through each side, `rounds` times, in alternating order."""
    tallies = {name: Tally() for name in sides}
    order = list(sides)
    for _ in range(rounds):
        for name in order:
            await measure(sides[name], spec, engine, tallies[name])
        order.reverse()  # no side always runs right after another one
    return tallies


async def compare_calm(
    sides: dict[str, Server], spec: Spec, engine: Server, rounds: int
) -> tuple[dict[str, Tally], int]:
    """As `compare`, but a round in which the host took STEAL or more of the CPU while any
    side ran is measured again, every side of it (up to CALM_RETRIES times a load), and how
    many were is returned: on this VM such rounds stretch the tails of whatever ran in them,
    and a run that kept them could not judge a tail."""
    tallies = {name: Tally() for name in sides}
    kept = remeasured = 0
    while kept < rounds:
        measured = await compare(sides, spec, engine, rounds=1)
        sides = dict(reversed(sides.items()))  # no side always runs right after another one
        stolen = max(tally.stolen_share for tally in measured.values())
        if stolen >= STEAL and remeasured < CALM_RETRIES:
            remeasured += 1
            continue
        for name, tally in measured.items():
            tallies[name].add(tally)
        kept += 1
    return tallies, remeasured


def remeasured_row(count: int) -> Row:
    return Row(
        f"  rounds measured again: the host took {STEAL:.1%} or more of the CPU (at most "
        f"{CALM_RETRIES})",
        str(count),
    )


def measured_again(direct: Tally, again: Tally, streams: int) -> list[Row]:
    """The engine measured twice in the same rounds: how far two measurements of one thing
    land apart on this box, against which a ratio to direct can be read. Two ITL p99s more
    than NOISE apart mean this run cannot tell a 1.10x tail from a 1.00x one."""
    first, second = direct.stats, again.stats
    itl = second.itl[99] / first.itl[99]
    return [
        Row(f"{streams_of(streams)}, direct measured again", describe(again, cpu=False)),
        Row(
            "  the run's noise: ITL p99, TTFT p99, throughput / the first's",
            f"{itl:.2f}x, {second.ttft[99] / first.ttft[99]:.2f}x, "
            f"{second.throughput / first.throughput:.3f}x",
            f"ITL within {1 - NOISE:.2f}-{1 + NOISE:.2f}x",
            abs(itl - 1) <= NOISE,
        ),
    ]


def host_steal(tallies: dict[str, Tally]) -> Row:
    """How much of the box's CPU the host took from it (steal) during each side's rounds: a
    neighbour's load, seen by no process here, which stretches every tail it lands on."""
    shares = {name: tally.stolen_share for name, tally in tallies.items()}
    measured = ", ".join(f"{name} {share:.1%}" for name, share in shares.items())
    return Row(
        "  the host's steal of the box's CPU, each side's rounds",
        measured,
        f"< {STEAL:.1%} each",
        max(shares.values()) < STEAL,
    )


def floor_judges(direct: Tally, floor: Tally) -> Row:
    """Whether the box can judge a proxy's latency at this load: the bare relay (uvicorn and
    aiohttp alone, the floor of any gateway on this stack) must meet the targets itself.
    Where it does not, the load client, the engine and a proxy want more CPU than the box
    has, and a proxy's tail measures the box (on the 2-core VM, 512 streams)."""
    added50, added99 = added_ttft(direct, floor)
    return Row(
        "  can the box judge it: the bare relay's TTFT added, ITL p99 / direct",
        f"{ms(added50)} / {ms(added99)} ms, {itl_ratio(direct, floor):.2f}x",
        "within the targets",
        meets_latency_targets(direct, floor),
    )
