"""The load client's conversation route: chats as in the TUI, their tokens timed, stored."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

import httpx
import pytest

from bench.load import HttpError
from bench.timed_streams import Spec, new_chats, run_shots
from tests.conftest import ADMIN_KEY, LiveServer


def test_each_user_chats_in_a_conversation_of_its_own(gateway: LiveServer) -> None:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    url = f"{gateway.base_url}/conversations"
    before = {c["id"] for c in httpx.get(f"{url}?limit=100", headers=headers).json()["data"]}
    spec = Spec(model="emu", concurrency=3, requests=6, max_tokens=8, route="conversation")
    shots, seconds = asyncio.run(run_shots(gateway.base_url, spec, api_key=ADMIN_KEY))
    assert [shot.error for shot in shots] == [None] * 6
    assert [shot.tokens for shot in shots] == [8] * 6  # one token.delta event a token
    assert all(shot.ttft is not None and 0 < shot.ttft < seconds for shot in shots)
    listed = httpx.get(f"{url}?limit=100", headers=headers).json()["data"]
    made = [c for c in listed if c["id"] not in before]
    assert len(made) == 3 and {c["title"] for c in made} == {"bench"}
    chats = [httpx.get(f"{url}/{c['id']}/messages", headers=headers).json()["data"] for c in made]
    assert sum(len(turns) for turns in chats) == 12  # each request a question and a reply
    for turns in chats:
        assert [m["role"] for m in turns] == ["user", "assistant"] * (len(turns) // 2)
        assert all(m["content"] for m in turns)
        assert {m["status"] for m in turns[1::2]} == {"complete"}
    # Later questions went with the exchanges before them: longer prompts.
    prompts = [[m["usage"]["prompt_tokens"] for m in turns[1::2]] for turns in chats]
    assert any(len(p) > 1 for p in prompts)
    assert all(later > earlier + 8 for p in prompts for earlier, later in itertools.pairwise(p))


def test_a_chat_that_cannot_start_says_why(gateway: LiveServer) -> None:
    spec = Spec(model="nope", concurrency=2, requests=2, max_tokens=4, route="conversation")
    with pytest.raises(HttpError, match="making a conversation: HTTP 4"):
        asyncio.run(run_shots(gateway.base_url, spec, api_key=ADMIN_KEY))


def test_chats_made_beforehand_are_used(gateway: LiveServer) -> None:
    spec = Spec(model="emu", concurrency=2, requests=4, max_tokens=4, route="conversation")
    made = asyncio.run(new_chats(gateway.base_url, spec, api_key=ADMIN_KEY))
    assert len(made) == 2
    ready = dataclasses.replace(spec, conversations=made)
    shots, _ = asyncio.run(run_shots(gateway.base_url, ready, api_key=ADMIN_KEY))
    assert [shot.error for shot in shots] == [None] * 4
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    turns = [
        httpx.get(f"{gateway.base_url}/conversations/{c}/messages", headers=headers).json()
        for c in made
    ]
    assert sum(len(t["data"]) for t in turns) == 8  # a question and a reply a request
