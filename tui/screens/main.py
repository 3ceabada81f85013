"""The chat screen: conversations on the left, the open one with its composer on the right.

ChatScreen (screens/chat.py) holds everything about replies; this adds the conversation list
and what can be done to a conversation: open, new, rename, pin, archive, delete, model, system
prompt, export, copy, and the status line's server, quota and context window.
"""

from __future__ import annotations

import re
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer

from tui.api import ApiError, ChatApi, ServerUnreachable
from tui.code_blocks import code_blocks
from tui.data import Conversation
from tui.messages import ReplyDone
from tui.screens.chat import RETRY_OFFLINE_SECONDS, ChatScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.model_picker import ModelPickerScreen
from tui.screens.prompt import PromptScreen
from tui.screens.system_prompt import SystemPromptScreen
from tui.widgets.chat_view import ChatView
from tui.widgets.composer import Composer
from tui.widgets.sidebar import Sidebar
from tui.widgets.status_bar import StatusBar, quota_text

__all__ = ["MainScreen"]

TITLE_DELAY = 4.0  # seconds: the server titles a new conversation in the background


class MainScreen(ChatScreen):
    """Sidebar, chat, composer, status line and key hints."""

    BINDINGS = [
        Binding("ctrl+n", "new_chat", "New", tooltip="Start a new conversation", id="new"),
        Binding("ctrl+o", "pick_model", "Model", tooltip="Choose the model", id="model"),
        Binding(
            "ctrl+f", "search", "Search", show=False, tooltip="Search conversations", id="search"
        ),
        Binding(
            "f2", "rename", "Rename", show=False, tooltip="Rename the conversation", id="rename"
        ),
        Binding(
            "ctrl+p",
            "pin",
            "Pin",
            show=False,
            tooltip="Pin or unpin (pinned stay on top)",
            id="pin",
        ),
        Binding(
            "f8",
            "toggle_archived",
            "Archived",
            show=False,
            tooltip="Show the archived conversations (again: the others)",
            id="archived",
        ),
        Binding(
            "ctrl+t",
            "system_prompt",
            "System prompt",
            show=False,
            tooltip="Edit this conversation's system prompt",
            id="system-prompt",
        ),
        Binding(
            "ctrl+s",
            "export",
            "Export",
            show=False,
            tooltip="Save the conversation as Markdown",
            id="export",
        ),
        Binding(
            "ctrl+l",
            "copy_last",
            "Copy",
            show=False,
            tooltip="Copy the last answer (OSC 52)",
            id="copy",
        ),
        Binding(
            "alt+c",
            "copy_code",
            "Copy code",
            show=False,
            tooltip="Copy the newest code block shown (OSC 52)",
            id="copy-code",
        ),
    ]

    def __init__(
        self,
        api: ChatApi,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        export_dir: Path | None = None,
    ) -> None:
        super().__init__(api, model=model, max_tokens=max_tokens)
        self.export_dir = export_dir

    def compose(self) -> ComposeResult:
        with Horizontal(id="body"):
            yield Sidebar(self.api, id="sidebar")
            with Vertical(id="main"):
                yield ChatView(self.api, self.replies, id="chat")
                yield Composer(id="composer")
        yield StatusBar(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        self.status.server = self.api.url
        await self.chat.show(None)
        self.composer.focus()
        self.sidebar.reload()
        self.load_defaults()

    @work(exclusive=True, group="defaults")
    async def load_defaults(self) -> None:
        """The models (the default is the server's first, and their windows) and the quota."""
        try:
            models = await self.api.models()
        except ApiError:
            return  # the sidebar reports the server being down
        self.windows = {m.id: m.context_window for m in models if m.context_window}
        if self.model is None:
            self.model = models[0].id if models else None
        self.show_model()
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

    @on(ReplyDone)
    def list_after_reply(self, event: ReplyDone) -> None:
        """A reply is stored: the list's order and the new title, and the quota left."""
        self.sidebar.reload()
        if self.current is not None and not self.current.title:
            self.set_timer(TITLE_DELAY, self.sidebar.reload)
        self.refresh_usage()

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
        self.show_model()
        self.status.tokens = 0
        await self.chat.show(conversation_id)

    async def action_new_chat(self) -> None:
        self.current, self.editing = None, None
        self.sidebar.current = None
        self.sidebar.options.highlighted = None
        self.status.tokens = 0
        self.show_model()
        await self.chat.show(None)
        self.composer.focus()

    # -- the list and its conversations ------------------------------------------------------

    def action_search(self) -> None:
        self.sidebar.action_focus_search()

    def action_toggle_archived(self) -> None:
        """F8: list the archived conversations instead (`a` on one brings it back)."""
        self.sidebar.show_archived(not self.sidebar.archived)

    def _target(self) -> str | None:
        """What list actions act on: the highlighted item when the list has focus, else the
        open conversation."""
        if self.focused is self.sidebar.options and self.sidebar.highlighted:
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
        """Archive the target (out of the list), or bring an archived one back."""
        target = self._target()
        if target is None:
            return
        conversation = self.sidebar.conversations.get(target)
        archived = conversation.archived if conversation else self.sidebar.archived
        self.change(target, archived=not archived)
        self.notify("Unarchived." if archived else "Archived: F8 lists the archived ones.")

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
        self.app.push_screen(SystemPromptScreen(prompt), save)

    def action_pick_model(self) -> None:
        def picked(model: str | None) -> None:
            if model is None:
                return
            self.model = model
            self.status.model = model
            self.status.context = self.windows.get(model, 0)
            if self.current is not None:
                self.change(self.current.id, model=model)

        self.app.push_screen(ModelPickerScreen(self.api, self.current_model), picked)

    @work(group="change")
    async def change(self, conversation_id: str, **fields: object) -> None:
        """PATCH a conversation and show the result in the list."""
        try:
            changed = await self.api.update(conversation_id, **fields)
        except ApiError as exc:
            self.report(exc)
            return
        if changed.id == self.current_id:
            self.current = changed
            self.show_model()
            if changed.archived:
                await self.action_new_chat()
        if "archived" in fields:
            self.sidebar.conversations.pop(conversation_id, None)  # it left this list
        self.sidebar.reload()

    @work(group="change")
    async def create_with(self, **fields: object) -> None:
        """A new conversation with these fields (a system prompt set before the first send)."""
        try:
            created = await self.api.create(model=self.model, **fields)
        except ApiError as exc:
            self.report(exc)
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
            self.report(exc)
            return
        if conversation_id == self.current_id:
            await self.action_new_chat()
        self.sidebar.conversations.pop(conversation_id, None)
        self.sidebar.reload()
        self.notify("Deleted.")

    def action_export(self) -> None:
        """Ctrl+S: ask where (the export folder, else here), then save as Markdown."""
        if self.current is None:
            self.notify("Open a conversation to export it.")
            return
        conversation = self.current
        stem = re.sub(r"[^\w-]+", "-", conversation.label).strip("-")[:50] or "chat"
        suggested = (self.export_dir or Path.cwd()) / f"{stem}.md"

        def chosen(value: str | None) -> None:
            if value and value.strip():
                self.export(conversation.id, Path(value.strip()).expanduser())

        self.app.push_screen(PromptScreen("Export as Markdown to", str(suggested)), chosen)

    @work(group="export")
    async def export(self, conversation_id: str, path: Path) -> None:
        """Write the server's Markdown export of the conversation to `path`."""
        try:
            text = await self.api.export_markdown(conversation_id)
        except ApiError as exc:
            self.report(exc)
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.notify(f"Could not write {path}: {exc}", severity="error")
            return
        self.notify(f"Saved {path}")

    def action_copy_last(self) -> None:
        """Copy the last answer to the terminal's clipboard (OSC 52: works over SSH too)."""
        last = self.chat.last("assistant")
        if last is None:
            self.notify("There is no answer to copy yet.")
            return
        self.app.copy_to_clipboard(last.text)
        self.notify("Copied the last answer.")

    def action_copy_code(self) -> None:
        """Copy the last code block of the newest answer that has one (OSC 52)."""
        for view in reversed(self.chat.views):
            if view.message.role != "assistant":
                continue
            blocks = code_blocks(view.text)
            if blocks:
                self.app.copy_to_clipboard(blocks[-1])
                lines = blocks[-1].count("\n") or 1
                self.notify(f"Copied a code block ({lines} line{'s' if lines > 1 else ''}).")
                return
        self.notify("There is no code block in the answers shown.")
