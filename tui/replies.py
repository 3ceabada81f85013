"""What the client knows of replies being generated, so a view can leave and come back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tui.data import ChatMessage

__all__ = ["Replies", "Reply"]


@dataclass
class Reply:
    """One reply followed by this client: its text so far and the last event seen."""

    conversation_id: str
    question: str | None = None  # what was sent (None for regenerate and resume)
    message_id: str | None = None
    user_message_id: str | None = None
    model: str | None = None
    seq: int = 0
    pieces: list[str] = field(default_factory=list)
    status: str = "streaming"
    usage: dict[str, Any] | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None
    stop_requested: bool = False  # Esc before the server named the reply: cancel once it does
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def done(self) -> bool:
        return self.status != "streaming"

    @property
    def seconds(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started_at

    def as_message(self) -> ChatMessage:
        """The reply as a message of the conversation, as far as it has come."""
        return ChatMessage(
            id=self.message_id or "",
            role="assistant",
            content=self.text,
            parent_id=self.user_message_id,
            model=self.model,
            status=self.status,
            usage=self.usage,
            created_at=self.created_at,
        )

    def as_question(self) -> ChatMessage:
        return ChatMessage(
            id=self.user_message_id or "",
            role="user",
            content=self.question or "",
            created_at=self.created_at,
        )


class Replies:
    """The replies in flight, one per conversation at most (a send waits for the last one)."""

    def __init__(self) -> None:
        self._by_conversation: dict[str, Reply] = {}

    def add(self, reply: Reply) -> None:
        self._by_conversation[reply.conversation_id] = reply

    def active(self, conversation_id: str | None) -> Reply | None:
        """The reply still being generated in that conversation, if any."""
        reply = self._by_conversation.get(conversation_id or "")
        return reply if reply is not None and not reply.done else None

    def find(self, message_id: str) -> Reply | None:
        for reply in self._by_conversation.values():
            if reply.message_id == message_id:
                return reply
        return None

    def discard(self, reply: Reply) -> None:
        if self._by_conversation.get(reply.conversation_id) is reply:
            del self._by_conversation[reply.conversation_id]

    def __len__(self) -> int:
        return sum(1 for reply in self._by_conversation.values() if not reply.done)
