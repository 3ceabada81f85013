"""Measure what `chatapp serve` costs a stream, next to LiteLLM's proxy, in one run.

Run as `.venv/bin/python -m bench.gateway_bench` (about five minutes on the 2-core VM; add
`--quick` for a smoke run, `--no-litellm` to leave the peer out). It starts emulated engines
(bench/emulator.py, each its own process: `emu` for the loads, `emu-slow` for the many-streams
run, `emu-burst` to back a stalled reader up fast), four `chatapp serve` gateways over them
(bench/servers.py: the default; `record_usage = false`; generous `[tiers]`; a fresh one for
the memory count) and LiteLLM's proxy over `emu` (bench/litellm_side.py), then sends the same
closed-loop loads of single streamed requests (bench/timed_streams.py) straight to the engine
and through each, rounds interleaved. The load client, the gateways and the engines share this
box's cores; the machine line says how many, and how busy other processes kept them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import uvicorn

from bench import litellm_side
from bench.report import Row, console_for, print_facts, print_table
from bench.servers import (
    Server,
    cpu_seconds,
    metric,
    processes_in,
    start_engines,
    start_gateways,
)
from bench.timed_streams import Shot, Spec, Stats, run_shots, stats

TTFT_MS = 50
RATE = 50.0  # tokens a second, each stream of `emu`
SLOW_RATE = 4.0  # `emu-slow`: 1,000 streams at 4 tokens/s are 4,000 tokens/s in all
ENGINES = {
    "emu": [f"--tokens-per-second={RATE}"],
    "emu-slow": [f"--tokens-per-second={SLOW_RATE}"],
    "emu-burst": ["--tokens-per-second=20000"],  # backs a stalled reader up in a blink
}
ENGINE_OPTIONS = [f"--ttft-ms={TTFT_MS}", "--capacity=0", "--prefix-cache-blocks=0"]
STALLED_TOKENS = 32000  # ~6 MB of chunks: more than the sockets between can hold
STALL_SPREAD = 1.0
GATEWAYS = {"default": "default", "no-usage": "no-usage", "tiers": "tiers", "fresh": "default"}


@dataclass(frozen=True)
class Sizes:
    """How much each part does; `--quick` shrinks everything for a smoke run."""

    levels: tuple[tuple[int, int], ...]  # (streams, rounds)
    peer_levels: tuple[int, ...]
    output_tokens: int
    prompt_tokens: int
    stall_streams: int  # starting over STALL_SPREAD seconds
    feature_streams: int
    feature_rounds: int
    hold_streams: int
    hold_tokens: int
    hold_spread: float
    hold_direct: bool


FULL = Sizes(
    levels=((1, 6), (16, 3), (128, 2), (512, 1)),
    peer_levels=(16, 128),
    output_tokens=128,
    prompt_tokens=64,
    stall_streams=64,
    feature_streams=128,
    feature_rounds=3,
    hold_streams=1000,
    hold_tokens=72,
    hold_spread=8.0,
    hold_direct=True,
)
QUICK = dataclasses.replace(
    FULL,
    levels=((1, 2), (16, 1), (64, 1)),
    peer_levels=(16,),
    output_tokens=64,
    stall_streams=16,
    feature_streams=32,
    feature_rounds=1,
    hold_streams=200,
    hold_tokens=24,
    hold_spread=2.0,
    hold_direct=False,
)


@dataclass
class Tally:
    """One side's rounds of one load, added up."""

    shots: list[Shot] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0  # the server's CPU seconds (a gateway's or the peer's; none direct)
    emitted: int = 0  # tokens the engine generated for these requests

    @property
    def stats(self) -> Stats:
        return stats(self.shots, self.seconds)

    @property
    def cpu_per_1k(self) -> float:
        tokens = sum(s.tokens for s in self.shots)
        return self.cpu / tokens * 1000 if tokens else float("nan")


