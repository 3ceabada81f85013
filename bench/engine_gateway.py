"""`chatapp serve` over a real engine, measured against that engine directly.

`python -m bench.engine_gateway` (llama.cpp with the embedded model, on CPU) or
`python -m bench.engine_gateway --engine vllm --model MODEL` (an HF id or a local folder; a
GPU box with vllm) writes a models.toml with one model on that engine and starts `chatapp
serve` on it: chatapp launches and supervises the engine itself. Once the gateway is ready
it streams a chat through the gateway with the openai SDK (and the same request straight to
the engine: greedy, so the two answers must match), runs a two-turn conversation (stored in
SQLite and read back), then sends the same load straight to the engine chatapp started and
through the gateway, alternating rounds, and prints the side-by-side table. `--out DIR`
keeps the results (JSON) and the gateway's and engine's logs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.load import run
from bench.report import Row, console_for, print_facts, print_table
from bench.servers import ADMIN_KEY, Processes, Server, processes_in, spawn_gateway
from bench.timed_streams import Shot, Spec, run_shots, stats

MODEL = "bench-model"
QUESTION = "What is the capital of France? Answer in one sentence."
# Greedy, SmolLM2-135M-Instruct repeats the prompt's filler until max_tokens (checked with
# its GGUF in llama.cpp): both paths then stream the same number of tokens a request.
REPEAT = "\n\nRepeat the text above, word for word."


@dataclass(frozen=True)
class Side:
    """What one path (the engine or the gateway) did over every round of one load."""

    tokens: int
    seconds: float
    errors: int
    ttft: dict[int, float]
    itl: dict[int, float]
    gateway_cpu: float  # CPU-seconds the gateway process spent (0 for the direct path)

    @property
    def throughput(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def gateway_config(args: argparse.Namespace) -> str:
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"engine_start_timeout = {args.start_timeout}",
        "",
        f"[models.{MODEL}]",
        f"engine = {json.dumps(args.engine)}",
        f"model = {json.dumps(args.model)}",
        f"context_window = {args.context_window}",
    ]
    if args.engine == "vllm":
        lines.append(f"gpu_memory_utilization = {args.gpu_memory_utilization}")
    else:
        # The direct rounds keep llama.cpp busy for a client the gateway does not see, and
        # llama-cpp-python answers /v1/models only between generations: its health checks
        # would time out and take the engine out of the gateway's rounds. One check at
        # start-up, then none for the run.
        lines.insert(3, "health_check_seconds = 3600")
    if args.engine_arg:
        lines.append(f"[models.{MODEL}.args]")
    for flag in args.engine_arg:
        key, _, value = flag.partition("=")
        lines.append(f"{json.dumps(key)} = {value if value else 'true'}")
    return "\n".join(lines) + "\n"


def start_gateway(procs: Processes, args: argparse.Namespace, home: Path) -> Server:
    gateway = spawn_gateway(procs, "gateway", gateway_config(args), home)
    wait_for_engine(gateway, home, args.start_timeout + 30)
    return gateway


# An engine that failed this often is not coming up (one restart can be a port another
# process took between chatapp choosing it and the engine binding it).
GIVE_UP_AFTER_RESTARTS = 3


def wait_for_engine(gateway: Server, home: Path, timeout: float) -> None:
    """Poll /readyz until the model is ready; repeated engine restarts end the run, with the
    end of the engine's log (chatapp would retry forever, a benchmark should not)."""
    started = time.monotonic()
    said = started
    while time.monotonic() - started < timeout:
        if not gateway.process.is_running() or gateway.process.status() == psutil.STATUS_ZOMBIE:
            raise RuntimeError("chatapp serve exited; see the gateway log")
        try:
            answer = httpx.get(f"{gateway.root}/readyz", timeout=5)
        except httpx.HTTPError:
            answer = None
        if answer is not None and answer.status_code == 200:
            print(f"gateway ready with its engine in {time.monotonic() - started:.0f}s", flush=True)
            return
        if answer is not None and _restarts(answer) >= GIVE_UP_AFTER_RESTARTS:
            logs = sorted((home / "logs").glob("*.log"))
            tail = logs[0].read_text(errors="replace")[-3000:] if logs else "(no engine log)"
            raise RuntimeError(f"the engine failed to start:\n{tail}")
        if time.monotonic() - said > 15:
            said = time.monotonic()
            print(f"waiting for the engine ({said - started:.0f}s)", flush=True)
        time.sleep(1)
    raise RuntimeError(f"the engine was not ready after {timeout:.0f}s")


