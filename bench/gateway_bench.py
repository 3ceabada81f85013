"""Measure what `chatapp serve` costs a stream, next to LiteLLM's proxy, in one run.

Run as `.venv/bin/python -m bench.gateway_bench` (15–23 minutes on the 2-core VM; add
`--quick` for a smoke run, `--no-litellm` to leave the peer out). It starts emulated engines
(bench/emulator.py, each its own process: `emu` for the loads, `emu-slow` for the many-streams
run, `emu-burst` to back a stalled reader up fast), five `chatapp serve` gateways over them
(bench/servers.py: the default; `record_usage = false`; the same with conversations that store
no messages, bench/unstored_serve.py; generous `[tiers]`; a fresh one for the memory count),
LiteLLM's proxy over `emu` (bench/litellm_side.py) and a bare uvicorn + aiohttp relay over
`emu` (bench/copier.py, the stack's floor), then sends the same closed-loop loads of single
streamed requests (bench/timed_streams.py) straight to the engine and through each, rounds
interleaved. The load client, the gateways and the engines share this
box's cores; the machine line says how many, and how busy other processes kept them. At 128
streams the load is measured once more with the proxy alone on a core (bench/cores.py), as on
a GPU box where nothing else runs on the gateway's cores. The targets and their verdicts are
in bench/gateway_verdicts.py; whether a run can judge a tail, in bench/gateway_noise.py; the
features' on/off loads are bench/gateway_features.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import uvicorn

from bench import litellm_side
from bench.cores import own_core, pinned
from bench.gateway_features import bench_features
from bench.gateway_fidelity import bench_hold, bench_stall
from bench.gateway_noise import (
    compare,
    compare_calm,
    floor_judges,
    host_steal,
    measured_again,
    remeasured_row,
)
from bench.gateway_rows import (
    REST,
    Tally,
    describe,
    fidelity,
    in_service,
    machine_busy,
    machine_stolen,
    measure,
    ms,
    set_rest,
    streams_of,
)
from bench.gateway_verdicts import versus_direct, versus_floor, versus_peer
from bench.load import run
from bench.report import Row, console_for, print_facts, print_table
from bench.servers import (
    UNSTORED,
    Server,
    cpu_seconds,
    processes_in,
    start_copier,
    start_engines,
    start_gateways,
)
from bench.timed_streams import Spec, run_shots

TTFT_MS = 50
RATE = 50.0  # tokens a second, each stream of `emu`
SLOW_RATE = 4.0  # `emu-slow`: 1,000 streams at 4 tokens/s are 4,000 tokens/s in all
ENGINES = {
    "emu": [f"--tokens-per-second={RATE}"],
    "emu-slow": [f"--tokens-per-second={SLOW_RATE}"],
    "emu-burst": ["--tokens-per-second=20000"],  # backs a stalled reader up in a blink
}
ENGINE_OPTIONS = [f"--ttft-ms={TTFT_MS}", "--capacity=0", "--prefix-cache-blocks=0"]
STALL_SPREAD = 1.0
GATEWAYS = {
    "default": "default",
    "no-usage": "no-usage",
    "unstored": UNSTORED,
    "tiers": "tiers",
    "fresh": "default",
}
FLOOR = "bare relay (uvicorn + aiohttp)"  # bench/copier.py: the stack without chatapp
OWN_CORE = "on a core of its own"
AGAIN = "direct, again"  # the engine measured a second time in the same rounds: the noise


@dataclass(frozen=True)
class Sizes:
    """How much each part does; `--quick` shrinks everything for a smoke run."""

    # (streams, rounds): 128 streams keep four, as on a core of their own: calm rounds read
    # the shared-core tail 1.01-1.13x one by one, and two left its verdict to one round's draw
    levels: tuple[tuple[int, int], ...]
    peer_levels: tuple[int, ...]  # where LiteLLM is measured
    floor_levels: tuple[int, ...]  # where the bare relay is: whether the box can judge a proxy
    again_levels: tuple[int, ...]  # where direct is measured twice, to show the run's noise
    own_core_levels: tuple[int, ...]  # measured again with the proxy alone on a core
    own_core_rounds: int  # more than its level's: one build's tail read 1.03-1.12x a round
    per_user: int  # requests each user sends back to back in the overhead loads
    burst_levels: tuple[int, ...]  # N streams started in the same instant
    output_tokens: int
    prompt_tokens: int
    stall_streams: int  # starting over STALL_SPREAD seconds
    feature_streams: int
    feature_requests: int  # each user's, back to back: waves that start together
    feature_rounds: int  # a chats wave's ratio moves 0.955-0.992x from one round to the next
    hold_streams: int
    hold_tokens: int
    hold_spread: float
    hold_direct: bool
    rest: float  # seconds each server rests between measured runs (gateway_rows.REST)


FULL = Sizes(
    levels=((1, 2), (16, 3), (128, 4), (512, 1)),
    peer_levels=(16, 128),
    floor_levels=(16, 128, 512),
    again_levels=(128,),
    own_core_levels=(128,),
    own_core_rounds=4,
    per_user=3,
    burst_levels=(16, 128),
    output_tokens=128,
    prompt_tokens=64,
    stall_streams=64,
    feature_streams=128,
    feature_requests=3,
    feature_rounds=6,
    hold_streams=1000,
    hold_tokens=72,
    hold_spread=8.0,
    hold_direct=True,
    rest=REST,
)
QUICK = dataclasses.replace(
    FULL,
    levels=((1, 2), (16, 1), (64, 1)),
    peer_levels=(16,),
    floor_levels=(16, 64),
    again_levels=(64,),
    own_core_levels=(64,),
    own_core_rounds=1,
    per_user=2,
    burst_levels=(16,),
    output_tokens=64,
    stall_streams=16,
    feature_streams=32,
    feature_requests=1,
    feature_rounds=1,
    hold_streams=200,
    hold_tokens=24,
    hold_spread=2.0,
    hold_direct=False,
    rest=0.0,  # runs too short for rests to be worth their time
)


async def warm_pool(sizes: Sizes, engine: Server, gateway: Server) -> list[Row]:
    """The largest measured burst again at once, while the gateway's pool holds the last
    run's idle engine connections (as under steady traffic), against one after a rest."""
    big = max(n for n, _ in sizes.levels if n <= sizes.feature_streams)
    spec = Spec(
        model=engine.name,
        concurrency=big,
        requests=big,
        prompt_tokens=sizes.prompt_tokens,
        max_tokens=sizes.output_tokens,
    )
    rested, warm = Tally(), Tally()
    await measure(gateway, spec, engine, rested)
    await measure(gateway, spec, engine, warm, rest=False)
    ratio = warm.stats.throughput / rested.stats.throughput
    return [
        Row(f"{streams_of(big)}, chatapp, after a rest", describe(rested)),
        Row(f"{streams_of(big)}, chatapp, at once after the same (warm pool)", describe(warm)),
        Row("  throughput warm pool / after a rest", f"{ratio:.3f}x"),
    ]


