"""One message of the chat: a meta line (who, model, tokens, time) over its text as Markdown.

A reply being generated is fed through Textual's MarkdownStream, which appends to the document
(re-parsing only from the last block) and batches pieces that come faster than it can draw.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from tui.data import ChatMessage
from tui.replies import Reply

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
        self._initial = reply.text if reply is not None and streamed else message.content
        self._stream: MarkdownStream | None = None
        self._pending: list[str] = []  # pieces that came before the view was mounted

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
        return self.query_one(Markdown).source

    def compose(self) -> ComposeResult:
        yield Static(self._meta(), classes="meta", markup=False)
        yield Markdown(self._initial, classes="body")

    async def on_mount(self) -> None:
        if self.reply is None or self.message.role != "assistant":
            return
        if self.reply.done:
            # It ended between this view being made and being shown.
            await self._show_final(self.reply.as_message())
            return
        self._stream = Markdown.get_stream(self.query_one(Markdown))
        if self._pending:
            await self._stream.write("".join(self._pending))
            self._pending.clear()

    async def feed(self, seq: int, text: str) -> None:
        """Show the next piece of a streaming reply (pieces this view already has are skipped)."""
        if seq <= self.seq:
            return
        self.seq = seq
        if self._stream is None:
            self._pending.append(text)
        else:
            await self._stream.write(text)

    async def finish(self, message: ChatMessage) -> None:
        """The reply is stored: flush the stream; the text becomes exactly the stored one."""
        if self.is_mounted:  # else on_mount shows the finished reply
            await self._show_final(message)

    async def _show_final(self, message: ChatMessage) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.stop()
        self.message = message
        markdown = self.query_one(Markdown)
        if markdown.source != message.content:
            # Only when the server's text differs from what streamed (a late resume of a reply
            # it had already forgotten sends its stored text at once).
            await markdown.update(message.content)
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
