"""The chat half of the main screen: send, follow replies, stop, regenerate, edit, branch.

Each reply is followed by its own worker until the server stores it, whatever is on screen:
switching conversation only changes what is shown, so the server never sees the client leave
and nothing is lost; a view of a reply in progress is filled from what the worker has so far.
MainScreen builds on this with the conversation list, the dialogs and the status line's data.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from textual import on, work
from textual.binding import Binding
from textual.screen import Screen

from tui.api import ApiError, ChatApi, RateLimited, ServerUnreachable
from tui.data import ChatMessage, Completed, Conversation, Delta, Failed, Started, StreamEvent
from tui.messages import ReplyDelta, ReplyDone, ReplyFailed, ReplyStarted
from tui.replies import Replies, Reply
from tui.widgets.chat_view import ChatView
from tui.widgets.composer import Composer
from tui.widgets.message import MessageView
from tui.widgets.sidebar import Sidebar
from tui.widgets.status_bar import CONTEXT_WARNING, StatusBar

__all__ = ["RETRY_OFFLINE_SECONDS", "ChatScreen"]

RETRY_OFFLINE_SECONDS = 5.0
BUSY = "A reply is still being written: wait, or press Esc to stop it."


class ChatScreen(Screen[None]):
    """Replies and what can be done to them; the widgets come from the subclass's compose."""

    BINDINGS = [
        Binding("escape", "stop", "Stop", tooltip="Stop the reply (kept as cancelled)", id="stop"),
        Binding("ctrl+r", "regenerate", "Regenerate", tooltip="Another answer", id="regenerate"),
        Binding(
            "f4",
            "edit_last",
            "Edit",
            show=False,
            tooltip="Edit the last question (a new branch)",
            id="edit",
        ),
        Binding(
            "alt+left",
            "branch(-1)",
            "Previous branch",
            show=False,
            tooltip="Previous answer (or question)",
            id="branch-previous",
        ),
        Binding(
            "alt+right",
            "branch(1)",
            "Next branch",
            show=False,
            tooltip="Next answer (or question)",
            id="branch-next",
        ),
    ]

    def __init__(
        self, api: ChatApi, *, model: str | None = None, max_tokens: int | None = None
    ) -> None:
        super().__init__()
        self.api = api
        self.model = model  # for new conversations, until one is picked
        self.max_tokens = max_tokens
        self.replies = Replies()
        self.current: Conversation | None = None
        self.editing: ChatMessage | None = None  # the question F4 is rewriting
        self.online = True
        self.windows: dict[str, int] = {}  # each model's context window, from /v1/models
        self._warned: set[str] = set()  # conversations told they are near the window

    @property
    def chat(self) -> ChatView:
        return self.query_one(ChatView)

    @property
    def sidebar(self) -> Sidebar:
        return self.query_one(Sidebar)

    @property
    def composer(self) -> Composer:
        return self.query_one(Composer)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def current_id(self) -> str | None:
        return self.current.id if self.current else None

    @property
    def current_model(self) -> str | None:
        return (self.current.model if self.current else None) or self.model

    # -- the status line's model and context gauge -------------------------------------------

    def show_model(self) -> None:
        """The model in use here, and the size of its context window for the gauge."""
        model = self.current_model or ""
        self.status.model = model
        self.status.context = self.windows.get(model, 0)

    def show_tokens(self, tokens: int) -> None:
        """The conversation's size; once it nears the context window, say what that means."""
        self.status.tokens = tokens
        share = self.status.share
        cid = self.current_id
        if share is None or share < CONTEXT_WARNING or cid is None or cid in self._warned:
            return
        self._warned.add(cid)
        self.notify(
            f"This conversation fills {share:.0%} of {self.status.model}'s "
            f"{self.status.context:,}-token context: soon its oldest turns are left out of "
            "the prompt. Ctrl+N starts a fresh chat.",
            title="Context nearly full",
            severity="warning",
            timeout=10,
        )

    # -- showing a conversation ----------------------------------------------------------------

    @on(ChatView.Loaded)
    def loaded(self, event: ChatView.Loaded) -> None:
        """The conversation is on screen: its size, and which branch of how many."""
        self.show_tokens(self.chat.tokens)
        self.show_branches(event.conversation_id)

    @on(ChatView.LoadFailed)
    def load_failed(self, event: ChatView.LoadFailed) -> None:
        """Its messages could not be had."""
        self.notify(event.error.message, severity="error")

    @on(ChatView.Orphan)
    def orphan(self, event: ChatView.Orphan) -> None:
        """A reply is still being generated (from before a restart of this app): follow it."""
        reply = event.reply
        assert reply.message_id is not None
        self.follow(reply, self.api.resume(reply.conversation_id, reply.message_id, after=0))

    @work(exclusive=True, group="branches")
    async def show_branches(self, conversation_id: str) -> None:
        """`‹2/3›` on the last question and answer when they have alternatives."""
        for role in ("user", "assistant"):
            view = self.chat.last(role)
            if view is None or not view.message_id:
                continue
            try:
                siblings = await self.api.siblings(conversation_id, view.message_id)
            except ApiError:
                return
            ids = [m.id for m in siblings]
            if view.message_id in ids:
                view.set_branch(ids.index(view.message_id) + 1, len(ids))

    # -- sending and following replies -------------------------------------------------------

    @on(Composer.Submitted)
    def submitted(self, event: Composer.Submitted) -> None:
        """Enter in the composer: send the question (one reply at a time per conversation)."""
        if self.replies.active(self.current_id):
            self.notify(BUSY)
            self.composer.restore(event.text)
            return
        self.send(event.text)

    @work(exclusive=True, group="send")
    async def send(self, text: str) -> None:
        """Create the conversation if this is a new chat, then send and follow the reply."""
        if self.current is None:
            try:
                self.current = await self.api.create(model=self.model)
            except ApiError as exc:
                self.composer.restore(text)
                self.report(exc)
                return
            self.sidebar.current = self.current.id
            self.chat.conversation_id = self.current.id
            self.sidebar.reload(select=self.current.id)
        conversation_id, editing = self.current.id, self.editing
        self.editing = None
        replacing: list[MessageView] = []
        if editing is not None:
            views = self.chat.views
            ids = [v.message_id for v in views]
            if editing.id in ids:
                replacing = views[ids.index(editing.id) :]
        reply = Reply(conversation_id, question=text, model=self.current_model)
        await self.chat.begin(reply, replacing=replacing)
        events = self.api.send(
            conversation_id,
            text,
            parent_id=editing.parent_id if editing else None,
            branch=editing is not None,
            max_tokens=self.max_tokens,
        )
        self.follow(reply, events)

    def follow(self, reply: Reply, events: AsyncGenerator[StreamEvent, None]) -> None:
        """Follow a reply's stream on its own worker until the server has stored it."""
        self.replies.add(reply)
        self.run_worker(
            self._follow(reply, events),
            group=f"reply:{reply.conversation_id}",
            exclusive=True,
            exit_on_error=False,
        )

    async def _follow(self, reply: Reply, events: AsyncGenerator[StreamEvent, None]) -> None:
        try:
            async with aclosing(events) as stream:
                async for event in stream:
                    self._apply(reply, event)
        except ApiError as exc:
            reply.status, reply.finished_at = "failed", time.monotonic()
            self.post_message(ReplyFailed(reply, exc))

    def _apply(self, reply: Reply, event: StreamEvent) -> None:
        """Record one event on the reply and tell the screen."""
        if isinstance(event, Started):
            reply.message_id, reply.user_message_id = event.message_id, event.user_message_id
            reply.model = event.model or reply.model
            self.post_message(ReplyStarted(reply))
            if reply.stop_requested:
                self.cancel(reply)
        elif isinstance(event, Delta):
            reply.pieces.append(event.text)
            reply.seq = event.seq
            self.post_message(ReplyDelta(reply, event.seq, event.text))
        elif isinstance(event, Failed):
            reply.error = event.message
        elif isinstance(event, Completed):
            if event.content != reply.text:
                reply.pieces = [event.content]
            reply.seq, reply.usage = event.seq, event.usage
            reply.status, reply.finished_at = event.status, time.monotonic()
            self.post_message(ReplyDone(reply))

    @on(ReplyStarted)
    def reply_started(self, event: ReplyStarted) -> None:
        """Both messages have ids now."""
        if event.reply.conversation_id == self.chat.conversation_id:
            self.chat.started(event.reply)

    @on(ReplyDelta)
    def reply_delta(self, event: ReplyDelta) -> None:
        """More text: onto the screen if that conversation is shown."""
        if event.reply.conversation_id == self.chat.conversation_id:
            self.chat.feed(event.reply, event.seq, event.text)

    @on(ReplyDone)
    def reply_done(self, event: ReplyDone) -> None:
        """The reply is stored: its final text and meta, or a word that it is ready."""
        reply = event.reply
        shown = reply.conversation_id == self.chat.conversation_id
        if shown:
            self.chat.finish(reply)
            self.show_tokens(self.chat.tokens)
            self.show_branches(reply.conversation_id)
        if reply.error:
            self.notify(f"The model failed: {reply.error}", severity="error")
        elif not shown:
            title = self.sidebar.conversations.get(reply.conversation_id)
            self.notify(f"A reply is ready in “{title.label if title else 'another chat'}”")

    @on(ReplyFailed)
    async def reply_failed(self, event: ReplyFailed) -> None:
        """Refused or lost: nothing typed is lost, and the screen shows what the server has."""
        reply = event.reply
        if reply.message_id is None:
            await self.chat.drop(reply)
            if reply.question:
                self.composer.restore(reply.question)
            elif reply.conversation_id == self.chat.conversation_id:
                self.chat.load(reply.conversation_id)  # a refused regenerate: the old answer
        self.report(event.error)

    def report(self, error: ApiError) -> None:
        """Tell the user what went wrong: a countdown for a 429, how to start a server."""
        if isinstance(error, RateLimited):
            wait = max(1, round(error.retry_after))
            self.notify(
                f"Rate limited: {error.message} Try again in {wait} s.",
                title="Slow down",
                severity="warning",
                timeout=min(max(wait, 4), 15),
            )
            self.status.count_down("rate limited, retry in", error.retry_after)
        elif isinstance(error, ServerUnreachable):
            self.online = self.status.online = False
            self.notify(error.message, severity="error", timeout=8)
            self.set_timer(RETRY_OFFLINE_SECONDS, self.sidebar.reload)
        else:
            self.notify(error.message, severity="error")

    # -- controls ----------------------------------------------------------------------------

    def action_stop(self) -> None:
        """Esc: stop the reply being generated here; the server keeps it as cancelled."""
        reply = self.replies.active(self.current_id)
        if reply is None:
            if self.editing is not None:
                self.editing = None
                self.composer.clear()
                self.notify("Edit abandoned.")
            return
        if reply.message_id is None:
            reply.stop_requested = True  # cancelled as soon as the server names it
        else:
            self.cancel(reply)

    @work(group="cancel")
    async def cancel(self, reply: Reply) -> None:
        """Ask the server to stop; the stream then ends with the reply stored as cancelled."""
        assert reply.message_id is not None
        try:
            await self.api.cancel(reply.conversation_id, reply.message_id)
        except ApiError as exc:
            self.report(exc)

    async def action_regenerate(self) -> None:
        """Ctrl+R: another answer to the last question, beside the old one."""
        conversation_id = self.current_id
        if conversation_id is None:
            return
        if self.replies.active(conversation_id):
            self.notify(BUSY)
            return
        last = self.chat.last("assistant")
        if last is None or not last.message_id:
            self.notify("There is no answer to regenerate yet.")
            return
        reply = Reply(conversation_id, model=self.current_model)
        await self.chat.begin(reply, replacing=[last])
        events = self.api.regenerate(conversation_id, last.message_id, max_tokens=self.max_tokens)
        self.follow(reply, events)

    @work(exclusive=True, group="edit")
    async def action_edit_last(self) -> None:
        """F4: put the last question in the composer; sending it makes a new branch."""
        conversation_id = self.current_id
        if self.replies.active(conversation_id):
            self.notify(BUSY)
            return
        last = self.chat.last("user")
        if conversation_id is None or last is None or not last.message_id:
            self.notify("There is no question to edit yet.")
            return
        try:
            question = await self.api.message(conversation_id, last.message_id)
        except ApiError as exc:
            self.report(exc)
            return
        self.editing = question
        self.composer.set_text(question.content)
        self.composer.focus()
        self.notify("Editing the last question: Enter sends it as a new branch, Esc abandons.")

    @work(exclusive=True, group="branch")
    async def action_branch(self, step: int) -> None:
        """Alt+←/→: the previous or next alternative of the last answer (or question)."""
        conversation_id = self.current_id
        if conversation_id is None or self.replies.active(conversation_id):
            return
        for view in (self.chat.last("assistant"), self.chat.last("user")):
            if view is None or not view.message_id or view.branch is None:
                continue
            try:
                siblings = await self.api.siblings(conversation_id, view.message_id)
                ids = [m.id for m in siblings]
                target = ids[(ids.index(view.message_id) + step) % len(ids)]
                await self.api.switch(conversation_id, target)
            except (ApiError, ValueError) as exc:
                self.notify(str(exc), severity="error")
                return
            self.chat.load(conversation_id)
            return
        self.notify("This answer has no alternatives (Ctrl+R makes one).")
