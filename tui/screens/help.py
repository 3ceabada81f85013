"""F1: every key binding of the app, from the BINDINGS themselves so it never drifts."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tui.screens.main import MainScreen
from tui.widgets.composer import Composer
from tui.widgets.sidebar import Sidebar

__all__ = ["HelpScreen"]

NOTES = (
    "Replies keep generating on the server while you look at another conversation or quit; "
    "coming back picks them up. Copy uses the terminal's clipboard (OSC 52)."
)


class HelpScreen(ModalScreen[None]):
    """The bindings, grouped by where they work."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close", tooltip="Close the help")]

    def sections(self) -> list[tuple[str, list[BindingType]]]:
        return [
            ("Anywhere", [*type(self.app).BINDINGS, *MainScreen.BINDINGS]),
            ("Conversation list", list(Sidebar.BINDINGS)),
            (
                "Composer",
                [
                    *Composer.BINDINGS,
                    Binding("enter", "", "Send"),
                    Binding("up,down", "", "Earlier prompts (when empty)"),
                ],
            ),
        ]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for title, bindings in self.sections():
            table.add_row(f"[reverse] {title} [/]", "")
            for binding in bindings:
                if not isinstance(binding, Binding) or not binding.description:
                    continue
                keys = ", ".join(
                    self.app.get_key_display(Binding(key, binding.action))
                    for key in binding.key.split(",")
                )
                table.add_row(keys, binding.tooltip or binding.description)
            table.add_row("", "")
        with Vertical(classes="dialog help"):
            yield Label("chatapp keys", classes="dialog-title")
            with VerticalScroll():
                yield Static(table)
                yield Static(NOTES, classes="dialog-hint", markup=False)
            yield Label("Esc or F1 to close", classes="dialog-hint")