def answer_seconds(sizes: Sizes) -> float:
    """How long one answer takes the engine: its TTFT, then every token at the stream rate."""
    return TTFT_MS / 1000 + sizes.output_tokens / RATE


async def bench_overhead(
    sizes: Sizes, engine: Server, gateway: Server, peer: Server | None, floor: Server
) -> list[Row]:
    """Each load straight to the engine, through chatapp, through LiteLLM and through the
    bare relay (bench/copier.py: uvicorn and aiohttp alone, the floor), interleaved.

    N users each send `per_user` requests back to back, the first ones starting at seeded
    random moments over one answer's time: N streams in flight with their starts spread
    out, as people's turns arrive (the same schedule on every side). Started all in the same
    instant instead, N streams stay in lockstep, every wave a burst that queues behind the
    gateway's admission of the others: `bench_bursts` measures that case on its own.

    Every load's tail is judged, so at every load a round the host took CPU in is measured
    again and the steal each side saw is shown (a 16-stream tail stretched to 1.15x in a run
    whose 128-stream rounds saw 3% steal, with nothing in the table to say why).
    """
    rows: list[Row] = []
    for streams, rounds in sizes.levels:
        sides = {"direct": engine, "chatapp": gateway}
        if peer is not None and streams in sizes.peer_levels:
            sides["LiteLLM"] = peer
        if streams in sizes.floor_levels:
            sides[FLOOR] = floor
        if streams in sizes.again_levels:
            sides[AGAIN] = engine
        spec = Spec(
            model=engine.name,
            concurrency=streams,
            requests=streams * sizes.per_user,
            prompt_tokens=sizes.prompt_tokens,
            max_tokens=sizes.output_tokens,
            start_spread=answer_seconds(sizes) if streams > 1 else 0.0,
        )
        for server in sides.values():
            if note := await in_service(server, engine.name):
                rows.append(note)
        tallies, remeasured = await compare_calm(sides, spec, engine, rounds)
        direct = tallies["direct"]
        box = floor_judges(direct, tallies[FLOOR]) if FLOOR in tallies else None
        rows.append(Row(f"{streams_of(streams)}, direct", describe(direct, cpu=False)))
        for name in sides:
            if name not in ("direct", AGAIN):
                rows += versus_direct(
                    name,
                    direct,
                    tallies[name],
                    streams,
                    sizes.output_tokens,
                    judged=name != FLOOR,
                    latency_judged=box is None or bool(box.ok),
                )
        if "LiteLLM" in tallies:
            rows += versus_peer(direct, tallies["chatapp"], tallies["LiteLLM"])
        if box is not None:
            rows += [versus_floor(tallies["chatapp"], tallies[FLOOR]), box]
        if AGAIN in tallies:
            rows += measured_again(direct, tallies[AGAIN], streams)
        rows += [host_steal(tallies), remeasured_row(remeasured)]
        if streams in sizes.own_core_levels:
            rows += await bench_own_core(spec, sizes.own_core_rounds, engine, gateway, floor)
    return rows


