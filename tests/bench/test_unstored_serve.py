"""The gateway gateway_bench measures chats' persistence off against: the same conversations
API, answering the same turns, with nothing stored."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import psutil
import pytest

from bench.emulator import EngineProfile, serve_in_thread
from bench.servers import UNSTORED, Server, gateway_config, processes_in, start_gateways
from bench.timed_streams import Spec, run_shots
from chatapp.engines.supervisor import free_port

PROFILE = EngineProfile(model="emu", ttft_ms=5, tokens_per_second=500)


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """A default gateway and an unstored one over one emulator, started as gateway_bench does."""
    with serve_in_thread(PROFILE, free_port()) as engine_url:
        emulator = Server("emu", engine_url.removesuffix("/v1"), psutil.Process())
        with processes_in(tmp_path_factory.mktemp("gateways")) as procs:
            kinds = {"stored": "default", "unstored": UNSTORED}
            yield start_gateways(procs, {"emu": emulator}, kinds)


def _turns(gateway: Server) -> tuple[list[int], list[list[dict[str, object]]]]:
    """Two users' three turns each through the conversations API: every turn's tokens, and
    what each conversation then holds."""
    spec = Spec(model="emu", concurrency=2, requests=6, max_tokens=10, route="conversation")
    shots, _ = asyncio.run(run_shots(gateway.base_url, spec, api_key=gateway.key))
    assert [shot.error for shot in shots] == [None] * 6
    headers = {"authorization": f"Bearer {gateway.key}"}
    listing = httpx.get(f"{gateway.base_url}/conversations", headers=headers).json()["data"]
    held = [
        httpx.get(f"{gateway.base_url}/conversations/{c['id']}/messages", headers=headers).json()
        for c in listing
    ]
    return [shot.tokens for shot in shots], [page["data"] for page in held]


def test_the_same_turns_are_answered_and_nothing_is_stored(
    gateways: dict[str, Server],
) -> None:
    stored_tokens, stored = _turns(gateways["stored"])
    unstored_tokens, unstored = _turns(gateways["unstored"])
    assert stored_tokens == unstored_tokens == [10] * 6
    assert sorted(len(messages) for messages in stored) == [6, 6]  # 3 questions, 3 replies
    assert [len(messages) for messages in unstored] == [0, 0]


def test_its_usage_ledger_is_off_too() -> None:
    assert "record_usage = false" in gateway_config(UNSTORED, {}).splitlines()
    assert "record_usage = false" not in gateway_config("default", {}).splitlines()
