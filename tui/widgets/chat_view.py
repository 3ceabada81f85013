"""The open conversation's current branch, oldest at the top; older pages load on scrolling up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual import work
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from tui.api import ApiError, ChatApi
from tui.data import ChatMessage
from tui.replies import Replies, Reply
from tui.widgets.message import MessageView

__all__ = ["ChatView"]

NEW_CHAT = "New chat: type below and press Enter (Ctrl+J for a new line, F1 for help)."


class ChatView(VerticalScroll):
    """Shows one conversation; streaming replies are fed in by the screen that follows them."""

    PAGE = 30

    @dataclass
    class Loaded(Message):
        """A conversation's newest page is on screen."""

        chat_view: ChatView
        conversation_id: str

    @dataclass
    class Orphan(Message):
        """A reply is still being generated but this client does not follow it: resume it."""

        reply: Reply

    @dataclass
    class LoadFailed(Message):
        error: ApiError

    def __init__(self, api: ChatApi, replies: Replies, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.api = api
        self.replies = replies
        self.conversation_id: str | None = None
        self._older: str | None = None  # `before` for the next older page; None at the top

    def on_mount(self) -> None:
        self.anchor()
        self.watch(self, "scroll_y", self._near_top, init=False)

    async def show(self, conversation_id: str | None, notice: str = NEW_CHAT) -> None:
        """Switch to a conversation (None: an empty new chat, or `notice` alone)."""
        self.conversation_id, self._older = conversation_id, None
        await self.remove_children()
        if conversation_id is None:
            await self.mount(Static(notice, classes="notice", markup=False))
        else:
            self.load(conversation_id)

    @work(exclusive=True, group="chat-load")
    async def load(self, conversation_id: str) -> None:
        """Fetch the newest page of the branch and show it, scrolled to the end."""
        try:
            page = await self.api.messages(conversation_id, limit=self.PAGE)
        except ApiError as exc:
            self.post_message(self.LoadFailed(exc))
            return
        if conversation_id != self.conversation_id:
            return
        await self.remove_children()
        await self.mount_all([self._view_of(m) for m in page.items])
        self._older = page.cursor
        self.anchor()
        self.post_message(self.Loaded(self, conversation_id))

    def _near_top(self, y: float) -> None:
        if y <= 1 and self._older and self.conversation_id:
            self.load_older(self.conversation_id, self._older)

    @work(exclusive=True, group="chat-older")
    async def load_older(self, conversation_id: str, before: str) -> None:
        """Put the page before `before` on top, keeping what is on screen where it is."""
        self._older = None  # one request at a time
        try:
            page = await self.api.messages(conversation_id, before=before, limit=self.PAGE)
        except ApiError as exc:
            self._older = before
            self.notify(exc.message, severity="error")
            return
        if conversation_id != self.conversation_id:
            return
        height = self.virtual_size.height
        await self.mount_all([self._view_of(m) for m in page.items], before=0)
        self._older = page.cursor

        def keep_place() -> None:
            self.scroll_to(y=self.scroll_y + self.virtual_size.height - height, animate=False)

        self.call_after_refresh(keep_place)

    def _view_of(self, message: ChatMessage) -> MessageView:
        if message.role != "assistant" or message.status != "streaming":
            return MessageView(message)
        reply = self.replies.find(message.id)
        if reply is None:
            reply = Reply(
                self.conversation_id or "",
                message_id=message.id,
                user_message_id=message.parent_id,
                model=message.model,
                created_at=message.created_at,
            )
            self.post_message(self.Orphan(reply))
        elif reply.done:
            return MessageView(reply.as_message())
        return MessageView(message, reply=reply)

    # -- replies, fed by the screen ----------------------------------------------------------

    async def begin(self, reply: Reply, *, replacing: Sequence[MessageView] = ()) -> None:
        """Show a new reply (and its question, if it has one) in place of `replacing`."""
        if reply.conversation_id != self.conversation_id:
            return
        for view in replacing:
            await view.remove()
        await self.query_children(".notice").remove()
        views = [MessageView(reply.as_question(), reply=reply)] if reply.question else []
        views.append(MessageView(reply.as_message(), reply=reply))
        await self.mount_all(views)
        self.anchor()

    @property
    def views(self) -> list[MessageView]:
        """The messages shown, oldest first (children only: a query would walk every block of
        every answer's Markdown, on each token)."""
        return [child for child in self.children if isinstance(child, MessageView)]

    def view_of(self, reply: Reply) -> MessageView | None:
        for view in reversed(self.views):
            if view.reply is reply and view.message.role == "assistant":
                return view
        return None

    def feed(self, reply: Reply, seq: int, text: str) -> None:
        view = self.view_of(reply)
        if view is not None:
            view.feed(seq, text)

    def started(self, reply: Reply) -> None:
        for view in self.views:
            if view.reply is reply:
                view.refresh_meta()

    def finish(self, reply: Reply) -> None:
        view = self.view_of(reply)
        if view is not None:
            view.finish(reply.as_message())

    async def drop(self, reply: Reply) -> None:
        """Take away the views of a reply the server never stored (refused before it began)."""
        for view in self.views:
            if view.reply is reply and view.message_id is None:
                await view.remove()

    def last(self, role: str) -> MessageView | None:
        """The newest message view of that role, if any."""
        for view in reversed(self.views):
            if view.message.role == role:
                return view
        return None

    @property
    def tokens(self) -> int:
        """Tokens the conversation takes now: the newest reply's prompt plus its answer."""
        for view in reversed(self.views):
            if view.message.role == "assistant" and view.message.usage:
                return view.message.total_tokens
        return 0
