"""The chat route's frames: one write per read of the engine, each chunk its own SSE event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from chatapp.moderation import OutputGuard
from server.routes.chat import _frames
from tests.chatapp.test_moderation import _moderation, _moderator


def _data(text: str, finish: str | None = None) -> str:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    return json.dumps({"choices": [choice]})


class _Stream:
    """What _frames reads of a ChatStream: its batches, and the outcome it may set."""

    def __init__(self, batches: list[list[str]]) -> None:
        self._batches = batches
        self.outcome = "ok"

    async def batches(self) -> AsyncIterator[list[str]]:
        for batch in self._batches:
            yield batch


def _events(write: bytes) -> list[Any]:
    """The SSE events in one write, each decoded (or [DONE] as it is)."""
    assert write.endswith(b"\n\n")
    out = []
    for event in write.decode().split("\n\n")[:-1]:
        assert event.startswith("data: ")
        data = event.removeprefix("data: ")
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def test_a_batch_is_one_write_with_every_chunk_its_own_event() -> None:
    stream = _Stream([[_data("a"), _data("b"), _data("c")], [_data("d", "stop")]])
    writes = [write async for write in _frames(stream, None)]  # type: ignore[arg-type]
    assert len(writes) == 3  # two batches, then [DONE]
    texts = [[e["choices"][0]["delta"]["content"] for e in _events(w)] for w in writes[:2]]
    assert texts == [["a", "b", "c"], ["d"]]
    assert _events(writes[2]) == ["[DONE]"]


async def test_with_moderation_each_chunk_goes_out_once_checked_up_to_the_blocked_one(
    tmp_path: Path,
) -> None:
    config = _moderation()
    guard = OutputGuard(_moderator(tmp_path, config), config.policies["strict"], lambda d: None)
    batch = [_data("The sled was "), _data("rosebud"), _data(" indeed", "stop")]
    stream = _Stream([batch, [_data("never")]])
    writes = [write async for write in _frames(stream, guard)]  # type: ignore[arg-type]
    events = [_events(write) for write in writes]
    assert events[0][0]["choices"][0]["delta"]["content"] == "The sled was "
    assert events[1][0]["choices"][0]["finish_reason"] == "content_filter"
    assert events[1][0]["choices"][0]["delta"] == {}
    assert events[2:] == [["[DONE]"]]
    assert stream.outcome == "filtered"
