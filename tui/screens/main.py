"""The chat screen: conversations on the left, the open one with its composer on the right.

Each reply is followed by its own worker until the server stores it, whatever is on screen:
switching conversation only changes what is shown, so the server never sees the client leave
and nothing is lost; a view of a reply in progress is filled from what the worker has so far.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, ListView

from tui.api import ApiError, ChatApi, RateLimited, ServerUnreachable
from tui.data import ChatMessage, Completed, Conversation, Delta, Failed, Started, StreamEvent
from tui.messages import ReplyDelta, ReplyDone, ReplyFailed, ReplyStarted
from tui.replies import Replies, Reply
from tui.screens.confirm import ConfirmScreen
from tui.screens.model_picker import ModelPickerScreen
from tui.screens.prompt import PromptScreen
from tui.widgets.chat_view import ChatView
from tui.widgets.composer import Composer
from tui.widgets.message import MessageView
from tui.widgets.sidebar import Sidebar
from tui.widgets.status_bar import StatusBar, quota_text

__all__ = ["MainScreen"]

RETRY_OFFLINE_SECONDS = 5.0


class MainScreen(Screen[None]):
    """Sidebar, chat, composer, status line and key hints."""

    BINDINGS = [
        Binding("ctrl+n", "new_chat", "New", tooltip="Start a new conversation", id="new"),
        Binding("escape", "stop", "Stop", tooltip="Stop the reply (kept as cancelled)", id="stop"),
        Binding("ctrl+r", "regenerate", "Regenerate", tooltip="Another answer", id="regenerate"),
        Binding("ctrl+o", "pick_model", "Model", tooltip="Choose the model", id="model"),
        Binding("ctrl+f", "search", "Search", show=False, tooltip="Search conversations"),
        Binding("f2", "rename", "Rename", show=False, tooltip="Rename the conversation"),
        Binding("ctrl+p", "pin", "Pin", show=False, tooltip="Pin or unpin (pinned stay on top)"),
        Binding(
            "f4", "edit_last", "Edit", show=False, tooltip="Edit the last question (a new branch)"
        ),
        Binding("alt+left", "branch(-1)", "Previous branch", show=False, tooltip="Previous answer"),
        Binding("alt+right", "branch(1)", "Next branch", show=False, tooltip="Next answer"),
        Binding("ctrl+t", "system_prompt", "System prompt", show=False, tooltip="System prompt"),
        Binding("ctrl+l", "copy_last", "Copy", show=False, tooltip="Copy the last answer"),
        Binding("ctrl+s", "export", "Export", show=False, tooltip="Save as Markdown (here)"),
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

    def compose(self) -> ComposeResult:
        with Horizontal(id="body"):
            yield Sidebar(self.api, id="sidebar")
            with Vertical(id="main"):
                yield ChatView(self.api, self.replies, id="chat")
                yield Composer(id="composer")
        yield StatusBar(id="status")
        yield Footer()

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

    async def on_mount(self) -> None:
        self.status.server = self.api.url
        await self.chat.show(None)
        self.composer.focus()
        self.sidebar.reload()
        self.load_defaults()

    @work(exclusive=True, group="defaults")
    async def load_defaults(self) -> None:
        """The default model (the server's first) and the quota left on it."""
        if self.model is None:
            try:
                models = await self.api.models()
            except ApiError:
                return  # the sidebar reports the server being down
            self.model = models[0].id if models else None
        self.status.model = self.current_model or ""
        await self._refresh_usage()

    async def _refresh_usage(self) -> None:
        try:
            usage = await self.api.usage()
        except ApiError:
            return  # the quota line is a nicety; errors show where they matter
        self.status.quota = quota_text(usage.get("remaining", {}).get(self.current_model or ""))

    @work(exclusive=True, group="usage")
    async def refresh_usage(self) -> None:
        await self._refresh_usage()

    # -- the server coming and going ---------------------------------------------------------

    @on(Sidebar.Failed)
    async def list_failed(self, event: Sidebar.Failed) -> None:
        """The list could not be had: say why, and try again shortly if the server is down."""
        if isinstance(event.error, ServerUnreachable):
            if self.online:
                self.online = self.status.online = False
                self.notify(event.error.message, severity="error", timeout=8)
                if self.current is None:
                    await self.chat.show(None, notice=event.error.message)
            self.set_timer(RETRY_OFFLINE_SECONDS, self.sidebar.reload)
        else:
            self.notify(event.error.message, severity="error")

    @on(Sidebar.Listed)
    async def listed(self, event: Sidebar.Listed) -> None:
        """Fresh list: back online if we were not, and the open conversation's new title."""
        if not self.online:
            self.online = self.status.online = True
            self.notify(f"Connected to {self.api.url}")
            if self.current is None:
                await self.chat.show(None)
            self.load_defaults()
        if self.current is not None and self.current.id in self.sidebar.conversations:
            self.current = self.sidebar.conversations[self.current.id]

    # -- opening conversations ---------------------------------------------------------------

    @on(Sidebar.Opened)
    async def opened(self, event: Sidebar.Opened) -> None:
        """Show the chosen conversation (a reply in progress elsewhere keeps going)."""
        await self.open(event.conversation_id)
        self.composer.focus()

    async def open(self, conversation_id: str) -> None:
        self.current = self.sidebar.conversations.get(conversation_id) or Conversation(
            conversation_id, None
        )
        self.sidebar.current = conversation_id
        self.editing = None
        self.status.model = self.current_model or ""
        self.status.tokens = 0
        await self.chat.show(conversation_id)

    @on(ChatView.Loaded)
    def loaded(self, event: ChatView.Loaded) -> None:
        """The conversation is on screen: its size, and which branch of how many."""
        self.status.tokens = self.chat.tokens
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
            self.notify("A reply is still being written: wait, or press Esc to stop it.")
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
                self._report(exc)
                return
            self.sidebar.current = self.current.id
            self.chat.conversation_id = self.current.id
            self.sidebar.reload(select=self.current.id)
        conversation_id, editing = self.current.id, self.editing
        self.editing = None
        replacing: list[MessageView] = []
        if editing is not None:
            views = list(self.chat.query(MessageView))
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
    async def reply_delta(self, event: ReplyDelta) -> None:
        """More text: onto the screen if that conversation is shown."""
        if event.reply.conversation_id == self.chat.conversation_id:
            await self.chat.feed(event.reply, event.seq, event.text)

    @on(ReplyDone)
    async def reply_done(self, event: ReplyDone) -> None:
        """The reply is stored: final text and meta, the list's order and title, the quota."""
        reply = event.reply
        shown = reply.conversation_id == self.chat.conversation_id
        if shown:
            await self.chat.finish(reply)
            self.status.tokens = self.chat.tokens
            self.show_branches(reply.conversation_id)
        if reply.error:
            self.notify(f"The model failed: {reply.error}", severity="error")
        elif not shown:
            title = self.sidebar.conversations.get(reply.conversation_id)
            self.notify(f"A reply is ready in “{title.label if title else 'another chat'}”")
        self.sidebar.reload()
        if self.current is not None and not self.current.title:
            self.set_timer(4.0, self.sidebar.reload)  # the server titles it in the background
        self.refresh_usage()

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
        self._report(event.error)

    def _report(self, error: ApiError) -> None:
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

    async def action_new_chat(self) -> None:
        self.current, self.editing = None, None
        self.sidebar.current = None
        self.sidebar.list_view.index = None
        self.status.tokens = 0
        self.status.model = self.model or ""
        await self.chat.show(None)
        self.composer.focus()

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
            self._report(exc)

    async def action_regenerate(self) -> None:
        """Ctrl+R: another answer to the last question, beside the old one."""
        conversation_id = self.current_id
        if conversation_id is None:
            return
        if self.replies.active(conversation_id):
            self.notify("A reply is still being written: wait, or press Esc to stop it.")
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
            self.notify("A reply is still being written: wait, or press Esc to stop it.")
            return
        last = self.chat.last("user")
        if conversation_id is None or last is None or not last.message_id:
            self.notify("There is no question to edit yet.")
            return
        try:
            question = await self.api.message(conversation_id, last.message_id)
        except ApiError as exc:
            self._report(exc)
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

    def action_search(self) -> None:
        self.sidebar.action_focus_search()

    def _target(self) -> str | None:
        """What list actions act on: the highlighted item when the list has focus, else the
        open conversation."""
        if isinstance(self.focused, ListView) and self.sidebar.highlighted:
            return self.sidebar.highlighted
        return self.current_id

    def action_rename(self) -> None:
        target = self._target()
        if target is None:
            return
        conversation = self.sidebar.conversations.get(target)
        title = conversation.title if conversation else None

        def rename(value: str | None) -> None:
            if value is not None and value.strip():
                self.change(target, title=value.strip())

        self.app.push_screen(PromptScreen("Rename conversation", title or ""), rename)

    def action_pin(self) -> None:
        target = self._target()
        if target is not None:
            conversation = self.sidebar.conversations.get(target)
            self.change(target, pinned=not (conversation and conversation.pinned))

    def action_archive_conversation(self) -> None:
        target = self._target()
        if target is not None:
            self.change(target, archived=True)

    def action_system_prompt(self) -> None:
        conversation = self.current

        def save(value: str | None) -> None:
            if value is None:
                return
            if conversation is None:
                self.create_with(system_prompt=value.strip() or None)
            else:
                self.change(conversation.id, system_prompt=value.strip() or None)

        prompt = (conversation.system_prompt if conversation else None) or ""
        screen = PromptScreen("System prompt for this conversation", prompt, "You are …")
        self.app.push_screen(screen, save)

    def action_pick_model(self) -> None:
        def picked(model: str | None) -> None:
            if model is None:
                return
            self.model = model
            self.status.model = model
            if self.current is not None:
                self.change(self.current.id, model=model)

        self.app.push_screen(ModelPickerScreen(self.api, self.current_model), picked)

    @work(group="change")
    async def change(self, conversation_id: str, **fields: object) -> None:
        """PATCH a conversation and show the result in the list."""
        try:
            changed = await self.api.update(conversation_id, **fields)
        except ApiError as exc:
            self._report(exc)
            return
        if changed.id == self.current_id:
            self.current = changed
            self.status.model = self.current_model or ""
            if changed.archived:
                await self.action_new_chat()
        self.sidebar.reload()

    @work(group="change")
    async def create_with(self, **fields: object) -> None:
        """A new conversation with these fields (a system prompt set before the first send)."""
        try:
            created = await self.api.create(model=self.model, **fields)
        except ApiError as exc:
            self._report(exc)
            return
        await self.open(created.id)
        self.current = created
        self.sidebar.reload(select=created.id)

    def action_delete_conversation(self) -> None:
        target = self._target()
        if target is None:
            return
        conversation = self.sidebar.conversations.get(target)
        label = conversation.label if conversation else "this conversation"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.delete(target)

        self.app.push_screen(ConfirmScreen(f"Delete “{label}”?"), confirmed)

    @work(group="change")
    async def delete(self, conversation_id: str) -> None:
        try:
            await self.api.delete(conversation_id)
        except ApiError as exc:
            self._report(exc)
            return
        if conversation_id == self.current_id:
            await self.action_new_chat()
        self.sidebar.conversations.pop(conversation_id, None)
        self.sidebar.reload()
        self.notify("Deleted.")

    def action_copy_last(self) -> None:
        """Copy the last answer to the terminal's clipboard (OSC 52)."""
        last = self.chat.last("assistant")
        if last is None:
            return
        self.app.copy_to_clipboard(last.text)
        self.notify("Copied the last answer.")

    @work(group="export")
    async def action_export(self) -> None:
        """Save the open conversation as Markdown in the current directory."""
        if self.current is None:
            return
        try:
            text = await self.api.export_markdown(self.current.id)
        except ApiError as exc:
            self._report(exc)
            return
        stem = re.sub(r"[^\w-]+", "-", self.current.label).strip("-")[:50] or "chat"
        path = Path.cwd() / f"{stem}.md"
        path.write_text(text, encoding="utf-8")
        self.notify(f"Saved {path}")
