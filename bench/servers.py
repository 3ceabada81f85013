"""The processes the gateway benchmark runs: emulated engines and `chatapp serve` gateways.

Each is a child process on a free loopback port with its log in the run's temp dir; all are
stopped together however the run ends (`processes_in`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from chatapp.engines.supervisor import free_port
from chatapp.limits import LIMIT_KINDS

__all__ = [
    "ADMIN_KEY",
    "UNSTORED",
    "Processes",
    "Server",
    "cpu_seconds",
    "gateway_config",
    "metric",
    "processes_in",
    "spawn_gateway",
    "start_copier",
    "start_engines",
    "start_gateways",
]

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "ca-bench-admin-key-0123456789abcdef"
# A gateway kind: `record_usage = false`, and conversations that store no messages
# (bench/unstored_serve.py): chats with persistence off.
UNSTORED = "unstored"


def cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds of a process (all its threads, ended ones too) and its live children.

    Exact even where the kernel samples user/system time at each tick (this VM, 250 Hz):
    Linux scales the two so that they add up to the scheduler's exact runtime.
    """
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def metric(root: str, name: str) -> float:
    """The sum of one metric's samples on a /metrics page (Prometheus text)."""
    text = httpx.get(f"{root}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.split("{", 1)[0].split(" ", 1)[0] == name
    )


@dataclass(frozen=True)
class Server:
    """A process answering /v1 chat completions: an engine, a gateway or the peer."""

    name: str
    root: str  # without /v1
    process: psutil.Process
    key: str | None = None

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"


class Processes:
    """Every child the benchmark starts, stopped together."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.popens: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], name: str, env: Mapping[str, str] | None = None) -> Server:
        """Start a child logging to <tmp>/<name>.log; its root URL is filled in by the caller."""
        with (self.tmp / f"{name}.log").open("wb") as out:
            popen = subprocess.Popen(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=dict(env or os.environ)
            )
        self.popens.append(popen)
        return Server(name, "", psutil.Process(popen.pid))

    def adopt(self, popen: subprocess.Popen[bytes]) -> None:
        """Stop this one (started elsewhere) with the others."""
        self.popens.append(popen)

    def wait_ready(self, server: Server, path: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not server.process.is_running() or server.process.status() == psutil.STATUS_ZOMBIE:
                break
            try:
                if httpx.get(server.root + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        log = (self.tmp / f"{server.name}.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{server.name} did not become ready:\n{log}")

    def stop(self) -> None:
        for popen in self.popens:
            if popen.poll() is None:
                popen.terminate()
        for popen in self.popens:
            try:
                popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


@contextmanager
def processes_in(tmp: Path) -> Iterator[Processes]:
    procs = Processes(tmp)
    try:
        yield procs
    finally:
        procs.stop()


def start_engines(
    procs: Processes, engines: Mapping[str, Sequence[str]], common: Sequence[str]
) -> dict[str, Server]:
    """One emulator process per model name, with the common options and its own."""
    started = {}
    for name, options in engines.items():
        port = free_port()
        argv = [sys.executable, "-m", "bench.emulator", f"--port={port}", f"--model={name}"]
        spawned = procs.spawn([*argv, *common, *options], name)
        started[name] = Server(name, f"http://127.0.0.1:{port}", spawned.process)
    for engine in started.values():
        procs.wait_ready(engine, "/health", timeout=30)
    return started


def start_copier(procs: Processes, engine: Server) -> Server:
    """bench/copier.py over `engine`: the stack's floor, beside the gateways."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.copier", f"--port={port}", f"--upstream={engine.root}"]
    spawned = procs.spawn(argv, "copier")
    copier = Server("copier", f"http://127.0.0.1:{port}", spawned.process)
    procs.wait_ready(copier, "/health", timeout=30)
    return copier


def gateway_config(kind: str, engines: Mapping[str, Server]) -> str:
    """models.toml with every engine a node of its own model (no local engine); `kind` is
    "default", "no-usage" (`record_usage = false`), UNSTORED (the same, run by
    `spawn_gateway` with `unstored`) or "tiers" (limits that admit all)."""
    lines = ["[server]", 'host = "127.0.0.1"']
    if kind in ("no-usage", UNSTORED):
        lines.append("record_usage = false")
    for name, engine in engines.items():
        lines += ["", f"[models.{name}]", "context_window = 32768"]
        lines += [f"[[models.{name}.nodes]]", f'url = "{engine.base_url}"']
    if kind == "tiers":
        # Every tier a key can land on, each limit far above what a run asks: all admitted,
        # and every admission still checked and reserved at key, user and org level.
        for tier in ("free", "pro", "enterprise"):
            lines += ["", f"[tiers.{tier}]"]
            lines += [f"{limit} = 1000000000" for limit in LIMIT_KINDS]
    return "\n".join(lines) + "\n"


def start_gateways(
    procs: Processes, engines: Mapping[str, Server], kinds: Mapping[str, str]
) -> dict[str, Server]:
    """`chatapp serve` per entry of `kinds` (name → config kind), each with its own data dir."""
    gateways = {
        name: spawn_gateway(
            procs,
            name,
            gateway_config(kind, engines),
            procs.tmp / f"home-{name}",
            unstored=kind == UNSTORED,
        )
        for name, kind in kinds.items()
    }
    for gateway in gateways.values():
        procs.wait_ready(gateway, "/readyz")
    return gateways


def spawn_gateway(
    procs: Processes, name: str, config: str, home: Path, *, unstored: bool = False
) -> Server:
    """`chatapp serve` on the models.toml text `config`, with `home` its data dir and the
    bench's admin key (`unstored`: its conversations store no messages); started, not yet
    ready."""
    path = procs.tmp / f"{name}.toml"
    path.write_text(config)
    port = free_port()
    env = {**os.environ, "CHATAPP_HOME": str(home), "CHATAPP_ADMIN_KEY": ADMIN_KEY}
    module = "bench.unstored_serve" if unstored else "cli"
    argv = [sys.executable, "-m", module, "serve", "--config", str(path), "--port", str(port)]
    spawned = procs.spawn(argv, name, env)
    return Server(name, f"http://127.0.0.1:{port}", spawned.process, ADMIN_KEY)