# A gateway's idle engine connections are dropped 5 s after use (httpx's keep-alive expiry).
# A burst that finds a pool of many idle ones is much slower (httpcore scans the pool for
# every request: see the "warm pool" row), so each measured run comes at least this long
# after the same server's last one: every run starts alike, and the slow case is measured
# on its own.
# (`--quick` rests not at all: its runs are too short for the rests to be worth their time.)
REST = 5.5
_last_run: dict[str, float] = {}
_rest = [REST]


async def measure(
    server: Server, spec: Spec, engine: Server, tally: Tally, rest: bool = True
) -> None:
    """Run one load through `server`, adding its shots, the engine's tokens and its CPU."""
    if rest:
        due = _last_run.get(server.name, 0.0) + _rest[0]
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    emitted = metric(engine.root, "vllm:generation_tokens_total")
    cpu = cpu_seconds(server.process)
    shots, seconds = await run_shots(server.base_url, spec, api_key=server.key)
    tally.cpu += cpu_seconds(server.process) - cpu
    tally.emitted += int(metric(engine.root, "vllm:generation_tokens_total") - emitted)
    tally.shots += shots
    tally.seconds += seconds
    _last_run[server.name] = time.monotonic()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def streams_of(n: int) -> str:
    return f"{n:,} stream" + ("" if n == 1 else "s")


def describe(tally: Tally, cpu: bool = True) -> str:
    s = tally.stats
    text = (
        f"{s.throughput:,.0f} tok/s, TTFT {ms(s.ttft[50])} / {ms(s.ttft[99])} ms, "
        f"ITL {ms(s.itl[50])} / {ms(s.itl[99])} ms"
    )
    if cpu:
        text += f", {tally.cpu_per_1k:.3f} CPU-s / 1k tok"
    return text + (f", {s.errors} errors" if s.errors else "")


def fidelity(tally: Tally, asked: int) -> Row:
    """Errors, content chunks received against the tokens the engine generated, short ones."""
    s = tally.stats
    short = sum(1 for shot in tally.shots if shot.tokens != asked)
    text = f"{s.errors} errors; chunks {s.tokens:,} / engine tokens {tally.emitted:,}"
    text += f"; {short} streams != {asked}" if short else ""
    text += f" ({s.first_error[:80]})" if s.first_error else ""
    ok = s.errors == 0 and s.tokens == tally.emitted and not short
    return Row("  errors, chunks received / engine's", text, "0; equal", ok)


def versus_direct(name: str, direct: Tally, via: Tally, streams: int, asked: int) -> list[Row]:
    """A proxy's rows against direct at one load: throughput, added TTFT, ITL, fidelity."""
    d, v = direct.stats, via.stats
    ratio = v.throughput / d.throughput
    target = {16: 0.99, 128: 0.97}.get(streams)
    added50, added99 = v.ttft[50] - d.ttft[50], v.ttft[99] - d.ttft[99]
    itl = v.itl[99] / d.itl[99]
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
            "< 5 / < 20 ms",
            added50 < 0.005 and added99 < 0.020,
        ),
        Row("  ITL p99 / direct", f"{itl:.2f}x", "<= 1.10x", itl <= 1.10),
        fidelity(via, asked),
    ]


