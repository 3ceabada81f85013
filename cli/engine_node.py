"""`chatapp serve --engine-only`: a fleet node's engines, without the user-facing gateway.

The node's local engines listen on fixed ports (PORT, PORT+1, …) on --host; the gateway
lists them as [[models.X.nodes]]. Engines restart on crash as under `serve`, and Ctrl-C or
SIGTERM stops them all.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

from rich.markup import escape

from chatapp.config import Config
from chatapp.engines.supervisor import EngineSupervisor
from chatapp.errors import ChatAppError
from chatapp.upstreams import build_pools
from cli.common import console, fail

__all__ = ["serve_engines"]


def serve_engines(config: Config, home: Path, *, host: str, base_port: int) -> None:
    """Start every local engine of `config` and keep them up until a signal."""
    try:
        pools = build_pools(config, home / "logs", host=host, base_port=base_port)
    except ChatAppError as exc:
        raise fail(str(exc)) from None
    local = [
        (p.model.name, u.supervisor) for p in pools.values() for u in p.upstreams if u.supervisor
    ]
    if not local:
        raise fail(f"{config.path} defines no local engine (engine = ...) to run on this node")
    asyncio.run(_run(local, host))


async def _all_ready(supervisors: list[EngineSupervisor]) -> bool:
    await asyncio.gather(*(s.ready_event.wait() for s in supervisors))
    return True


async def _run(local: list[tuple[str, EngineSupervisor]], host: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    supervisors = [supervisor for _, supervisor in local]
    for supervisor in supervisors:
        supervisor.start()
    ready = asyncio.create_task(_all_ready(supervisors))
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({ready, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        # A wildcard address is no address for the gateway: name this box instead.
        shown = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
        if ":" in shown:
            shown = f"[{shown}]"
        lines = ["[bold green]engines ready[/]; list them in the gateway's models.toml:"]
        for name, supervisor in local:
            url = f"http://{shown}:{supervisor.port}/v1"
            lines += [escape(f"  [[models.{name}.nodes]]"), f'  url = "{url}"']
        console.print("\n".join(lines), highlight=False)
        await waiter
    ready.cancel()
    await asyncio.gather(*(s.stop() for s in supervisors))
