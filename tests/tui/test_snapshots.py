"""Layout snapshots (80x24) of the main screen, the help screen and the model picker.

The app runs against a stand-in for the server (fixed conversations, messages and models), so
the pictures depend on nothing but the code. `pytest --snapshot-update` redraws them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from tui.api import ChatApi, Endpoint
from tui.app import ChatApp
from tui.data import ChatMessage, Conversation, ModelInfo, Page
from tui.widgets.composer import Composer

AT = "2026-03-01T09:30:00Z"
ANSWER = """Sure. A **binary search** halves the range each step:

```python
def find(xs, x):
    lo, hi = 0, len(xs)
```

It takes `O(log n)` steps."""


class StandIn(ChatApi):
    """Answers like a server with two conversations and two models, without a network."""

    def __init__(self) -> None:
        super().__init__(Endpoint("http://127.0.0.1:8000", "ca-snapshot"))

    async def conversations(
        self, *, cursor: str | None = None, limit: int = 50
    ) -> Page[Conversation]:
        return Page(
            [
                Conversation("c2", "Binary search in Python", "smollm2", updated_at=AT),
                Conversation("c1", "Trip to Lisbon", "smollm2", pinned=True, updated_at=AT),
            ],
            None,
        )

    async def messages(
        self, cid: str, *, before: str | None = None, limit: int = 30
    ) -> Page[ChatMessage]:
        usage = {"prompt_tokens": 31, "completion_tokens": 48, "total_tokens": 79}
        return Page(
            [
                ChatMessage("m1", "user", "How does binary search work?", created_at=AT),
                ChatMessage("m2", "assistant", ANSWER, "m1", "smollm2", usage=usage, created_at=AT),
            ],
            None,
        )

    async def siblings(self, cid: str, mid: str) -> list[ChatMessage]:
        return [ChatMessage(mid, "assistant", "")]

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo("smollm2", 8192), ModelInfo("scripted", 8192, ready=False)]

    async def usage(self) -> dict[str, Any]:
        return {"remaining": {"smollm2": {"tokens_per_day": {"remaining": 95000, "limit": 100000}}}}


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Message times print in local time: make that UTC everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def open_first(pilot: Pilot[Any]) -> None:
    """Open the pinned conversation and let everything settle, without a blinking cursor."""
    await pilot.pause(0.2)
    screen = pilot.app.screen_stack[0]
    screen.query_one(Composer).cursor_blink = False
    await screen.open("c1")  # type: ignore[attr-defined]
    await pilot.pause(0.3)


def test_main_screen(snap_compare: Any) -> None:
    assert snap_compare(ChatApp(StandIn()), terminal_size=(80, 24), run_before=open_first)


def test_help_screen(snap_compare: Any) -> None:
    async def help_open(pilot: Pilot[Any]) -> None:
        await open_first(pilot)
        await pilot.press("f1")
        await pilot.pause(0.2)

    assert snap_compare(ChatApp(StandIn()), terminal_size=(80, 24), run_before=help_open)


def test_model_picker(snap_compare: Any) -> None:
    async def picker_open(pilot: Pilot[Any]) -> None:
        await open_first(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause(0.3)

    assert snap_compare(ChatApp(StandIn()), terminal_size=(80, 24), run_before=picker_open)