def versus_peer(direct: Tally, ours: Tally, peer: Tally) -> list[Row]:
    """Our overhead over LiteLLM's, three ways: added TTFT, throughput lost, CPU a token."""
    d, o, p = direct.stats, ours.stats, peer.stats
    rows = []
    pairs = {
        "added TTFT p50": (o.ttft[50] - d.ttft[50], p.ttft[50] - d.ttft[50]),
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


async def bench_overhead(
    sizes: Sizes, engine: Server, gateway: Server, peer: Server | None
) -> list[Row]:
    """Each load straight to the engine, through chatapp and through LiteLLM, interleaved."""
    rows: list[Row] = []
    for streams, rounds in sizes.levels:
        sides = {"direct": engine, "chatapp": gateway}
        if peer is not None and streams in sizes.peer_levels:
            sides["LiteLLM"] = peer
        tallies = {name: Tally() for name in sides}
        spec = Spec(
            model=engine.name,
            concurrency=streams,
            requests=streams,
            prompt_tokens=sizes.prompt_tokens,
            max_tokens=sizes.output_tokens,
        )
        order = list(sides)
        for _ in range(rounds):
            for name in order:
                await measure(sides[name], spec, engine, tallies[name])
            order.reverse()  # no side always runs right after another one
        direct = tallies["direct"]
        rows.append(Row(f"{streams_of(streams)}, direct", describe(direct, cpu=False)))
        for name in sides:
            if name != "direct":
                rows += versus_direct(name, direct, tallies[name], streams, sizes.output_tokens)
        if "LiteLLM" in tallies:
            rows += versus_peer(direct, tallies["chatapp"], tallies["LiteLLM"])
    if _rest[0]:
        rows += await warm_pool(sizes, engine, gateway)
    # What a burst of new streams queues behind: each proxy's CPU for one short request.
    spec = Spec(model=engine.name, concurrency=16, requests=160, max_tokens=1)
    costs = []
    for name, server in (("chatapp", gateway), ("LiteLLM", peer)):
        if server is not None:
            tally = Tally()
            await measure(server, spec, engine, tally)
            costs.append(f"{name} {tally.cpu / len(tally.shots) * 1000:.1f}")
    what = "CPU a request: 160 one-token streams, 16 users"
    rows.append(Row(what, ", ".join(costs) + " ms"))
    return rows


async def _stalled_reader(gateway: Server, model: str) -> asyncio.StreamWriter:
    """A stream whose client reads up to its first token and then nothing: a small receive
    window (4 KB) and a small read buffer, so the gateway's writes back up soon."""
    parts = urlsplit(gateway.root)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2048)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "a long answer I will not read"}],
        "max_tokens": STALLED_TOKENS,
        "stream": True,
    }
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {parts.netloc}\r\n"
        f"authorization: Bearer {gateway.key}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await reader.readuntil(b"\r\n\r\n")
    while b'"content":"tok' not in await reader.readuntil(b"\n\n"):
        pass
    return writer


