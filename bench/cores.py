"""Which cores a run's processes may use: rounds that give the gateway a core of its own.

On a GPU box the gateway has cores to itself (the engine works on the GPU, the clients are
elsewhere). On the development VM the load client, the engine and the gateway share two, and
a token passing through the gateway can wait for a core one of the others holds: a cost of
the box, not of the gateway. Those rounds put the proxy alone on one core and the load
client and the engine on the rest.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

import psutil

__all__ = ["own_core", "pinned"]


def own_core() -> tuple[set[int], set[int]] | None:
    """(a core for the proxy, the cores for everything else), or None with only one."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    return {cores[-1]}, set(cores[:-1])


def _place(process: psutil.Process, cores: set[int]) -> None:
    """Every thread of the process on `cores`: Linux pins threads, not processes, and a
    thread started later takes its starter's cores."""
    with contextlib.suppress(psutil.Error):
        for thread in process.threads():
            with contextlib.suppress(OSError):  # a thread that has just ended
                os.sched_setaffinity(thread.id, cores)


@contextlib.contextmanager
def pinned(placement: Mapping[int, set[int]]) -> Iterator[None]:
    """Each process (by pid, not its children) on its cores; afterwards every one of them on
    all the cores this process could use before."""
    everywhere = os.sched_getaffinity(0)
    processes = {psutil.Process(pid): cores for pid, cores in placement.items()}
    try:
        for process, cores in processes.items():
            _place(process, cores)
        yield
    finally:
        for process in processes:
            _place(process, everywhere)
