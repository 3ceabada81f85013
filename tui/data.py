"""The server's values as the client sees them: conversations, messages, hits, stream events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

__all__ = [
    "ChatMessage",
    "Completed",
    "Conversation",
    "Delta",
    "Failed",
    "ModelInfo",
    "Page",
    "SearchHit",
    "Started",
    "StreamEvent",
    "event_of",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Conversation:
    """One conversation as listed by /v1/conversations."""

    id: str
    title: str | None
    model: str | None = None
    system_prompt: str | None = None
    pinned: bool = False
    archived: bool = False
    updated_at: str = ""

    @property
    def label(self) -> str:
        return self.title or "New chat"

    @classmethod
    def of(cls, data: dict[str, Any]) -> Conversation:
        return cls(
            id=data["id"],
            title=data.get("title"),
            model=data.get("model"),
            system_prompt=data.get("system_prompt"),
            pinned=bool(data.get("pinned")),
            archived=bool(data.get("archived")),
            updated_at=data.get("updated_at") or "",
        )


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation's current branch."""

    id: str
    role: str
    content: str
    parent_id: str | None = None
    model: str | None = None
    status: str = "complete"
    usage: dict[str, Any] | None = None
    created_at: str = ""

    @property
    def tokens(self) -> int | None:
        """The reply's own tokens (completion), when the server counted them."""
        if not self.usage:
            return None
        return int(self.usage.get("completion_tokens") or 0)

    @property
    def total_tokens(self) -> int:
        return int((self.usage or {}).get("total_tokens") or 0)

    @property
    def clock(self) -> str:
        """The local time it was written, HH:MM (empty when unknown)."""
        if not self.created_at:
            return ""
        try:
            moment = datetime.fromisoformat(self.created_at.replace("Z", "+00:00"))
        except ValueError:
            return ""
        return moment.astimezone().strftime("%H:%M")

    @classmethod
    def of(cls, data: dict[str, Any]) -> ChatMessage:
        return cls(
            id=data["id"],
            role=data["role"],
            content=data.get("content") or "",
            parent_id=data.get("parent_id"),
            model=data.get("model"),
            status=data.get("status") or "complete",
            usage=data.get("usage"),
            created_at=data.get("created_at") or "",
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a listing and the cursor to the next one (None at the end)."""

    items: list[T]
    cursor: str | None


@dataclass(frozen=True)
class SearchHit:
    """A search result: which conversation, and a snippet with the match marked."""

    conversation_id: str
    title: str | None
    snippet: str
    message_id: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """A model the server serves."""

    id: str
    context_window: int | None = None
    ready: bool = True


@dataclass(frozen=True)
class Started:
    """message.started: the ids of the stored question and of the reply being generated."""

    seq: int
    conversation_id: str
    message_id: str
    user_message_id: str | None
    model: str | None


@dataclass(frozen=True)
class Delta:
    """token.delta: the next piece of the reply's text."""

    seq: int
    text: str


@dataclass(frozen=True)
class Failed:
    """error: the engine failed; message.completed follows with what was generated."""

    seq: int
    message: str


@dataclass(frozen=True)
class Completed:
    """message.completed: the reply is stored; `content` is its whole text."""

    seq: int
    message_id: str
    status: str
    content: str
    usage: dict[str, Any] | None = field(default=None)


StreamEvent = Started | Delta | Failed | Completed


def event_of(name: str, seq: int, data: dict[str, Any]) -> StreamEvent | None:
    """The typed event for one SSE event of a reply; None for kinds this client ignores."""
    if name == "message.started":
        return Started(
            seq,
            conversation_id=data.get("conversation_id") or "",
            message_id=data["message_id"],
            user_message_id=data.get("user_message_id"),
            model=data.get("model"),
        )
    if name == "token.delta":
        return Delta(seq, data.get("text") or "")
    if name == "error":
        return Failed(seq, data.get("message") or "the engine failed")
    if name == "message.completed":
        return Completed(
            seq,
            message_id=data["message_id"],
            status=data.get("status") or "complete",
            content=data.get("content") or "",
            usage=data.get("usage"),
        )
    return None
