"""Measure the fleet router issue's targets: pick time, affinity's TTFT gain, gateway overhead.

Run as `.venv/bin/python bench/router_bench.py` (add `--quick` for a smoke test). It times
ModelPool.pick over 64 remote upstreams in-process, then starts emulated engines
(bench/emulator.py, each its own process) and one `chatapp serve` whose models.toml routes
the same engines under three policies (models `aff`, `rr` and `lo`) and one more engine alone
(model `solo`), and drives them with bench/load.py. The engines' caches are emptied before
each run, so every policy starts cold.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import uvicorn

from bench.load import Sample, Summary, Workload, run, run_load, summarize
from bench.report import Row, console_for, percentile, print_facts, print_table
from chatapp.config import ROUTING_POLICIES, ModelConfig
from chatapp.engines.supervisor import free_port
from chatapp.router import affinity_key
from chatapp.upstreams import ModelPool, Upstream

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "ca-bench-admin-key-0123456789abcdef"
POLICY_MODELS = {"affinity": "aff", "round_robin": "rr", "least_outstanding": "lo"}
# Engines for the affinity runs: prefill dominates a cold turn (1,500 tokens: +300 ms), and
# the decode capacity is 8 streams at full speed, so an engine given more than its share of
# the streams is slower: an imbalance affinity causes shows up in throughput.
AFFINITY_ENGINE = [
    "--ttft-ms=20",
    "--prefill-ms-per-1k=200",
    "--tokens-per-second=100",
    "--capacity=800",
    "--prefix-cache-blocks=20000",
]
# A chat answer of a paragraph or two. Each turn sends the last answer back: an engine that
# served that answer has it cached (vLLM caches decoded blocks too), another must prefill it.
ANSWER_TOKENS = 200
OVERHEAD_ENGINE = ["--ttft-ms=20", "--tokens-per-second=50", "--capacity=0"]


@dataclass(frozen=True)
class Overhead:
    """One gateway-overhead load: streams, each sending `requests` per round, starting all at
    once or spread over `spread` seconds."""

    streams: int
    requests: int
    rounds: int
    spread: float = 0.0


@dataclass(frozen=True)
class Sizes:
    """How much work each part does; `--quick` shrinks everything for a smoke test."""

    picks: int
    upstreams: int
    engines: int
    conversations: int
    turns: int
    users: int
    skew_users: int
    skew_seconds: float
    overhead: tuple[Overhead, ...]
    overhead_tokens: int


FULL = Sizes(
    picks=100_000,
    upstreams=64,
    engines=2,
    conversations=24,
    turns=6,
    users=12,
    skew_users=16,
    skew_seconds=20.0,
    overhead=(Overhead(128, 1, 2), Overhead(128, 1, 2, spread=1.0), Overhead(16, 1, 3)),
    overhead_tokens=256,
)
QUICK = dataclasses.replace(
    FULL,
    picks=10_000,
    conversations=8,
    turns=3,
    users=4,
    skew_users=8,
    skew_seconds=4.0,
    overhead=(Overhead(32, 1, 1), Overhead(32, 1, 1, spread=1.0), Overhead(8, 1, 1)),
    overhead_tokens=64,
)


def _micros(samples: list[int]) -> tuple[float, float]:
    samples.sort()
    return percentile(samples, 50) / 1000, percentile(samples, 99) / 1000


def bench_pick(sizes: Sizes) -> list[Row]:
    """pool.pick(key) per policy over remote upstreams with random weights and loads."""
    rng = random.Random(7)
    upstreams = [
        Upstream(
            name=f"m@http://10.0.{i // 250}.{i % 250 + 1}:8000/v1",
            url=f"http://10.0.{i // 250}.{i % 250 + 1}:8000/v1",
            weight=rng.choice((0.5, 1.0, 1.0, 2.0)),
            outstanding=rng.randrange(0, 64),
        )
        for i in range(sizes.upstreams)
    ]
    keys = [f"conv-{rng.getrandbits(64):016x}" for _ in range(sizes.picks)]
    rows = []
    clock = time.perf_counter_ns
    for policy in ROUTING_POLICIES:
        model = ModelConfig(name="m", engine=None, model="m", context_window=4096, routing=policy)
        pool = ModelPool(model=model, upstreams=upstreams)
        pick = pool.pick
        for key in keys[:1000]:
            pick(key)  # warm up
        samples = [0] * len(keys)
        gc.collect()
        for i, key in enumerate(keys):
            start = clock()
            pick(key)
            samples[i] = clock() - start
        p50, p99 = _micros(samples)
        what = f"pick, {policy}, {sizes.upstreams} upstreams"
        rows += [
            Row(f"{what} p50", f"{p50:.1f} µs"),
            Row(f"{what} p99", f"{p99:.1f} µs", "< 50 µs", p99 < 50),
        ]
    # The part every policy runs: which upstreams may take a request (breaker, health, drain).
    runs = 2000
    start = clock()
    for _ in range(runs):
        [u for u in upstreams if u.available()]
    each = (clock() - start) / runs / 1000
    rows.append(
        Row(f"of which the available() filter over {sizes.upstreams}, mean", f"{each:.1f} µs")
    )
    # What the gateway does first with a request that has no x-session-id or user.
    opening = "x" * 6000
    bodies = [
        {
            "messages": [
                {"role": "system", "content": opening + str(i)},
                {"role": "user", "content": "hi"},
            ]
        }
        for i in range(min(10_000, sizes.picks))
    ]
    samples = [0] * len(bodies)
    for i, body in enumerate(bodies):
        start = clock()
        affinity_key(body)
        samples[i] = clock() - start
    p50, p99 = _micros(samples)
    rows.append(
        Row("affinity_key from a 1,500-token opening, p50 / p99", f"{p50:.1f} / {p99:.1f} µs")
    )
    return rows


class Fleet:
    """The processes of one benchmark: emulated engines and a gateway, stopped together."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(
        self, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> psutil.Process:
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env or dict(os.environ)
            )
        self.processes.append(process)
        return psutil.Process(process.pid)

    def engine(self, name: str, options: list[str]) -> Engine:
        port = free_port()
        argv = [sys.executable, "-m", "bench.emulator", f"--port={port}", f"--model={name}"]
        process = self._spawn(argv + options, self.tmp / f"{name}.log")
        engine = Engine(name, f"http://127.0.0.1:{port}", process)
        _wait_for(f"{engine.root}/health", process, self.tmp / f"{name}.log")
        return engine

    def gateway(self, models: dict[str, tuple[str, list[Engine]]]) -> Gateway:
        """`chatapp serve` with only remote nodes (no local engine) and no tiers (no limits)."""
        port = free_port()
        lines = [f'[server]\nhost = "127.0.0.1"\nport = {port}\n']
        for model, (routing, engines) in models.items():
            lines.append(f'[models.{model}]\ncontext_window = 32768\nrouting = "{routing}"\n')
            lines += [f'[[models.{model}.nodes]]\nurl = "{e.root}/v1"\n' for e in engines]
        config = self.tmp / "models.toml"
        config.write_text("\n".join(lines))
        env = {
            **os.environ,
            "CHATAPP_HOME": str(self.tmp / "home"),
            "CHATAPP_ADMIN_KEY": ADMIN_KEY,
        }
        argv = [sys.executable, "-m", "cli", "serve", "--config", str(config), "--port", str(port)]
        log = self.tmp / "gateway.log"
        process = self._spawn(argv, log, env)
        gateway = Gateway(f"http://127.0.0.1:{port}", process)
        _wait_for(f"{gateway.root}/readyz", process, log, timeout=60)
        return gateway

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class Engine:
    """A running emulator: its root URL (without /v1) and its process, for CPU use."""

    name: str
    root: str
    process: psutil.Process

    def reset(self) -> None:
        httpx.post(f"{self.root}/reset", timeout=5).raise_for_status()

    def metric(self, name: str) -> float:
        """One unlabelled-sum value from the engine's /metrics."""
        text = httpx.get(f"{self.root}/metrics", timeout=5).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.split("{", 1)[0].split(" ", 1)[0] == name
        )


