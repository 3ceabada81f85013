"""One message of the chat: a meta line (who, model, tokens, time) over its text as Markdown.

A reply being generated is appended to its MarkdownText piece by piece: only the last block is
parsed and drawn again, and pieces that come faster than frames are drawn together.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from tui.data import ChatMessage
from tui.replies import Reply
from tui.widgets.markdown_text import MarkdownText

__all__ = ["MessageView"]


class MessageView(Vertical):
    """A stored message, or a reply still streaming (then `reply` is set)."""

    def __init__(self, message: ChatMessage, *, reply: Reply | None = None) -> None:
        super().__init__(classes=f"message {message.role}")
        self.message = message
        self.reply = reply
        streamed = reply is not None and message.role == "assistant"
        self.seq = reply.seq if reply is not None and streamed else 0  # the last event shown
        self.branch: tuple[int, int] | None = None  # (position, count) among its siblings
        self.body = MarkdownText(
            reply.text if reply is not None and streamed else message.content, classes="body"
        )

    @property
    def message_id(self) -> str | None:
        if self.reply is not None:
            if self.message.role == "assistant":
                return self.reply.message_id
            return self.reply.user_message_id
        return self.message.id or None

    @property
    def streaming(self) -> bool:
        return self.reply is not None and not self.reply.done

    @property
    def text(self) -> str:
        return self.body.source

    def compose(self) -> ComposeResult:
        yield Static(self._meta(), classes="meta", markup=False)
        yield self.body

    def on_mount(self) -> None:
        if self.reply is not None and self.message.role == "assistant" and self.reply.done:
            self.finish(self.reply.as_message())  # it ended before this view was shown

    def feed(self, seq: int, text: str) -> None:
        """Show the next piece of a streaming reply (pieces this view already has are skipped)."""
        if seq > self.seq:
            self.seq = seq
            self.body.append(text)

    def finish(self, message: ChatMessage) -> None:
        """The reply is stored: its text becomes exactly the stored one, and its meta final."""
        self.message = message
        if self.body.source != message.content:
            # Only when the server's text differs from what streamed (a late resume of a reply
            # it had already forgotten sends its stored text at once).
            self.body.update(message.content)
        self.refresh_meta()

    def set_branch(self, position: int, count: int) -> None:
        self.branch = (position, count) if count > 1 else None
        self.refresh_meta()

    def refresh_meta(self) -> None:
        if self.is_mounted:
            self.query_one(".meta", Static).update(self._meta())

    def _meta(self) -> str:
        """`You · 14:03` or `smollm2 · 42 tokens · 14:03 · 1.2 s`, with status and branch."""
        message, reply = self.message, self.reply
        if message.role == "user":
            parts = ["You"]
        elif message.role == "system":
            parts = ["System"]
        else:
            parts = [message.model or (reply.model if reply else None) or "assistant"]
            if message.tokens is not None:
                parts.append(f"{message.tokens} tokens")
        if message.clock:
            parts.append(message.clock)
        if reply is not None and message.role == "assistant" and reply.finished_at:
            parts.append(f"{reply.seconds:.1f} s")
        status = "generating…" if self.streaming else message.status
        if message.role == "assistant" and status != "complete":
            parts.append(status)
        if self.branch is not None:
            parts.append(f"‹{self.branch[0]}/{self.branch[1]}›")
        return " · ".join(parts)
