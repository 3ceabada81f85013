"""The conversation list (pinned first, then newest) with search-as-you-type over the server."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input, Label, ListItem, ListView

from tui.api import ApiError, ChatApi
from tui.data import Conversation, SearchHit

__all__ = ["ConversationItem", "Sidebar"]

SEARCH_DELAY = 0.25  # seconds of quiet typing before a search goes out
MARK_OPEN, MARK_CLOSE = "<mark>", "</mark>"


def marked(snippet: str) -> Text:
    """A search snippet with the server's <mark>ed words in bold reverse."""
    text = Text(no_wrap=True, overflow="ellipsis")
    rest = snippet.replace("\n", " ")
    while MARK_OPEN in rest:
        before, _, rest = rest.partition(MARK_OPEN)
        word, _, rest = rest.partition(MARK_CLOSE)
        text.append(before)
        text.append(word, style="bold reverse")
    text.append(rest)
    return text


class ConversationItem(ListItem):
    """One conversation (or search hit) in the list."""

    def __init__(self, conversation_id: str, title: Text, detail: Text | None = None) -> None:
        labels = [Label(title, classes="title")]
        if detail is not None:
            labels.append(Label(detail, classes="snippet"))
        super().__init__(*labels)
        self.conversation_id = conversation_id


class Sidebar(Vertical):
    """Lists the caller's conversations; typing in the search box lists matches instead."""

    BINDINGS = [
        Binding(
            "delete",
            "screen.delete_conversation",
            "Delete",
            show=False,
            tooltip="Delete the highlighted conversation (asks first)",
        ),
        Binding(
            "a",
            "screen.archive_conversation",
            "Archive",
            show=False,
            tooltip="Archive the highlighted conversation (out of the list)",
        ),
        Binding("slash", "focus_search", "Search", show=False, tooltip="Search conversations"),
    ]

    @dataclass
    class Opened(Message):
        """A conversation was chosen (Enter or click)."""

        conversation_id: str

    @dataclass
    class Failed(Message):
        """The list could not be had (server down, key refused)."""

        error: ApiError

    @dataclass
    class Listed(Message):
        """The list is fresh from the server."""

        conversations: list[Conversation]

    def __init__(self, api: ChatApi, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.api = api
        self.conversations: dict[str, Conversation] = {}
        self.current: str | None = None
        self._cursor: str | None = None
        self._search_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="Search (ctrl+f)", id="search")
        yield ListView(id="conversations")

    @property
    def list_view(self) -> ListView:
        return self.query_one("#conversations", ListView)

    @property
    def highlighted(self) -> str | None:
        item = self.list_view.highlighted_child
        return item.conversation_id if isinstance(item, ConversationItem) else None

    @property
    def searching(self) -> bool:
        return bool(self.query_one("#search", Input).value.strip())

    def action_focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    @work(exclusive=True, group="sidebar")
    async def reload(self, select: str | None = None) -> None:
        """List the newest conversations again (pinned first); keep `select` highlighted."""
        try:
            page = await self.api.conversations(limit=50)
        except ApiError as exc:
            self.post_message(self.Failed(exc))
            return
        self.conversations = {c.id: c for c in page.items}
        self._cursor = page.cursor
        if not self.searching:
            await self._show_listing(select or self.current)
        self.post_message(self.Listed(page.items))

    @work(exclusive=True, group="sidebar-more")
    async def load_more(self) -> None:
        """The next page of older conversations, at the end of the list."""
        if self._cursor is None or self.searching:
            return
        try:
            page = await self.api.conversations(cursor=self._cursor, limit=50)
        except ApiError as exc:
            self.notify(exc.message, severity="error")
            return
        self._cursor = page.cursor
        fresh = [c for c in page.items if c.id not in self.conversations]
        self.conversations.update({c.id: c for c in fresh})
        await self.list_view.extend([self._item(c) for c in fresh])

    async def _show_listing(self, select: str | None) -> None:
        ordered = sorted(self.conversations.values(), key=lambda c: not c.pinned)  # stable
        await self._fill([self._item(c) for c in ordered], select)

    def _item(self, conversation: Conversation) -> ConversationItem:
        title = Text(no_wrap=True, overflow="ellipsis")
        if conversation.pinned:
            title.append("★ ", style="bold")
        title.append(conversation.label)
        return ConversationItem(conversation.id, title)

    async def _fill(self, items: list[ConversationItem], select: str | None) -> None:
        view = self.list_view
        await view.clear()
        await view.extend(items)
        ids = [item.conversation_id for item in items]
        view.index = ids.index(select) if select in ids else (0 if ids else None)

    @on(Input.Changed, "#search")
    def search_changed(self, event: Input.Changed) -> None:
        """Search once typing pauses; an empty box lists the conversations again."""
        if self._search_timer is not None:
            self._search_timer.stop()
        query = event.value.strip()
        self._search_timer = self.set_timer(SEARCH_DELAY, lambda: self.search(query))

    @on(Input.Submitted, "#search")
    def search_submitted(self) -> None:
        """Enter in the search box moves to the results."""
        self.list_view.focus()

    @work(exclusive=True, group="sidebar")
    async def search(self, query: str) -> None:
        """Show the conversations that match `query` (its last word as a prefix)."""
        if not query or not any(ch.isalnum() for ch in query):
            await self._show_listing(self.current)
            return
        try:
            hits = await self.api.search(query)
        except ApiError as exc:
            self.notify(exc.message, severity="error")
            return
        await self._fill(self._hit_items(hits), None)

    def _hit_items(self, hits: list[SearchHit]) -> list[ConversationItem]:
        """One item per conversation, at its best hit."""
        seen: set[str] = set()
        items = []
        for hit in hits:
            if hit.conversation_id in seen:
                continue
            seen.add(hit.conversation_id)
            title = Text(hit.title or "New chat", no_wrap=True, overflow="ellipsis")
            items.append(ConversationItem(hit.conversation_id, title, marked(hit.snippet)))
        return items

    @on(ListView.Selected, "#conversations")
    def opened(self, event: ListView.Selected) -> None:
        """Enter or a click on an item opens that conversation."""
        if isinstance(event.item, ConversationItem):
            self.post_message(self.Opened(event.item.conversation_id))

    @on(ListView.Highlighted, "#conversations")
    def highlighted_changed(self, event: ListView.Highlighted) -> None:
        """Reaching the end of the list fetches the next page."""
        view = self.list_view
        if view.index is not None and view.index >= len(view.children) - 1:
            self.load_more()