@dataclass(frozen=True)
class Gateway:
    """A running `chatapp serve`: its root URL and its process."""

    root: str
    process: psutil.Process


def _wait_for(url: str, process: psutil.Process, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
            raise RuntimeError(f"{url} exited early:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout} s:\n{log.read_text(errors='replace')}")


@contextmanager
def fleet_in(tmp: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp)
    try:
        yield fleet
    finally:
        fleet.stop()


def load(url: str, workload: Workload) -> Summary:
    return run(run_load(url, workload, api_key=ADMIN_KEY))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def _describe(s: Summary) -> str:
    cached = f", {s.cached_share:.0%} cached" if s.cached_share else ""
    errors = f", {s.errors} errors" if s.errors else ""
    return (
        f"TTFT {_ms(s.ttft_p50)} / {_ms(s.ttft_p99)} ({_ms(s.ttft_mean)}) ms, "
        f"{s.throughput:,.0f} tok/s{cached}{errors}"
    )


def bench_affinity(sizes: Sizes, engines: list[Engine], gateway: Gateway) -> list[Row]:
    """The same multi-turn chats through each policy, every engine's cache cold at the start.

    Users pause before each turn: with no pauses a closed loop runs the users in a fixed
    order, and round robin then sends each user's turns to the same engine every time, an
    affinity by accident that real traffic does not have.
    """
    url = f"{gateway.root}/v1"
    base = Workload(
        model="",
        users=sizes.users,
        conversations=sizes.conversations,
        turns=sizes.turns,
        system_tokens=1500,
        question_tokens=40,
        max_tokens=ANSWER_TOKENS,
        think_seconds=0.3,
    )
    # Short answers, one in six ten times longer: many turns in the run's window, and an
    # engine that affinity gives the long ones is busier than the other.
    skewed = dataclasses.replace(
        base,
        users=sizes.skew_users,
        max_tokens=64,
        long_every=6,
        long_factor=10,
        duration=sizes.skew_seconds,
    )
    cases = [
        ("own system prompts, x-session-id", base, ROUTING_POLICIES),
        (
            "own system prompts, no header (key: prompt opening)",
            dataclasses.replace(base, session_header=False),
            ("affinity",),
        ),
        (
            "one shared system prompt, x-session-id",
            dataclasses.replace(base, shared_system=True),
            ("affinity", "round_robin"),
        ),
        (
            f"skewed: 64-token answers, 1 chat in 6 wants {64 * skewed.long_factor:,}, "
            f"{sizes.skew_users} users, "
            f"{sizes.skew_seconds:.0f} s",
            skewed,
            ("affinity", "round_robin"),
        ),
    ]
    rows: list[Row] = []
    round_robin: Summary | None = None  # the first case's: the no-header case compares to it
    for title, workload, policies in cases:
        results: dict[str, Summary] = {}
        for policy in policies:
            for engine in engines:
                engine.reset()
            results[policy] = load(url, dataclasses.replace(workload, model=POLICY_MODELS[policy]))
            rows.append(Row(f"{title}: {policy}", _describe(results[policy])))
        round_robin = results.get("round_robin", round_robin)
        aff, rr = results["affinity"], round_robin
        if rr is None:
            continue
        ttft = aff.ttft_p50 / rr.ttft_p50
        throughput = aff.throughput / rr.throughput
        if workload.duration is None:
            rows += [
                Row(
                    f"{title}: affinity / round robin, TTFT p50",
                    f"{ttft:.2f}x",
                    "<= 0.6x",
                    ttft <= 0.6,
                ),
                Row(
                    f"{title}: affinity / round robin, TTFT mean",
                    f"{aff.ttft_mean / rr.ttft_mean:.2f}x",
                ),
                Row(
                    f"{title}: affinity / round robin, throughput",
                    f"{throughput:.2f}x",
                    ">= 1.00x",
                    throughput >= 1.0,
                ),
            ]
        else:
            rows += [
                Row(f"{title}: affinity / round robin, TTFT p50", f"{ttft:.2f}x"),
                Row(
                    f"{title}: affinity / round robin, throughput",
                    f"{throughput:.2f}x",
                    ">= 0.95x",
                    throughput >= 0.95,
                ),
            ]
    return rows


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def bench_overhead(sizes: Sizes, engine: Engine, gateway: Gateway) -> list[Row]:
    """The same streams straight to the engine and through the gateway, rounds interleaved."""
    rows: list[Row] = []
    me = psutil.Process()
    for load_shape in sizes.overhead:
        streams = load_shape.streams
        workload = Workload(
            model="solo",
            users=streams,
            conversations=streams * load_shape.requests,
            turns=1,
            system_tokens=200,
            shared_system=True,
            question_tokens=8,
            max_tokens=sizes.overhead_tokens,
            session_header=False,
            think_seconds=load_shape.spread / 2,  # the same pauses on both sides (seeded)
        )
        sides = {"direct": f"{engine.root}/v1", "gateway": f"{gateway.root}/v1"}
        samples: dict[str, list[Sample]] = {side: [] for side in sides}
        seconds = dict.fromkeys(sides, 0.0)
        cpu = {side: [0.0, 0.0, 0.0] for side in sides}  # client, engine, gateway
        for _ in range(load_shape.rounds):
            for side, url in sides.items():
                before = (_cpu(me), _cpu(engine.process), _cpu(gateway.process))
                result = load(url, workload)
                after = (_cpu(me), _cpu(engine.process), _cpu(gateway.process))
                cpu[side] = [c + a - b for c, a, b in zip(cpu[side], after, before, strict=True)]
                samples[side] += result.samples
                seconds[side] += result.seconds
        direct = summarize(samples["direct"], seconds["direct"])
        via = summarize(samples["gateway"], seconds["gateway"])
        start = f"starting over {load_shape.spread:.0f} s" if load_shape.spread else "all at once"
        what = f"{streams} streams, {start}"
        for side, summary in (("direct", direct), ("gateway", via)):
            client, eng, gw = (c / seconds[side] for c in cpu[side])
            used = f"; cores: client {client:.2f}, engine {eng:.2f}" + (
                f", gateway {gw:.2f}" if side == "gateway" else ""
            )
            rows.append(Row(f"{what}: {side}", _describe(summary) + used))
        ratio = via.throughput / direct.throughput
        added = f"{_ms(via.ttft_p50 - direct.ttft_p50)} / {_ms(via.ttft_p99 - direct.ttft_p99)} ms"
        rows += [
            Row(f"{what}: gateway / direct throughput", f"{ratio:.3f}x", ">= 0.97x", ratio >= 0.97),
            Row(f"{what}: TTFT added by the gateway, p50 / p99", added),
        ]
    return rows + _per_request_cost(engine, gateway)


def _per_request_cost(engine: Engine, gateway: Gateway) -> list[Row]:
    """Short requests on kept-alive client connections: the gateway's CPU for each (what a
    burst of new streams queues behind) and how many engine connections they came on."""
    workload = Workload(
        model="solo", users=16, conversations=320, turns=1, system_tokens=200, max_tokens=1
    )
    connections = {}
    for side, root in (("direct", engine.root), ("gateway", gateway.root)):
        engine.reset()
        before = _cpu(gateway.process)
        result = load(f"{root}/v1", workload)
        used = (_cpu(gateway.process) - before) / result.requests
        connections[side] = engine.metric("emulator:connections_total") / result.requests
    what = f"{result.requests} 1-token streams, 16 users"
    return [
        Row(f"{what}: gateway CPU per request", f"{used * 1000:.2f} ms"),
        Row(
            f"{what}: engine connections a request, direct / gateway",
            f"{connections['direct']:.2f} / {connections['gateway']:.2f}",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three parts and print their tables; verdicts live in the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--engines", type=int, default=None, help="engines behind aff/rr/lo")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.engines:
        sizes = dataclasses.replace(sizes, engines=args.engines)
    console = console_for(190)
    print_facts(
        console,
        f"uvicorn {uvicorn.__version__}",
        f"httpx {httpx.__version__}",
        "load client: raw asyncio HTTP/1.1",
        quick=args.quick,
    )
    started = time.perf_counter()
    with console.status("routing decisions..."):
        rows = bench_pick(sizes)
    print_table(console, "routing decision time (in-process ModelPool.pick)", rows)
    with tempfile.TemporaryDirectory() as tmp, fleet_in(Path(tmp)) as fleet:
        with console.status("starting engines and the gateway..."):
            engines = [fleet.engine(f"engine{i}", AFFINITY_ENGINE) for i in range(sizes.engines)]
            solo = fleet.engine("solo", OVERHEAD_ENGINE)
            models = {m: (policy, engines) for policy, m in POLICY_MODELS.items()}
            gateway = fleet.gateway({**models, "solo": ("affinity", [solo])})
        with console.status("affinity vs round robin..."):
            rows = bench_affinity(sizes, engines, gateway)
        title = (
            f"affinity vs round robin through the gateway: {sizes.engines} engines "
            f"({' '.join(AFFINITY_ENGINE)}); {sizes.conversations} chats x {sizes.turns} turns, "
            f"{sizes.users} users pausing 0-0.6 s, 1,500-token system prompt, 40-token questions, "
            f"{ANSWER_TOKENS}-token answers; TTFT p50 / p99 (mean)"
        )
        print_table(console, title, rows)
        with console.status("gateway overhead..."):
            rows = bench_overhead(sizes, solo, gateway)
        title = (
            f"gateway overhead: one engine ({' '.join(OVERHEAD_ENGINE)}), streams of "
            f"{sizes.overhead_tokens} tokens straight to it and through chatapp serve, rounds "
            "interleaved; TTFT p50 / p99, CPU in cores"
        )
        print_table(console, title, rows)
    console.print(f"total {time.perf_counter() - started:.0f} s", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