async def bench_own_core(
    spec: Spec, rounds: int, engine: Server, gateway: Server, floor: Server
) -> list[Row]:
    """The same load with the proxy alone on a core and the load client and the engine on
    the others, as on a GPU box where nothing else runs on the gateway's cores: what the
    gateway adds when it never waits for a core the others hold (bench/cores.py)."""
    streams = streams_of(spec.concurrency)
    cores = own_core()
    if cores is None:
        return [Row(f"{streams}, the proxy {OWN_CORE}", "not measured: this box has one core")]
    proxy_cores, rest = cores
    placement = {os.getpid(): rest, engine.process.pid: rest}
    placement |= {gateway.process.pid: proxy_cores, floor.process.pid: proxy_cores}
    sides = {"direct": engine, "chatapp": gateway, FLOOR: floor}
    with pinned(placement):
        tallies, remeasured = await compare_calm(sides, spec, engine, rounds)
    direct, ours, bare = tallies["direct"], tallies["chatapp"], tallies[FLOOR]
    box = floor_judges(direct, bare)
    where = f"the load client and the engine on core {_listed(rest)}"
    asked = spec.max_tokens
    return [
        Row(f"{streams}, direct, {where}", describe(direct, cpu=False)),
        *versus_direct(
            f"chatapp {OWN_CORE} (core {_listed(proxy_cores)})",
            direct,
            ours,
            spec.concurrency,
            asked,
            latency_judged=bool(box.ok),
        ),
        *versus_direct(f"{FLOOR} {OWN_CORE}", direct, bare, spec.concurrency, asked, judged=False),
        versus_floor(ours, bare),
        box,
        host_steal(tallies),
        remeasured_row(remeasured),
    ]


def _listed(cores: set[int]) -> str:
    return ", ".join(str(core) for core in sorted(cores))


