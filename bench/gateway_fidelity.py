"""The gateway's fidelity under two strains: one client that stops reading, and a thousand
streams at once (event delay, errors, memory a stream)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import psutil

from bench.gateway_rows import Tally, describe, fidelity, in_service, measure, ms, streams_of
from bench.report import Row
from bench.servers import Server, metric
from bench.timed_streams import Shot, Spec

__all__ = ["STALLED_TOKENS", "bench_hold", "bench_stall"]

STALLED_TOKENS = 32000  # ~6 MB of chunks: more than the sockets between can hold


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


async def bench_stall(spec: Spec, engine: Server, burst: Server, gateway: Server) -> list[Row]:
    """Streams (`spec`) beside one client that stopped reading, against the same streams
    without it (a round before it stalls and one after it hangs up, so drift cancels out).

    The stalled answer (STALLED_TOKENS from `burst`, a fast engine) is more than the sockets
    between can buffer, so once that engine has finished, the gateway is left holding the
    rest: its send to that client is blocked for as long as the others run.
    """
    notes = [
        note for model in (engine.name, burst.name) if (note := await in_service(gateway, model))
    ]
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
    without = Tally()
    for side in (before, after):
        without.add(side)
    ratio = beside.stats.throughput / without.stats.throughput
    rate = stream_rate(beside.shots) / stream_rate(without.shots)
    n = spec.concurrency
    blocked = generated is not None and held == 1
    stalled = (
        f"engine done ({STALLED_TOKENS:,} tokens) in {generated:.1f} s; the gateway still "
        f"holds the stream after the others' {beside.seconds:.1f} s: {'yes' if held else 'no'}"
        if generated is not None
        else "the engine was still generating after 20 s"
    )
    noise = f"{before.stats.throughput:,.0f} / {after.stats.throughput:,.0f} tok/s"
    return [
        *notes,
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
        fidelity(beside, spec.max_tokens),
        Row("stalled reader: gateway blocked on its send", stalled, "yes", blocked),
        Row(
            "stalled reader hangs up: the gateway closes its stream",
            f"in {closed:.1f} s" if closed is not None else "still open after 10 s",
            "< 10 s",
            closed is not None,
        ),
    ]


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


async def bench_hold(
    spec: Spec, rate: float, engine: Server, gateway: Server, direct: bool
) -> list[Row]:
    """Many slow streams at once (`spec`, from an engine sending `rate` tokens a second each)
    through one fresh gateway, and straight to the engine when `direct`: errors, event delay
    and the gateway's memory a stream.

    Event delay counts every token; "while all in flight" only those that came after the
    last stream started and before the first one ended, when the gateway held them all.
    """
    n = spec.concurrency
    rows = [note] if (note := await in_service(gateway, engine.name)) else []
    sides = {"direct": engine, "chatapp": gateway} if direct else {"chatapp": gateway}
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
            p95(event_delays(s.shots, rate)),
            p95(event_delays(s.shots, rate, plateau)),
        )
        at_once = most_at_once(s.shots)
        text = (
            f"{at_once:,} at once, TTFT p50 / p99 {ms(s.ttft[50])} / {ms(s.ttft[99])} ms, "
            f"event delay p95 {ms(overall)} ms, while all in flight {ms(held)} ms"
        )
        what = f"{streams_of(n)} at {rate:.0f} tok/s"
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
            fidelity(tally, spec.max_tokens),
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
