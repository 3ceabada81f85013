"""The fleet router through a live gateway over several stand-in engines that can be killed.

Each stand-in is its own process (killed with SIGKILL, as an engine dies) that logs what it
was asked; the gateway routes one model across three of them with a fallback model on a
fourth, checking health every 0.2 s and opening a breaker after two failures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from chatapp.engines.supervisor import free_port
from tests.conftest import ADMIN_KEY, LiveServer, serving

ROOT = Path(__file__).parent.parent.parent


@dataclass
class StandIn:
    """A stand-in engine process and the log of the messages it was sent."""

    name: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.scripted_upstream", str(self.port), str(self.log)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"stand-in {self.name} did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def seen(self) -> list[str]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@dataclass
class Fleet:
    gateway: LiveServer
    stand_ins: dict[str, StandIn]

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=ADMIN_KEY, max_retries=0)

    def fleet_status(self) -> dict[str, dict[str, object]]:
        answer = httpx.get(
            f"{self.gateway.url}/admin/fleet",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=10,
        )
        return {u["name"]: u for u in answer.json()["upstreams"]}

    def revive_all(self) -> None:
        for stand_in in self.stand_ins.values():
            if stand_in.process is None or stand_in.process.poll() is not None:
                stand_in.start()
        wait_for(lambda: all(u["healthy"] for u in self.fleet_status().values()))
        # Breakers close on a real answer: ask until every upstream has given one.
        with self.client() as client:
            for i in range(200):
                if all(u["circuit"] == "closed" for u in self.fleet_status().values()):
                    return
                for model in ("chat", "backup"):
                    with contextlib.suppress(openai.APIStatusError):  # still cooling down
                        client.chat.completions.create(
                            model=model, messages=[{"role": "user", "content": f"revive-{i}"}]
                        )
                time.sleep(0.05)
        raise AssertionError(f"breakers still open: {self.fleet_status()}")


def wait_for(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("fleet")
    stand_ins = {n: StandIn(n, free_port(), base / f"{n}.log") for n in ("a", "b", "c", "d")}
    for stand_in in stand_ins.values():
        stand_in.start()
    nodes = "".join(
        f'\n[[models.chat.nodes]]\nurl = "{stand_ins[n].url}"\n' for n in ("a", "b", "c")
    )
    config = base / "models.toml"
    config.write_text(
        f"""
[server]
health_check_seconds = 0.2
breaker_failures = 2
breaker_cooldown_seconds = 1.0

[models.chat]
context_window = 4096
fallback = "backup"
{nodes}
[models.backup]
context_window = 4096

