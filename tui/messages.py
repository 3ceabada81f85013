"""App-wide messages: a reply's progress, posted by the worker that follows its stream."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from tui.api import ApiError
from tui.replies import Reply

__all__ = ["ConversationsChanged", "ReplyDelta", "ReplyDone", "ReplyFailed", "ReplyStarted"]


@dataclass
class ReplyStarted(Message):
    """The server stored the question and began the reply: both now have ids."""

    reply: Reply


@dataclass
class ReplyDelta(Message):
    """More text of a reply; `seq` orders it (a view that already shows `seq` skips it)."""

    reply: Reply
    seq: int
    text: str


@dataclass
class ReplyDone(Message):
    """The reply is stored (complete, cancelled or error)."""

    reply: Reply


@dataclass
class ReplyFailed(Message):
    """The reply could not be had (refused, rate limited, server gone): unlock the input."""

    reply: Reply
    error: ApiError


@dataclass
class ConversationsChanged(Message):
    """The list of conversations changed on the server; `select` the one to highlight."""

    select: str | None = None
