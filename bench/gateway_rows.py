"""One proxy's measured runs, added up, and the rows of the results tables they make."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx
import psutil

from bench.report import Row
from bench.servers import Server, cpu_seconds, metric
from bench.timed_streams import Shot, Spec, Stats, run_shots, stats

__all__ = [
    "REST",
    "Tally",
    "describe",
    "fidelity",
    "in_service",
    "machine_busy",
    "machine_stolen",
    "measure",
    "ms",
    "set_rest",
    "streams_of",
]


@dataclass
class Tally:
    """One side's rounds of one load, added up."""

    shots: list[Shot] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0  # the server's CPU seconds (a gateway's or the peer's; none direct)
    emitted: int = 0  # tokens the engine generated for these requests
    stolen: float = 0.0  # CPU seconds the host took from this VM's cores meanwhile (steal)
    upstream: str | None = None  # after errors: what the gateway says of the engine

    @property
    def stats(self) -> Stats:
        return stats(self.shots, self.seconds)

    def add(self, other: Tally) -> None:
        """Another round of the same side, counted with these."""
        self.shots += other.shots
        self.seconds += other.seconds
        self.cpu += other.cpu
        self.emitted += other.emitted
        self.stolen += other.stolen
        self.upstream = self.upstream or other.upstream

    @property
    def cpu_per_1k(self) -> float:
        tokens = sum(s.tokens for s in self.shots)
        return self.cpu / tokens * 1000 if tokens else float("nan")

    @property
    def stolen_share(self) -> float:
        """The share of the box's cores the host took while these rounds ran."""
        cores = self.seconds * (psutil.cpu_count() or 1)
        return self.stolen / cores if cores else 0.0


# A gateway drops its idle engine connections 4 s after use (chatapp/engine_transport.py).
# Each measured run comes at least this long after the same server's last one, so every run
# starts alike, with fresh connections; the "warm pool" row measures a burst that finds the
# last run's connections still open (with httpx's own pool that was much slower).
REST = 5.5
_last_run: dict[str, float] = {}
_rest = [REST]


def set_rest(seconds: float) -> None:
    """How long a server rests between measured runs (0 for a quick smoke run)."""
    _rest[0] = seconds


# Cores the whole box may keep busy when a measured run starts.
QUIET_CORES = 0.2


def machine_busy() -> float:
    """CPU seconds the whole box has spent busy since it started."""
    times = psutil.cpu_times()
    return times.user + times.system + getattr(times, "nice", 0.0) + getattr(times, "irq", 0.0)


def machine_stolen() -> float:
    """CPU seconds the hypervisor has given other guests while this VM's cores wanted to run
    (steal): the host's own load, invisible to every process here, and the loudest noise in
    a latency tail. Zero where the kernel does not count it."""
    return float(getattr(psutil.cpu_times(), "steal", 0.0))


async def quiet(limit: float = 30.0, window: float = 0.25) -> None:
    """Wait (at most `limit`) until the box is close to idle. A proxy that fell behind a load
    (LiteLLM at 128 streams) works it off after the client is done, and would otherwise take
    cores from the next side's run: chatapp's run after LiteLLM's used 1.7x the CPU a token."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = machine_busy()
        await asyncio.sleep(window)
        if (machine_busy() - before) / window < QUIET_CORES:
            return


async def measure(
    server: Server, spec: Spec, engine: Server, tally: Tally, rest: bool = True
) -> None:
    """Run one load through `server`, adding its shots, the engine's tokens and its CPU."""
    if rest:
        due = _last_run.get(server.name, 0.0) + _rest[0]
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await quiet()
    emitted = metric(engine.root, "vllm:generation_tokens_total")
    cpu = cpu_seconds(server.process)
    stolen = machine_stolen()
    shots, seconds = await run_shots(server.base_url, spec, api_key=server.key)
    tally.cpu += cpu_seconds(server.process) - cpu
    tally.stolen += machine_stolen() - stolen
    tally.emitted += int(metric(engine.root, "vllm:generation_tokens_total") - emitted)
    tally.shots += shots
    tally.seconds += seconds
    _last_run[server.name] = time.monotonic()
    if any(shot.error for shot in shots) and tally.upstream is None:
        tally.upstream = await asyncio.to_thread(upstream_state, server, spec.model)


def upstream_state(gateway: Server, model: str) -> str | None:
    """A chatapp gateway's view of a model's engine (/admin/fleet), to say why requests
    failed; None for a server that has no such page."""
    try:
        answer = httpx.get(
            f"{gateway.root}/admin/fleet",
            headers={"authorization": f"Bearer {gateway.key}"},
            timeout=10,
        )
        upstreams = answer.json()["upstreams"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    for u in upstreams:
        if u.get("model") == model:
            return (
                f"gateway's view: {u.get('state')}, circuit {u.get('circuit')}, "
                f"last error {u.get('last_error')!r}"
            )
    return None


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
    if s.errors:
        text += f", {s.errors} errors ({(s.first_error or '')[:90]})"
        text += f"; {tally.upstream}" if tally.upstream else ""
    return text


def fidelity(tally: Tally, asked: int) -> Row:
    """Errors, content chunks received against the tokens the engine generated, short ones."""
    s = tally.stats
    short = sum(1 for shot in tally.shots if shot.tokens != asked)
    text = f"{s.errors} errors; chunks {s.tokens:,} / engine tokens {tally.emitted:,}"
    text += f"; {short} streams != {asked}" if short else ""
    text += f" ({s.first_error[:80]})" if s.first_error else ""
    ok = s.errors == 0 and s.tokens == tally.emitted and not short
    return Row("  errors, chunks received / engine's", text, "0; equal", ok)


async def in_service(server: Server, model: str, timeout: float = 30.0) -> Row | None:
    """Wait until one short request through `server` is answered; None when the first one
    was, else a row saying how long it refused and why.

    A gateway's health checks of an engine can fail while another load swamps the box; its
    breaker then stays open until a real request gets through, and a burst arriving first is
    refused whole. Measuring such a burst would measure that, so each part starts with this.
    """
    spec = Spec(model=model, concurrency=1, requests=1, max_tokens=1)
    started = time.monotonic()
    first: str | None = None
    while True:
        shots, _ = await run_shots(server.base_url, spec, api_key=server.key)
        if not shots[0].error:
            if first is None:
                return None
            waited = f"{time.monotonic() - started:.1f} s"
            return Row(f"{server.name} refused {model} requests first, for {waited}", first[:110])
        first = first or shots[0].error
        if time.monotonic() - started > timeout:
            return Row(f"{server.name} still refused {model} after {timeout:.0f} s", first[:110])
        await asyncio.sleep(1.0)
