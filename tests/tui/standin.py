"""A stand-in for the server (fixed conversations, messages and models) for tests that need no
network: snapshots, copying, the context gauge."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from tui.api import ChatApi, Endpoint
from tui.data import ChatMessage, Conversation, ModelInfo, Page
from tui.widgets.composer import Composer

AT = "2026-03-01T09:30:00Z"
CODE = "def find(xs, x):\n    lo, hi = 0, len(xs)\n"
ANSWER = f"""Sure. A **binary search** halves the range each step:

```python
{CODE}```

It takes `O(log n)` steps."""


class StandIn(ChatApi):
    """Answers like a server with two conversations and two models, without a network."""

    def __init__(self, *, total_tokens: int = 79, answer: str = ANSWER) -> None:
        super().__init__(Endpoint("http://127.0.0.1:8000", "ca-snapshot"))
        self.total_tokens = total_tokens
        self.answer = answer

    async def conversations(
        self, *, cursor: str | None = None, limit: int = 50, archived: bool = False
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
        usage = {
            "prompt_tokens": self.total_tokens - 48,
            "completion_tokens": 48,
            "total_tokens": self.total_tokens,
        }
        return Page(
            [
                ChatMessage("m1", "user", "How does binary search work?", created_at=AT),
                ChatMessage(
                    "m2", "assistant", self.answer, "m1", "smollm2", usage=usage, created_at=AT
                ),
            ],
            None,
        )

    async def siblings(self, cid: str, mid: str) -> list[ChatMessage]:
        return [ChatMessage(mid, "assistant", "")]

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo("smollm2", 8192), ModelInfo("scripted", 8192, ready=False)]

    async def usage(self) -> dict[str, Any]:
        return {"remaining": {"smollm2": {"tokens_per_day": {"remaining": 95000, "limit": 100000}}}}


async def open_first(pilot: Pilot[Any]) -> None:
    """Open the pinned conversation and let everything settle, without a blinking cursor."""
    await pilot.pause(0.2)
    screen = pilot.app.screen_stack[0]
    screen.query_one(Composer).cursor_blink = False
    await screen.open("c1")  # type: ignore[attr-defined]
    await pilot.pause(0.3)
