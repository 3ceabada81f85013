"""The line above the key hints: server, model, the context gauge, quota, notices.

The gauge (`1,234/8,192 ctx (15%)`) is the conversation's tokens (the last reply's prompt plus
answer) against the model's context window; from CONTEXT_WARNING of it on it shows in the
warning colour, as the server soon leaves the oldest turns out of the prompt.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

__all__ = ["CONTEXT_WARNING", "StatusBar", "quota_text"]

CONTEXT_WARNING = 0.8

# The limit shown, in order of preference: the one a person runs into over a day of chatting.
_QUOTA_KINDS = (
    ("tokens_per_day", "tokens today"),
    ("requests_per_day", "requests today"),
    ("tokens_per_minute", "tokens/min"),
    ("requests_per_minute", "requests/min"),
)


def quota_text(remaining: dict[str, Any] | None) -> str:
    """`95,000 tokens today left` from one model's /v1/usage `remaining`."""
    if remaining is None:
        return ""
    for kind, words in _QUOTA_KINDS:
        limit = remaining.get(kind)
        if isinstance(limit, dict) and limit.get("remaining") is not None:
            return f"{limit['remaining']:,} {words} left"
    return "no quota limits"


class StatusBar(Widget):
    """One line; a notice with a deadline counts down (a 429's retry) and then clears."""

    COMPONENT_CLASSES = {"status--warning"}

    server: reactive[str] = reactive("")
    model: reactive[str] = reactive("")
    tokens: reactive[int] = reactive(0)
    context: reactive[int] = reactive(0)  # the model's context window; 0 when unknown
    quota: reactive[str] = reactive("")
    notice: reactive[str] = reactive("")
    online: reactive[bool] = reactive(True)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._until: float | None = None
        self._text = ""

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    @property
    def share(self) -> float | None:
        """How much of the context window the conversation takes (None: window unknown)."""
        return self.tokens / self.context if self.context else None

    @property
    def gauge(self) -> str:
        """`1,234/8,192 ctx (15%)`, or `1,234 tokens` when the window is unknown."""
        if self.share is None:
            return f"{self.tokens:,} tokens" if self.tokens else ""
        return f"{self.tokens:,}/{self.context:,} ctx ({self.share:.0%})"

    def count_down(self, text: str, seconds: float) -> None:
        """Show `text` followed by the seconds left, until they are up."""
        self._until = time.monotonic() + seconds
        self._text = text
        self._tick()

    def _tick(self) -> None:
        if self._until is None:
            return
        left = self._until - time.monotonic()
        if left <= 0:
            self._until = None
            self.notice = ""
        else:
            self.notice = f"{self._text} {left:.0f} s"

    def render(self) -> Text:
        text = Text(" ", no_wrap=True, overflow="ellipsis")
        parts: list[Text | str] = [self.server if self.online else f"{self.server} (offline)"]
        if self.model:
            parts.append(self.model)
        if self.gauge:
            full = self.share is not None and self.share >= CONTEXT_WARNING
            style = self.get_component_rich_style("status--warning", partial=True) if full else ""
            parts.append(Text(self.gauge, style=style))
        if self.quota:
            parts.append(self.quota)
        if self.notice:
            parts.append(self.notice)
        return text.append(Text(" · ").join(Text(p) if isinstance(p, str) else p for p in parts))