async def bench_bursts(
    sizes: Sizes, engine: Server, gateway: Server, peer: Server | None
) -> list[Row]:
    """N streams started in the same instant, straight and through chatapp; then what each
    new stream costs a proxy's CPU (which a burst queues behind)."""
    rows: list[Row] = []
    for streams in sizes.burst_levels:
        spec = Spec(
            model=engine.name,
            concurrency=streams,
            requests=streams,
            prompt_tokens=sizes.prompt_tokens,
            max_tokens=sizes.output_tokens,
        )
        if note := await in_service(gateway, engine.name):
            rows.append(note)
        sides = {"direct": engine, "chatapp": gateway}
        tallies = await compare(sides, spec, engine, rounds=2)
        direct, ours = tallies["direct"].stats, tallies["chatapp"].stats
        added50, added99 = ours.ttft[50] - direct.ttft[50], ours.ttft[99] - direct.ttft[99]
        rows += [
            Row(f"{streams_of(streams)} at once, direct", describe(tallies["direct"], cpu=False)),
            Row(f"{streams_of(streams)} at once, chatapp", describe(tallies["chatapp"])),
            Row("  throughput / direct", f"{ours.throughput / direct.throughput:.3f}x"),
            Row("  TTFT added, p50 / p99", f"{ms(added50)} / {ms(added99)} ms"),
            fidelity(tallies["chatapp"], sizes.output_tokens),
        ]
    if sizes.rest:  # with no rests, every run found a warm pool already
        rows += await warm_pool(sizes, engine, gateway)
    spec = Spec(model=engine.name, concurrency=16, requests=160, max_tokens=1)
    costs = []
    for name, proxy in (("chatapp", gateway), ("LiteLLM", peer)):
        if proxy is not None:
            tally = Tally()
            await measure(proxy, spec, engine, tally)
            costs.append(f"{name} {tally.cpu / len(tally.shots) * 1000:.1f}")
    what = "CPU a request: 160 one-token streams, 16 users"
    rows.append(Row(what, ", ".join(costs) + " ms"))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run every part and print its table; verdicts live in the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--no-litellm", action="store_true", help="leave the peer out")
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep every process's log in this folder"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    set_rest(sizes.rest)
    console = console_for(200)
    started = time.perf_counter()
    busy_before, stolen_before = machine_busy(), machine_stolen()
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as scratch,
        processes_in(args.logs or Path(scratch)) as procs,
    ):
        tmp = procs.tmp
        peer: Server | None = None
        peer_cpu = 0.0
        why = "left out (--no-litellm)" if args.no_litellm else ""
        if not args.no_litellm:
            with console.status("LiteLLM's venv (the first run installs it: minutes)..."):
                why = litellm_side.ensure_venv(log=tmp / "litellm-install.log") or ""
        with console.status("starting engines, gateways and LiteLLM..."):
            engines = start_engines(
                procs, ENGINES, [*ENGINE_OPTIONS, f"--output-tokens={sizes.output_tokens}"]
            )
            proxy = None
            if not args.no_litellm and not why:
                proxy = litellm_side.start_litellm({"emu": engines["emu"].base_url}, tmp)
                procs.adopt(proxy.popen)
            gateways = start_gateways(procs, engines, GATEWAYS)
            floor = start_copier(procs, engines["emu"])
            if proxy is not None:
                try:
                    proxy.wait_ready()
                    peer = Server("litellm", proxy.root, proxy.process, proxy.key)
                except RuntimeError as exc:
                    why = str(exc)
        emu = engines["emu"]
        warm_errors: list[str] = []
        with console.status("warming up..."):
            for server in [*gateways.values(), *([peer] if peer else [])]:
                # At the largest load most parts run, so that pools and buffers are grown;
                # but the memory count's gateway only a little, so that it still has to grow.
                n = 8 if server is gateways["fresh"] else sizes.feature_streams
                warm = Spec(model="emu", concurrency=n, requests=n, max_tokens=8)
                shots, _ = run(run_shots(server.base_url, warm, api_key=server.key))
                failed = [s.error for s in shots if s.error]
                if len(failed) == len(shots):
                    raise RuntimeError(f"warm-up through {server.name} failed: {failed[0]}")
                if failed:  # not fatal, but not hidden either
                    warm_errors.append(
                        f"{len(failed)} of {len(shots)} through {server.name}: {failed[0][:120]}"
                    )
        setup = time.perf_counter() - started
        print_facts(
            console,
            f"uvicorn {uvicorn.__version__}",
            "load client: raw asyncio HTTP/1.1 in this process",
            f"LiteLLM {litellm_side.version()}" if peer else f"LiteLLM: {why}",
            f"set-up and warm-up {setup:.0f} s",
            quick=args.quick,
        )
        for line in warm_errors:
            console.print(f"warm-up errors: {line}", highlight=False, markup=False)
        engine_line = (
            f"engine: emulator, TTFT {TTFT_MS} ms, {RATE:.0f} tok/s a stream, no capacity limit, "
            f"no prefix cache; {sizes.prompt_tokens}-token prompts, {sizes.output_tokens}-token "
            "answers, every request streamed"
        )
        part = time.perf_counter()
        levels = ", ".join(str(n) for n in sizes.floor_levels)
        again = " and ".join(str(n) for n in sizes.again_levels)
        own = " and ".join(str(n) for n in sizes.own_core_levels)
        with console.status("gateway overhead..."):
            rows = run(bench_overhead(sizes, emu, gateways["default"], peer, floor))
        print_table(
            console,
            f"gateway overhead: N streams in flight straight to the engine, through chatapp "
            f"serve{', through LiteLLM' if peer else ''} and (at {levels}) through a bare "
            f"uvicorn + aiohttp relay, the floor; N users, each sending "
            f"{sizes.per_user} requests back to back, start over one answer's time "
            f"({answer_seconds(sizes):.2f} s); rounds interleaved ({engine_line}); at {again} "
            "streams the engine is measured twice, the run's own noise, and at "
            f"{own} again with the proxy alone on a core; TTFT and ITL p50 / p99 "
            f"[{time.perf_counter() - part:.0f} s]",
            rows,
        )
        part = time.perf_counter()
        with console.status("bursts..."):
            rows = run(bench_bursts(sizes, emu, gateways["default"], peer))
        print_table(
            console,
            "bursts: N streams started in the same instant (each queues behind the gateway's "
            f"admission of the others), one request a user [{time.perf_counter() - part:.0f} s]",
            rows,
        )
        if proxy is not None:
            peer_cpu = cpu_seconds(proxy.process) if peer else 0.0
            proxy.stop()  # idle from now on: its process leaves the cores to the rest
        part = time.perf_counter()
        with console.status("stalled reader..."):
            spec = Spec(
                model="emu",
                concurrency=sizes.stall_streams,
                requests=sizes.stall_streams,
                prompt_tokens=sizes.prompt_tokens,
                max_tokens=sizes.output_tokens,
                start_spread=STALL_SPREAD,
            )
            burst = engines["emu-burst"]
            rows = run(bench_stall(spec, emu, burst, gateways["default"]))
        title = (
            f"fidelity: one client stops reading its stream; the others start over "
            f"{STALL_SPREAD:.0f} s [{time.perf_counter() - part:.0f} s]"
        )
        print_table(console, title, rows)
        part = time.perf_counter()
        with console.status("feature costs..."):
            spec = Spec(
                model=emu.name,
                concurrency=sizes.feature_streams,
                requests=sizes.feature_streams * sizes.feature_requests,
                prompt_tokens=sizes.prompt_tokens,
                max_tokens=sizes.output_tokens,
            )
            spread = answer_seconds(sizes)
            rows = run(bench_features(spec, sizes.feature_rounds, spread, emu, gateways))
        title = "the cost of chatapp's own features, on / off in one run, rounds rotated"
        print_table(console, f"{title} [{time.perf_counter() - part:.0f} s]", rows)
        part = time.perf_counter()
        with console.status("many streams at once..."):
            spec = Spec(
                model="emu-slow",
                concurrency=sizes.hold_streams,
                requests=sizes.hold_streams,
                prompt_tokens=sizes.prompt_tokens,
                max_tokens=sizes.hold_tokens,
                start_spread=sizes.hold_spread,
            )
            slow, fresh = engines["emu-slow"], gateways["fresh"]
            rows = run(bench_hold(spec, SLOW_RATE, slow, fresh, sizes.hold_direct))
        print_table(
            console,
            f"concurrency: {sizes.hold_streams:,} streams of {sizes.hold_tokens} tokens at "
            f"{SLOW_RATE:.0f} tok/s ({sizes.hold_streams * SLOW_RATE:,.0f} tok/s in all), "
            f"starting over {sizes.hold_spread:.0f} s, through one fresh gateway process "
            f"[{time.perf_counter() - part:.0f} s]",
            rows,
        )
        ours = cpu_seconds(psutil.Process()) + peer_cpu  # this process and every child
    seconds = time.perf_counter() - started
    busy = machine_busy() - busy_before
    stolen = machine_stolen() - stolen_before
    console.print(
        f"total {seconds:.0f} s; of the box's {psutil.cpu_count()} cores the benchmark's "
        f"processes kept {ours / seconds:.2f} busy on average, other processes "
        f"{max(0.0, busy - ours) / seconds:.2f}, and the host took "
        f"{stolen / seconds:.3f} of them from this VM (steal)",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
