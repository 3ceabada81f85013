"""The conversation list (pinned first, then newest) with search-as-you-type over the server.

An OptionList, not a ListView of widgets: it draws only the lines in view, so a list of
thousands (paged in 50 at a time as it scrolls) stays as quick as one of ten.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from tui.api import ApiError, ChatApi
from tui.data import Conversation, SearchHit

__all__ = ["Sidebar", "marked"]

PAGE = 50  # conversations fetched at a time
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


class Sidebar(Vertical):
    """Lists the caller's conversations; typing in the search box lists matches instead."""

    BINDINGS = [
        Binding(
            "delete",
            "screen.delete_conversation",
            "Delete",
            show=False,
            tooltip="Delete the highlighted conversation (asks first)",
            id="delete",
        ),
        Binding(
            "a",
            "screen.archive_conversation",
            "Archive",
            show=False,
            tooltip="Archive the highlighted conversation (in the archived list: unarchive)",
            id="archive",
        ),
        Binding(
            "slash",
            "focus_search",
            "Search",
            show=False,
            tooltip="Search conversations",
            id="list-search",
        ),
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
        self.archived = False  # listing the archived conversations instead of the others
        self._cursor: str | None = None  # the next page's; None at the end
        self._listing = 0  # counts refills of the list, so a late page is not misplaced
        self._loading_more = False
        self._search_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="Search (ctrl+f)", id="search")
        yield Label("Archived · F8: back", id="list-title")
        yield OptionList(id="conversations", compact=True)

    def on_mount(self) -> None:
        self.watch(self.options, "scroll_y", self._near_end, init=False)

    @property
    def options(self) -> OptionList:
        return self.query_one("#conversations", OptionList)

    @property
    def listed(self) -> list[str]:
        """The ids of the conversations in the list, top to bottom."""
        options = self.options
        return [options.get_option_at_index(i).id or "" for i in range(options.option_count)]

    @property
    def highlighted(self) -> str | None:
        option = self.options.highlighted_option
        return option.id if option is not None else None

    @property
    def searching(self) -> bool:
        return bool(self.query_one("#search", Input).value.strip())

    def action_focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    def show_archived(self, archived: bool) -> None:
        """List the archived conversations (True) or the others (False)."""
        self.archived = archived
        self.set_class(archived, "-archived")
        self.options.highlighted = None
        self.reload()

    def _near_end(self, y: float) -> None:
        """Scrolling near the end of the list fetches the next page before it is reached."""
        view = self.options
        if self._cursor is not None and view.max_scroll_y - y <= view.size.height:
            self.load_more()

    @work(exclusive=True, group="sidebar")
    async def reload(self, select: str | None = None) -> None:
        """List the newest conversations again (pinned first); keep `select` highlighted."""
        try:
            page = await self.api.conversations(limit=PAGE, archived=self.archived)
        except ApiError as exc:
            self.post_message(self.Failed(exc))
            return
        self._listing += 1  # a page of the listing before this one no longer fits on it
        newest = {c.id: c for c in page.items}
        if len(self.conversations) <= PAGE:
            self.conversations, self._cursor = newest, page.cursor
        else:
            # Older pages were loaded: keep them below the fresh first page (what changed since
            # is in that page now), and go on paging from where they end.
            older = {k: c for k, c in self.conversations.items() if k not in newest}
            self.conversations = {**newest, **older}
        if not self.searching:
            self._show_listing(select or self.current)
        self.post_message(self.Listed(page.items))

    def load_more(self) -> None:
        """Fetch the next page of older conversations, unless one is on its way."""
        if self._cursor is not None and not self.searching and not self._loading_more:
            self._loading_more = True
            self._load_more(self._cursor, self._listing)

    @work(group="sidebar-more")
    async def _load_more(self, cursor: str, listing: int) -> None:
        """Put the page after `cursor` at the end of the list."""
        try:
            page = await self.api.conversations(cursor=cursor, limit=PAGE, archived=self.archived)
            if listing != self._listing or self.searching:
                return  # the list was refilled (or searched) meanwhile
            self._cursor = page.cursor
            fresh = [c for c in page.items if c.id not in self.conversations]
            self.conversations.update({c.id: c for c in fresh})
            self.options.add_options([self._item(c) for c in fresh])
        except ApiError as exc:
            self.notify(exc.message, severity="error")
        finally:
            self._loading_more = False

    def _show_listing(self, select: str | None) -> None:
        ordered = sorted(self.conversations.values(), key=lambda c: not c.pinned)  # stable
        self._fill([self._item(c) for c in ordered], select)

    def _item(self, conversation: Conversation) -> Option:
        title = Text(no_wrap=True, overflow="ellipsis")
        if conversation.pinned:
            title.append("★ ", style="bold")
        title.append(conversation.label)
        return Option(title, id=conversation.id)

    def _fill(self, items: list[Option], select: str | None) -> None:
        options = self.options
        options.clear_options()
        options.add_options(items)
        ids = [item.id for item in items]
        options.highlighted = ids.index(select) if select in ids else (0 if ids else None)

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
        self.options.focus()

    @work(exclusive=True, group="sidebar")
    async def search(self, query: str) -> None:
        """Show the conversations that match `query` (its last word as a prefix)."""
        if not query or not any(ch.isalnum() for ch in query):
            self._show_listing(self.current)
            return
        try:
            hits = await self.api.search(query)
        except ApiError as exc:
            self.notify(exc.message, severity="error")
            return
        self._fill(self._hit_items(hits), None)

    def _hit_items(self, hits: list[SearchHit]) -> list[Option]:
        """One item per conversation, at its best hit: its title over the matching words."""
        seen: set[str] = set()
        items = []
        for hit in hits:
            if hit.conversation_id in seen:
                continue
            seen.add(hit.conversation_id)
            text = Text(hit.title or "New chat", no_wrap=True, overflow="ellipsis")
            snippet = marked(hit.snippet)
            snippet.stylize("dim")
            text.append("\n").append(snippet)
            items.append(Option(text, id=hit.conversation_id))
        return items

    @on(OptionList.OptionSelected, "#conversations")
    def opened(self, event: OptionList.OptionSelected) -> None:
        """Enter or a click on an item opens that conversation."""
        if event.option_id:
            self.post_message(self.Opened(event.option_id))

    @on(OptionList.OptionHighlighted, "#conversations")
    def highlighted_changed(self, event: OptionList.OptionHighlighted) -> None:
        """Reaching the end of the list fetches the next page."""
        if event.option_index >= self.options.option_count - 1:
            self.load_more()
