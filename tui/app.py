"""The chatapp Textual app: styles, global keys, and the chat screen as its default screen."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding

from tui.api import ChatApi
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen

__all__ = ["ChatApp"]


class ChatApp(App[None]):
    """`chatapp chat`: a client of one chatapp server, over HTTP only."""

    CSS_PATH = "app.tcss"
    TITLE = "chatapp"
    ENABLE_COMMAND_PALETTE = False  # its Ctrl+P is the pin key here
    BINDINGS = [
        Binding("f1", "help", "Help", tooltip="Show every key", id="help"),
        Binding(
            "ctrl+q",
            "quit",
            "Quit",
            tooltip="Quit (the server keeps what a reply in progress has)",
            priority=True,
            id="quit",
        ),
    ]

    def __init__(
        self, api: ChatApi, *, model: str | None = None, max_tokens: int | None = None
    ) -> None:
        super().__init__()
        self.api = api
        self.model = model
        self.max_tokens = max_tokens

    def get_default_screen(self) -> MainScreen:
        return MainScreen(self.api, model=self.model, max_tokens=self.max_tokens)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def on_unmount(self) -> None:
        await self.api.aclose()