[[models.backup.nodes]]
url = "{stand_ins["d"].url}"
"""
    )
    try:
        with serving(base / "home", config) as gateway:
            yield Fleet(gateway, stand_ins)
    finally:
        for stand_in in stand_ins.values():
            stand_in.kill()


def _ask(client: openai.OpenAI, content: str, session: str | None = None) -> str:
    answer = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": content}],
        extra_headers={"x-session-id": session} if session else None,
    )
    return answer.choices[0].message.content or ""


def _pool(fleet: Fleet) -> list[StandIn]:
    return [fleet.stand_ins[n] for n in ("a", "b", "c")]


def _where(fleet: Fleet, marker: str) -> set[str]:
    return {n for n, s in fleet.stand_ins.items() if any(marker in m for m in s.seen())}


def test_turns_of_a_conversation_stay_on_one_upstream(fleet: Fleet) -> None:
    fleet.revive_all()
    with fleet.client() as client:
        for session in range(12):
            for turn in range(3):
                assert _ask(client, f"affinity-{session}-turn-{turn}", f"s{session}") == "ok"
    homes = [_where(fleet, f"affinity-{session}-") for session in range(12)]
    assert all(len(home) == 1 for home in homes), homes
    assert len(set().union(*homes)) >= 2  # the sessions spread over the pool
    assert not _where(fleet, "affinity-") & {"d"}  # the fallback is not used while healthy


def test_killing_an_upstream_under_load_fails_no_request_that_had_not_streamed(
    fleet: Fleet,
) -> None:
    fleet.revive_all()
    failures: list[str] = []
    done: list[int] = []

    def worker(i: int) -> None:
        with fleet.client() as client:
            for j in range(6):
                try:
                    if (i + j) % 2:
                        assert _ask(client, f"load-{i}-{j}") == "ok"
                    else:
                        stream = client.chat.completions.create(
                            model="chat",
                            messages=[{"role": "user", "content": f"load-{i}-{j}"}],
                            stream=True,
                        )
                        pieces = [c.choices[0].delta.content for c in stream if c.choices]
                        text = "".join(p or "" for p in pieces)
                        assert text == "ok ok ok"
                except Exception as exc:  # noqa: BLE001 - every failure is collected
                    failures.append(f"{i}-{j}: {exc!r}")
                done.append(1)

    slow_answers: list[str] = []

    def slow(i: int) -> None:
        """A request the engine is still working on when it dies: it must be re-routed."""
        with fleet.client() as client:
            try:
                slow_answers.append(_ask(client, "script:slow", f"slow{i}"))
            except Exception as exc:  # noqa: BLE001 - every failure is collected
                failures.append(f"slow {i}: {exc!r}")

    slow_threads = [threading.Thread(target=slow, args=(i,)) for i in range(6)]
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in slow_threads + threads:
        thread.start()
    wait_for(lambda: len(done) >= 8 and any("script:slow" in s.seen() for s in _pool(fleet)))
    victim = next(s for s in _pool(fleet) if "script:slow" in s.seen())
    victim.kill()
    for thread in slow_threads + threads:
        thread.join(timeout=60)
    assert len(done) == 48 and slow_answers == ["ok"] * 6
    # The stand-in's answers are short, so a kill can cut at most the few streams it was in
    # the middle of; every request that had not started streaming must have been re-routed.
    assert len(failures) <= 2, failures
    print(f"\nkilled under load: {len(failures)} stream(s) cut mid-answer")
    victim_name = f"chat@{victim.url}"
    wait_for(lambda: fleet.fleet_status()[victim_name]["healthy"] is False)


def test_breaker_opens_on_a_dead_upstream_and_closes_when_it_is_back(fleet: Fleet) -> None:
    fleet.revive_all()
    c = fleet.stand_ins["c"]
    name = f"chat@{c.url}"
    c.kill()
    wait_for(lambda: fleet.fleet_status()[name]["circuit"] in ("open", "half_open"))
    status = fleet.fleet_status()[name]
    assert status["healthy"] is False and status["circuit_opened"] >= 1
    with fleet.client() as client:
        for i in range(10):
            assert _ask(client, f"while-c-down-{i}", f"sess-c-{i}") == "ok"
    assert "c" not in _where(fleet, "while-c-down-")
    c.start()
    wait_for(lambda: fleet.fleet_status()[name]["healthy"] is True)
    assert fleet.fleet_status()[name]["circuit"] != "closed"  # a passing /health is no proof
    with fleet.client() as client:
        for i in range(40):  # once the cooldown is over, one of these is its probe
            _ask(client, f"after-c-back-{i}", f"sess-back-{i}")
            time.sleep(0.05)
    assert fleet.fleet_status()[name]["circuit"] == "closed"
    assert "c" in _where(fleet, "after-c-back-")  # it takes its share again


def test_fallback_model_when_the_pool_is_down_then_503(fleet: Fleet) -> None:
    fleet.revive_all()
    for n in ("a", "b", "c"):
        fleet.stand_ins[n].kill()
    with fleet.client() as client:
        assert _ask(client, "needs-fallback") == "ok"
        assert _where(fleet, "needs-fallback") == {"d"}
        fleet.stand_ins["d"].kill()
        with pytest.raises(openai.APIStatusError) as info:
            _ask(client, "nothing-left")
    assert info.value.status_code == 503
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert info.value.body["code"] == "engine_unavailable"  # type: ignore[index]
    fleet.revive_all()