def _restarts(readyz: httpx.Response) -> int:
    try:
        models = readyz.json()["models"].values()
        return max(u["restarts"] for m in models for u in m["upstreams"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0


def engine_of(gateway: Server) -> Server:
    """The engine server chatapp started, as the admin API reports it."""
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    fleet = httpx.get(f"{gateway.root}/admin/fleet", headers=headers, timeout=10).json()
    (upstream,) = fleet["upstreams"]
    root = str(upstream["url"]).removesuffix("/").removesuffix("/v1")
    return Server("engine", root, psutil.Process(upstream["pid"]))


def streamed_answer(server: Server) -> tuple[str, int, dict[str, Any] | None]:
    """One streamed, greedy answer through the openai SDK: its text, chunks and usage."""
    from openai import OpenAI  # the dev extra; only this check needs it

    client = OpenAI(base_url=server.base_url, api_key=server.key or "none", max_retries=0)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        max_tokens=64,
    )
    text, chunks, usage = "", 0, None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
            chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
    return text, chunks, usage


def conversation_turns(gateway: Server) -> tuple[int, int]:
    """Two turns of a conversation through the gateway: (tokens streamed, messages stored)."""
    spec = Spec(model=MODEL, concurrency=1, requests=2, max_tokens=64, route="conversation")
    shots, _ = run(run_shots(gateway.base_url, spec, api_key=ADMIN_KEY))
    failed = [shot.error for shot in shots if shot.error]
    if failed:
        raise RuntimeError(f"conversation turn failed: {failed[0]}")
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    listing = httpx.get(f"{gateway.base_url}/conversations", headers=headers, timeout=10).json()
    (chat,) = listing["data"]
    messages = httpx.get(
        f"{gateway.base_url}/conversations/{chat['id']}/messages", headers=headers, timeout=10
    ).json()["data"]
    return sum(shot.tokens for shot in shots), len(messages)


def measure(targets: Sequence[Server], gateway: Server, spec: Spec, rounds: int) -> dict[str, Side]:
    """`rounds` rounds of `spec` on each target, alternating which goes first."""
    shots: dict[str, list[Shot]] = {t.name: [] for t in targets}
    seconds = dict.fromkeys(shots, 0.0)
    cpu = dict.fromkeys(shots, 0.0)
    for round_number in range(rounds):
        order = targets if round_number % 2 == 0 else list(reversed(targets))
        for target in order:
            before = gateway.process.cpu_times()
            got, took = run(run_shots(target.base_url, spec, api_key=target.key))
            after = gateway.process.cpu_times()
            shots[target.name] += got
            seconds[target.name] += took
            if target is gateway:
                cpu[target.name] += after.user + after.system - before.user - before.system
    sides = {}
    for name, taken in shots.items():
        result = stats(taken, seconds[name])
        sides[name] = Side(
            result.tokens, result.seconds, result.errors, result.ttft, result.itl, cpu[name]
        )
    return sides


def load_rows(streams: int, direct: Side, through: Side) -> list[Row]:
    ratio = through.throughput / direct.throughput if direct.throughput else 0.0
    floor = 0.99 if streams <= 16 else 0.97
    added = {q: (through.ttft[q] - direct.ttft[q]) * 1000 for q in (50, 99)}
    itl = through.itl[99] / direct.itl[99] if direct.itl[99] else float("nan")
    cpu = through.gateway_cpu / through.tokens * 1e6 if through.tokens else float("nan")
    # Greedy answers can still part ways in a large batch (numerics depend on it); when the
    # two paths streamed different amounts, their throughputs are not of the same work.
    same_work = abs(through.tokens / direct.tokens - 1) <= 0.02 if direct.tokens else False
    return [
        Row(
            f"{streams} streams: throughput gateway ÷ engine",
            f"{ratio:.3f}x ({through.throughput:,.0f} / {direct.throughput:,.0f} tok/s)"
            + ("" if same_work else ", answers differ in length: not judged"),
            f"≥ {floor}x",
            ratio >= floor if same_work else None,
        ),
        Row(
            f"{streams} streams: added TTFT p50 / p99",
            f"{added[50]:+.1f} / {added[99]:+.1f} ms "
            f"(engine {direct.ttft[50] * 1000:.1f} / {direct.ttft[99] * 1000:.1f} ms)",
            "< 5 / 20 ms",
            added[50] < 5 and added[99] < 20,
        ),
        Row(
            f"{streams} streams: ITL p99 gateway ÷ engine",
            f"{itl:.2f}x ({through.itl[99] * 1000:.2f} / {direct.itl[99] * 1000:.2f} ms)",
            "≤ 1.10x",
            itl <= 1.10,
        ),
        Row(
            f"{streams} streams: tokens, errors",
            f"{through.tokens:,} / {direct.tokens:,} tokens, "
            f"{through.errors} / {direct.errors} errors",
            "no errors",
            through.errors == 0 and direct.errors == 0,
        ),
        Row(f"{streams} streams: gateway CPU", f"{cpu:.0f} µs a token"),
    ]


def keep_logs(tmp: Path, home: Path, out: Path) -> None:
    """The gateway's log and the engine logs chatapp wrote, copied into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for log in [tmp / "gateway.log", *sorted(home.glob("**/*.log"))]:
        if log.is_file():
            shutil.copy(log, out / log.name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("llama.cpp", "vllm"), default="llama.cpp")
    parser.add_argument(
        "--model",
        help='a GGUF path or "embedded" (the default) for llama.cpp; an HF id or folder for vLLM',
    )
    parser.add_argument("--context-window", type=int, default=2048)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    parser.add_argument("--start-timeout", type=float, default=900.0)
    parser.add_argument(
        "--streams", help="concurrency levels, commas (llama.cpp 1,4; vLLM 1,16,128)"
    )
    parser.add_argument("--requests-per-stream", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="rounds a side, alternating")
    parser.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        metavar="KEY[=TOML VALUE]",
        help="another engine flag ([args]), e.g. enforce-eager or n_threads=2",
    )
    parser.add_argument("--out", type=Path, help="keep results.json and the logs here")
    args = parser.parse_args(argv)
    if args.model is None:
        if args.engine == "vllm":
            parser.error("--engine vllm needs --model (an HF model id or a local folder)")
        args.model = "embedded"
    # llama-cpp-python's server answers one request at a time: more streams only queue.
    streams = args.streams or ("1,16,128" if args.engine == "vllm" else "1,4")
    levels = [int(part) for part in streams.split(",") if part.strip()]
    console = console_for(150)
    print_facts(console, f"model {args.model}", quick=False)
    rows: list[Row] = []
    record: dict[str, Any] = {"model": args.model, "loads": {}}
    with tempfile.TemporaryDirectory() as scratch, processes_in(Path(scratch)) as procs:
        home = Path(scratch) / "home"
        try:
            started = time.monotonic()
            gateway = start_gateway(procs, args, home)
            record["ready_seconds"] = round(time.monotonic() - started, 1)
            engine = engine_of(gateway)
            record["engine"] = engine.root
            through_text, chunks, usage = streamed_answer(gateway)
            direct_text, direct_chunks, _ = streamed_answer(engine)
            record["answer"] = {"gateway": through_text, "engine": direct_text, "usage": usage}
            rows.append(
                Row("streamed chat through the gateway (openai SDK)", repr(through_text[:70]))
            )
            counted = {k: (usage or {}).get(k) for k in ("prompt_tokens", "completion_tokens")}
            rows.append(
                Row(
                    "same greedy answer and chunks as the engine directly",
                    f"{chunks} / {direct_chunks} chunks, usage {counted}",
                    "equal",
                    through_text == direct_text and chunks == direct_chunks and usage is not None,
                )
            )
            tokens, stored = conversation_turns(gateway)
            rows.append(
                Row(
                    "conversation: 2 turns stored",
                    f"{tokens} tokens, {stored} messages",
                    "4",
                    stored == 4,
                )
            )
            for streams in levels:
                spec = Spec(
                    model=MODEL,
                    concurrency=streams,
                    requests=max(16, streams * args.requests_per_stream),
                    prompt_tokens=args.prompt_tokens,
                    max_tokens=args.max_tokens,
                    temperature=0.0,
                    instruction=REPEAT,
                )
                # A wave of the measured requests first on each path: a real engine pays
                # once for new shapes (an H200 run without it gave the first path's first
                # wave 116 ms TTFTs that no later wave had).
                warm = dataclasses.replace(spec, requests=streams)
                for target in (engine, gateway):
                    run(run_shots(target.base_url, warm, api_key=target.key))
                sides = measure([engine, gateway], gateway, spec, args.rounds)
                rows += load_rows(streams, sides["engine"], sides["gateway"])
                record["loads"][streams] = {
                    name: {**side.__dict__, "throughput": side.throughput}
                    for name, side in sides.items()
                }
                print(f"{streams} streams measured", flush=True)
        finally:
            if args.out is not None:
                keep_logs(Path(scratch), home, args.out)
    title = f"chatapp serve over {args.engine} ({args.model}) ÷ the same {args.engine} directly"
    print_table(console, title, rows)
    if args.out is not None:
        (args.out / "results.json").write_text(json.dumps(record, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
