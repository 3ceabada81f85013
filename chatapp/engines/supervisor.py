"""Run one engine as a child process: start, await health, restart with backoff, stop the tree."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from chatapp.engines.launch import EngineLaunch
from chatapp.errors import ChatAppError

__all__ = ["EngineState", "EngineSupervisor", "free_port"]

log = logging.getLogger("chatapp.engines")


class EngineState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    STOPPED = "stopped"


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _last_line(path: Path, tail: int = 2048) -> str:
    """The engine log's last line, shown as loading progress (vLLM prints its steps there)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - tail))
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return f"— {lines[-1][:160]}" if lines else ""


def _group_alive(pgid: int) -> bool:
    """Whether any process is left in the engine's process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it if chatapp itself dies (no orphans)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EngineSupervisor:
    """Keeps one engine process alive and reports whether it can take requests.

    The engine runs in its own session (process group) so stopping it takes its children too;
    it writes to `log_path`; when it exits unexpectedly it is restarted after a backoff that
    doubles up to `max_backoff` and resets once an engine has stayed up for a minute.
    """

    def __init__(
        self,
        name: str,
        make_launch: Callable[[int], EngineLaunch],
        *,
        host: str,
        log_path: Path,
        start_timeout: float,
        max_backoff: float = 30.0,
        port: int = 0,
    ) -> None:
        self.name = name
        self.host = host
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.max_backoff = max_backoff
        self._make_launch = make_launch
        self.state = EngineState.STOPPED
        self.fixed_port = port  # 0: a free port on every start
        self.port = port
        self.launch: EngineLaunch | None = None
        self.restarts = 0
        self.ready_event = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def base_url(self) -> str:
        return f"http://{self._url_host}:{self.port}/v1"

    @property
    def _url_host(self) -> str:
        """The host as a URL needs it: IPv6 in brackets, a wildcard as loopback."""
        if self.host in ("0.0.0.0", ""):
            return "127.0.0.1"
        if self.host == "::":
            return "[::1]"
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def ready(self) -> bool:
        return self.state is EngineState.READY

    def start(self) -> None:
        """Begin supervising in the background; `ready_event` is set when the engine answers."""
        self._stopping = False
        self._task = asyncio.create_task(self._supervise(), name=f"engine:{self.name}")

    async def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._spawn()
                await self._wait_healthy(started)
            except (OSError, TimeoutError, ChatAppError) as exc:
                log.error("engine %s: failed to start: %s (log: %s)", self.name, exc, self.log_path)
                await self._terminate()
            except Exception:
                # A bug of ours must not end supervision silently with the engine left running.
                log.exception("engine %s: supervision step failed", self.name)
                await self._terminate()
            else:
                assert self._process is not None
                code = await self._process.wait()
                self._set_state(EngineState.RESTARTING)
                await self._terminate()  # what the engine started may outlive it
                if self._stopping:
                    break
                log.warning(
                    "engine %s: exited with code %s; see %s", self.name, code, self.log_path
                )
            if self._stopping:
                break
            if time.monotonic() - started > 60:
                backoff = 1.0
            self._set_state(EngineState.RESTARTING)
            log.info("engine %s: restarting in %.0fs", self.name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            self.restarts += 1

    async def _spawn(self) -> None:
        self._set_state(EngineState.STARTING)
        self.port = self.fixed_port or free_port(self.host)
        self.launch = self._make_launch(self.port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n--- chatapp: starting {' '.join(self.launch.argv)}\n".encode())
            log_file.flush()
            self._process = await asyncio.create_subprocess_exec(
                *self.launch.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                env={**os.environ, **self.launch.env} if self.launch.env else None,
            )
        log.info(
            "engine %s: started pid %s on port %s, loading (log: %s)",
            self.name,
            self._process.pid,
            self.port,
            self.log_path,
        )

    async def _wait_healthy(self, started: float) -> None:
        """Poll the engine's health route until it answers 200, it dies, or time runs out."""
        assert self._process is not None and self.launch is not None
        url = f"http://{self._url_host}:{self.port}{self.launch.health_path}"
        next_progress = started + 5.0
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self._process.returncode is not None:
                    raise OSError(f"exited with code {self._process.returncode} while loading")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        break
                now = time.monotonic()
                if now - started > self.start_timeout:
                    raise TimeoutError(f"not healthy after {self.start_timeout:.0f}s")
                if now >= next_progress:
                    log.info(
                        "engine %s: still loading (%.0fs) %s",
                        self.name,
                        now - started,
                        _last_line(self.log_path),
                    )
                    next_progress = now + 5.0
                await asyncio.sleep(0.2)
        self._set_state(EngineState.READY)
        log.info("engine %s: ready in %.1fs", self.name, time.monotonic() - started)

    def _set_state(self, state: EngineState) -> None:
        self.state = state
        if state is EngineState.READY:
            self.ready_event.set()
        else:
            self.ready_event.clear()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop supervising and end the engine and every process it started."""
        self._stopping = True
        await self._terminate(timeout)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("engine %s: supervision failed", self.name)
        self._set_state(EngineState.STOPPED)
        log.info("engine %s: stopped", self.name)

    async def _terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM the engine's process group (and any stray descendants), SIGKILL what stays.

        Runs even when the engine itself has exited: its children (vLLM's engine cores, which
        hold GPU memory) stay in its process group and must go too.
        """
        process = self._process
        if process is None:
            return
        try:
            tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
        except psutil.NoSuchProcess:
            tree = []
        if not tree and not _group_alive(process.pid):
            await process.wait()
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        deadline = time.monotonic() + timeout
        while (process.returncode is None or _group_alive(process.pid)) and (
            time.monotonic() < deadline
        ):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 0.1)
        if process.returncode is None:
            log.warning("engine %s: did not stop in %.0fs, killing it", self.name, timeout)
        loop = asyncio.get_running_loop()
        _, alive = await loop.run_in_executor(None, lambda: psutil.wait_procs(tree, timeout=1))
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
