"""bench/cores.py: the rounds that give the gateway a core of its own pin every thread of a
process, and give the cores back afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from bench.cores import own_core, pinned

# A child with a second thread, as a gateway has worker threads besides its loop.
CHILD = """
import threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def child() -> Iterator[psutil.Process]:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True
    ) as popen:
        try:
            assert popen.stdout is not None and popen.stdout.readline().strip() == "ready"
            yield psutil.Process(popen.pid)
        finally:
            popen.kill()


def _cores_of_threads(process: psutil.Process) -> list[set[int]]:
    return [os.sched_getaffinity(thread.id) for thread in process.threads()]


def test_every_thread_is_pinned_then_given_every_core_back(child: psutil.Process) -> None:
    everywhere = os.sched_getaffinity(0)
    first = {min(everywhere)}
    assert len(child.threads()) == 2
    with pinned({child.pid: first}):
        assert _cores_of_threads(child) == [first, first]
        time.sleep(0.01)
    assert _cores_of_threads(child) == [everywhere, everywhere]


def test_the_cores_given_back_even_when_the_rounds_fail(child: psutil.Process) -> None:
    everywhere = os.sched_getaffinity(0)
    with pytest.raises(RuntimeError), pinned({child.pid: {min(everywhere)}}):
        raise RuntimeError("a round failed")
    assert _cores_of_threads(child) == [everywhere, everywhere]


def test_the_proxy_core_is_apart_from_the_rest() -> None:
    split = own_core()
    everywhere = os.sched_getaffinity(0)
    if len(everywhere) < 2:
        assert split is None
        return
    assert split is not None
    proxy, rest = split
    assert len(proxy) == 1 and rest and not proxy & rest
    assert proxy | rest == everywhere
