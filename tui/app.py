"""The chatapp Textual app: styles, global keys, settings, and the chat screen as its default."""

from __future__ import annotations

import gc
from pathlib import Path

from textual.app import App, InvalidThemeError
from textual.binding import Binding
from textual.theme import Theme

from tui.api import ChatApi
from tui.screens.help import HelpScreen, binding_sections
from tui.screens.main import MainScreen
from tui.settings import Settings, load_settings, save_theme, settings_path

__all__ = ["ChatApp"]


class ChatApp(App[None]):
    """`chatapp chat`: a client of one chatapp server, over HTTP only."""

    CSS_PATH = "app.tcss"
    TITLE = "chatapp"
    ENABLE_COMMAND_PALETTE = False  # its Ctrl+P is the pin key here; F9 picks a theme
    PAUSE_GC_ON_SCROLL = True  # a full collection mid-scroll is a visible stutter
    BINDINGS = [
        Binding("f1", "help", "Help", tooltip="Show every key (and its id)", id="help"),
        Binding(
            "f9",
            "change_theme",
            "Theme",
            show=False,
            tooltip="Pick a theme, light or dark (remembered in tui.toml)",
            id="theme",
        ),
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
        self,
        api: ChatApi,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        settings: Path | None = None,
    ) -> None:
        super().__init__()
        self.api = api
        self.model = model
        self.max_tokens = max_tokens
        self.settings_file = settings or settings_path()
        known = frozenset(
            b.id for _, group in binding_sections(self.BINDINGS) for b in group if b.id
        )
        self.settings, self._warnings = load_settings(self.settings_file, known)
        self.keymap: dict[str, str] = dict(self.settings.bindings)
        self.set_keymap(self.keymap)
        self._clashes: set[str] = set()

    def get_default_screen(self) -> MainScreen:
        return MainScreen(
            self.api,
            model=self.model,
            max_tokens=self.max_tokens,
            export_dir=self.settings.export_dir,
        )

    def on_mount(self) -> None:
        if self.settings.theme:
            try:
                self.theme = self.settings.theme
            except InvalidThemeError:
                self._warnings.append(
                    f"{self.settings_file}: theme {self.settings.theme!r} is not one of "
                    f"{', '.join(sorted(self.available_themes))}."
                )
        for warning in self._warnings:
            self.notify(warning, title="tui.toml", severity="warning", timeout=10)
        self.theme_changed_signal.subscribe(self, self.remember_theme)
        # What exists once the screen is up (modules, styles, widgets) lives as long as the app:
        # kept out of the collector, its full passes drop from ~80 ms to ~40 ms while streaming.
        self.call_after_refresh(gc.freeze)

    def remember_theme(self, theme: Theme) -> None:
        """Keep the theme picked (F9) in tui.toml for the next start."""
        if theme.name == self.settings.theme:
            return
        try:
            save_theme(self.settings_file, theme.name)
        except OSError as exc:
            self.notify(f"The theme was not saved: {exc}", severity="warning")
            return
        self.settings = Settings(self.settings.bindings, theme.name, self.settings.export_dir)

    def handle_bindings_clash(self, clashed_bindings: set[Binding], node: object) -> None:
        """A key remapped onto another action's key: say so once (the remapped one wins)."""
        for binding in clashed_bindings:
            if binding.id and binding.id not in self._clashes:
                self._clashes.add(binding.id)
                self.notify(
                    f"tui.toml: {binding.key} was {binding.id}'s key; the remapped action "
                    "has it now.",
                    severity="warning",
                )

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def on_unmount(self) -> None:
        await self.api.aclose()