async def _settled(root: str, name: str, want: float, timeout: float) -> float | None:
    """Seconds until a metric reads `want`, or None if it did not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await asyncio.to_thread(metric, root, name) == want:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return None


def stream_rate(shots: Sequence[Shot]) -> float:
    """The median stream's tokens a second from its first token to its last (no TTFT)."""
    rates = sorted(
        (len(s.arrivals) - 1) / (s.arrivals[-1] - s.arrivals[0])
        for s in shots
        if not s.error and len(s.arrivals) > 1 and s.arrivals[-1] > s.arrivals[0]
    )
    return rates[len(rates) // 2] if rates else float("nan")


async def bench_stall(sizes: Sizes, engine: Server, burst: Server, gateway: Server) -> list[Row]:
    """Streams beside one client that stopped reading, against the same streams without it
    (one round before it stalls and one after it hangs up, so drift cancels out).

    The stalled answer (STALLED_TOKENS from a fast engine) is more than the sockets between
    can buffer, so once the engine has finished, the gateway is left holding the rest: its
    send to that client is blocked for as long as the others run.
    """
    spec = Spec(
        model=engine.name,
        concurrency=sizes.stall_streams,
        requests=sizes.stall_streams,
        prompt_tokens=sizes.prompt_tokens,
        max_tokens=sizes.output_tokens,
        start_spread=STALL_SPREAD,
    )
    before, after, beside = Tally(), Tally(), Tally()
    await measure(gateway, spec, engine, before)
    writer = await _stalled_reader(gateway, burst.name)
    generated = await _settled(burst.root, "vllm:num_requests_running", 0.0, 20)
    for _ in range(2):
        await measure(gateway, spec, engine, beside)
    held = await asyncio.to_thread(metric, gateway.root, "chatapp_active_streams")
    writer.transport.abort()
    closed = await _settled(gateway.root, "chatapp_active_streams", 0.0, 10)
    await measure(gateway, spec, engine, after)
    without = Tally(
        before.shots + after.shots,
        before.seconds + after.seconds,
        before.cpu + after.cpu,
        before.emitted + after.emitted,
    )
    ratio = beside.stats.throughput / without.stats.throughput
    rate = stream_rate(beside.shots) / stream_rate(without.shots)
    n = sizes.stall_streams
    blocked = generated is not None and held == 1
    stalled = (
        f"engine done ({STALLED_TOKENS:,} tokens) in {generated:.1f} s; the gateway still "
        f"holds the stream after the others' {beside.seconds:.1f} s: {'yes' if held else 'no'}"
        if generated is not None
        else "the engine was still generating after 20 s"
    )
    noise = f"{before.stats.throughput:,.0f} / {after.stats.throughput:,.0f} tok/s"
    return [
        Row(f"{n} streams, no stalled reader", describe(without)),
        Row(f"{n} streams beside 1 stalled reader", describe(beside)),
        Row("  throughput beside / without", f"{ratio:.3f}x", ">= 0.99x", ratio >= 0.99),
        Row(
            "  each stream's token rate beside / without, median",
            f"{rate:.3f}x",
            ">= 0.99x",
            rate >= 0.99,
        ),
        Row("  no stalled reader: the round before / the round after", noise),
        fidelity(beside, sizes.output_tokens),
        Row("stalled reader: gateway blocked on its send", stalled, "yes", blocked),
        Row(
            "stalled reader hangs up: the gateway closes its stream",
            f"in {closed:.1f} s" if closed is not None else "still open after 10 s",
            "< 10 s",
            closed is not None,
        ),
    ]


def limiter_active(gateway: Server, model: str) -> bool:
    """The [tiers] gateway meters: its answers carry x-ratelimit-* headers."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    headers = {"authorization": f"Bearer {gateway.key}"}
    answer = httpx.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers)
    return answer.status_code == 200 and "x-ratelimit-limit-requests" in answer.headers


async def bench_features(sizes: Sizes, engine: Server, gateways: dict[str, Server]) -> list[Row]:
    """The usage ledger on/off and the limiter on/off, as throughput and CPU ratios."""
    spec = Spec(
        model=engine.name,
        concurrency=sizes.feature_streams,
        requests=sizes.feature_streams,
        prompt_tokens=sizes.prompt_tokens,
        max_tokens=sizes.output_tokens,
    )
    names = ["no-usage", "default", "tiers"]
    tallies = {name: Tally() for name in names}
    for _ in range(sizes.feature_rounds):
        for name in names:
            await measure(gateways[name], spec, engine, tallies[name])
        names = names[1:] + names[:1]  # rotated: no gateway runs twice in a row
    active = await asyncio.to_thread(limiter_active, gateways["tiers"], engine.name)
    n = sizes.feature_streams
    rows = [
        Row(f"{n} streams, record_usage = false, no tiers", describe(tallies["no-usage"])),
        Row(f"{n} streams, record_usage = true, no tiers", describe(tallies["default"])),
        Row(f"{n} streams, record_usage = true, \\[tiers]", describe(tallies["tiers"])),
    ]
    for what, on, off in (
        ("persistence (usage outbox + ledger) on / off", "default", "no-usage"),
        ("rate limiter on / off (\\[tiers] admitting all)", "tiers", "default"),
    ):
        ratio = tallies[on].stats.throughput / tallies[off].stats.throughput
        cpu = tallies[on].cpu_per_1k / tallies[off].cpu_per_1k
        rows += [
            Row(f"{what}, throughput", f"{ratio:.3f}x", ">= 0.98x", ratio >= 0.98),
            Row(f"{what}, gateway CPU a token", f"{cpu:.2f}x"),
        ]
    errors = sum(t.stats.errors for t in tallies.values())
    rows.append(
        Row(
            "limiter metering every request (x-ratelimit headers), refusals",
            f"{'yes' if active else 'NO'}, {errors} errors",
            "yes, 0",
            active and errors == 0,
        )
    )
    return rows


class PeakRss:
    """Samples a process's RSS (with its children) on a thread, keeping the highest."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = 0
        for p in [self.process, *self.process.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def most_at_once(shots: Sequence[Shot]) -> int:
    """The most requests in flight at one instant, from their start and end times."""
    edges = sorted([(s.started, 1) for s in shots] + [(s.ended, -1) for s in shots])
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def event_delays(
    shots: Sequence[Shot], rate: float, window: tuple[float, float] = (0.0, float("inf"))
) -> list[float]:
    """How late each token came against a steady stream from that stream's first token,
    for the tokens that arrived within `window` (perf_counter times), sorted."""
    out = []
    for shot in shots:
        if not shot.error:
            a = shot.arrivals
            out += [
                a[k] - (a[0] + k / rate) for k in range(1, len(a)) if window[0] <= a[k] <= window[1]
            ]
    out.sort()
    return out


def p95(values: Sequence[float]) -> float:
    return values[max(0, round(0.95 * len(values)) - 1)] if values else float("nan")


async def bench_hold(sizes: Sizes, engine: Server, gateway: Server) -> list[Row]:
    """Many slow streams at once through one fresh gateway: errors, delays, memory.

    Event delay counts every token; "while all were in flight" only those that came after
    the last stream started and before the first one ended, when the gateway held them all.
    """
    n = sizes.hold_streams
    spec = Spec(
        model=engine.name,
        concurrency=n,
        requests=n,
        prompt_tokens=sizes.prompt_tokens,
        max_tokens=sizes.hold_tokens,
        start_spread=sizes.hold_spread,
    )
    rows: list[Row] = []
    sides = {"direct": engine, "chatapp": gateway} if sizes.hold_direct else {"chatapp": gateway}
    sampler = PeakRss(gateway.process)
    idle = sampler.rss()
    for name, server in sides.items():
        tally = Tally()
        if name == "chatapp":
            with sampler:
                await measure(server, spec, engine, tally)
        else:
            await measure(server, spec, engine, tally)
        s = tally.stats
        plateau = (max(x.started for x in s.shots), min(x.ended for x in s.shots))
        overall, held = (
            p95(event_delays(s.shots, SLOW_RATE)),
            p95(event_delays(s.shots, SLOW_RATE, plateau)),
        )
        at_once = most_at_once(s.shots)
        text = (
            f"{at_once:,} at once, TTFT p50 / p99 {ms(s.ttft[50])} / {ms(s.ttft[99])} ms, "
            f"event delay p95 {ms(overall)} ms, while all in flight {ms(held)} ms"
        )
        what = f"{streams_of(n)} at {SLOW_RATE:.0f} tok/s"
        if name == "direct":
            rows.append(Row(f"{what}, direct", text))
            continue
        cores = tally.cpu / tally.seconds
        rows += [
            Row(f"{what}, chatapp", f"{text}; gateway {cores:.2f} cores"),
            Row(
                "  held at once, errors",
                f"{at_once:,}, {s.errors}",
                f"{n:,}, 0",
                at_once >= n and s.errors == 0,
            ),
            Row("  event delay p95 while all in flight", f"{ms(held)} ms", "< 25 ms", held < 0.025),
            Row(
                "  event delay p95, ramp included", f"{ms(overall)} ms", "< 25 ms", overall < 0.025
            ),
            fidelity(tally, sizes.hold_tokens),
        ]
    per = (sampler.peak - idle) / max(1, n)
    after = sampler.rss()
    rows.append(
        Row(
            "  gateway RSS idle → peak → after",
            f"{idle / 2**20:.0f} → {sampler.peak / 2**20:.0f} → {after / 2**20:.0f} MB: "
            f"{per / 1024:.0f} KB a stream",
        )
    )
    return rows


def machine_busy() -> float:
    times = psutil.cpu_times()
    return times.user + times.system + getattr(times, "nice", 0.0) + getattr(times, "irq", 0.0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every part and print its table; verdicts live in the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--no-litellm", action="store_true", help="leave the peer out")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    _rest[0] = 0.0 if args.quick else REST
    console = console_for(200)
    started = time.perf_counter()
    busy_before = machine_busy()
    with tempfile.TemporaryDirectory() as tmp, processes_in(Path(tmp)) as procs:
        peer: Server | None = None
        peer_cpu = 0.0
        why = "left out (--no-litellm)" if args.no_litellm else ""
        if not args.no_litellm:
            with console.status("LiteLLM's venv (the first run installs it: minutes)..."):
                why = litellm_side.ensure_venv(log=Path(tmp) / "litellm-install.log") or ""
        with console.status("starting engines, gateways and LiteLLM..."):
            engines = start_engines(
                procs, ENGINES, [*ENGINE_OPTIONS, f"--output-tokens={sizes.output_tokens}"]
            )
            proxy = None
            if not args.no_litellm and not why:
                proxy = litellm_side.start_litellm({"emu": engines["emu"].base_url}, Path(tmp))
                procs.adopt(proxy.popen)
            gateways = start_gateways(procs, engines, GATEWAYS)
            if proxy is not None:
                try:
                    proxy.wait_ready()
                    peer = Server("litellm", proxy.root, proxy.process, proxy.key)
                except RuntimeError as exc:
                    why = str(exc)
        emu = engines["emu"]
        with console.status("warming up..."):
            for server in [*gateways.values(), *([peer] if peer else [])]:
                # At the largest load most parts run, so connection pools are grown already.
                warm = Spec(
                    model="emu", concurrency=sizes.feature_streams, requests=256, max_tokens=8
                )
                shots, _ = asyncio.run(run_shots(server.base_url, warm, api_key=server.key))
                failed = [s.error for s in shots if s.error]
                if failed:
                    raise RuntimeError(f"warm-up through {server.name} failed: {failed[0]}")
        print_facts(
            console,
            f"uvicorn {uvicorn.__version__}",
            "load client: raw asyncio HTTP/1.1 in this process",
            f"LiteLLM {litellm_side.version()}" if peer else f"LiteLLM: {why}",
            quick=args.quick,
        )
        engine_line = (
            f"engine: emulator, TTFT {TTFT_MS} ms, {RATE:.0f} tok/s a stream, no capacity limit, "
            f"no prefix cache; {sizes.prompt_tokens}-token prompts, {sizes.output_tokens}-token "
            "answers, every request streamed"
        )
        with console.status("gateway overhead..."):
            rows = asyncio.run(bench_overhead(sizes, emu, gateways["default"], peer))
        print_table(
            console,
            f"gateway overhead: N streams at once straight to the engine, through chatapp serve "
            f"and through LiteLLM, rounds interleaved ({engine_line}); TTFT and ITL p50 / p99",
            rows,
        )
        if proxy is not None:
            peer_cpu = cpu_seconds(proxy.process) if peer else 0.0
            proxy.stop()  # idle from now on: its process leaves the cores to the rest
        with console.status("stalled reader..."):
            rows = asyncio.run(bench_stall(sizes, emu, engines["emu-burst"], gateways["default"]))
        print_table(console, "fidelity: one client stops reading its stream", rows)
        with console.status("feature costs..."):
            rows = asyncio.run(bench_features(sizes, emu, gateways))
        print_table(console, "the cost of chatapp's own features, on / off in one run", rows)
        with console.status("many streams at once..."):
            rows = asyncio.run(bench_hold(sizes, engines["emu-slow"], gateways["fresh"]))
        print_table(
            console,
            f"concurrency: {sizes.hold_streams} streams of {sizes.hold_tokens} tokens at "
            f"{SLOW_RATE:.0f} tok/s ({sizes.hold_streams * SLOW_RATE:,.0f} tok/s in all), "
            f"starting over {sizes.hold_spread:.0f} s, through one fresh gateway process",
            rows,
        )
        ours = cpu_seconds(psutil.Process()) + peer_cpu  # this process and every child
    seconds = time.perf_counter() - started
    busy = machine_busy() - busy_before
    console.print(
        f"total {seconds:.0f} s; of the box's {psutil.cpu_count()} cores the benchmark's "
        f"processes kept {ours / seconds:.2f} busy on average, other processes "
        f"{max(0.0, busy - ours) / seconds:.2f}",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
