"""F1: every key binding of the app, from the BINDINGS themselves so it never drifts.

Each row also shows the binding's action id: the name to remap it by in tui.toml's [bindings].
"""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tui.keymap import keys_of
from tui.screens.chat import ChatScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.main import MainScreen
from tui.screens.model_picker import ModelPickerScreen
from tui.screens.prompt import PromptScreen
from tui.screens.system_prompt import SystemPromptScreen
from tui.widgets.composer import Composer
from tui.widgets.sidebar import Sidebar

__all__ = ["HelpScreen", "binding_sections"]

NOTES = (
    'Remap a key in tui.toml (F1\'s last column is the id): [bindings] pin = "ctrl+g". '
    "Replies keep generating on the server while you look at another conversation or quit; "
    "coming back picks them up. Copy uses the terminal's clipboard (OSC 52, over SSH too)."
)


# Keys of the composer that are not bindings (TextArea's own handling), shown all the same.
EXTRAS = {"Composer": (("⏎", "Send"), ("↑, ↓", "Earlier prompts (when the box is empty)"))}


def binding_sections(app_bindings: list[BindingType]) -> list[tuple[str, list[Binding]]]:
    """Every binding of the client with an id, grouped by where it works."""
    groups: list[tuple[str, list[BindingType]]] = [
        ("Anywhere", [*app_bindings, *ChatScreen.BINDINGS, *MainScreen.BINDINGS]),
        ("Conversation list", list(Sidebar.BINDINGS)),
        ("Composer", list(Composer.BINDINGS)),
        (
            "Dialogs",
            [
                *SystemPromptScreen.BINDINGS,
                *PromptScreen.BINDINGS,
                *ModelPickerScreen.BINDINGS,
                *ConfirmScreen.BINDINGS,
                *HelpScreen.BINDINGS,
            ],
        ),
    ]
    sections = []
    for title, bindings in groups:
        seen: set[str] = set()
        unique = []
        for binding in bindings:
            if isinstance(binding, Binding) and binding.id and binding.id not in seen:
                seen.add(binding.id)
                unique.append(binding)
        sections.append((title, unique))
    return sections


class HelpScreen(ModalScreen[None]):
    """The bindings, grouped by where they work, with the ids to remap them by."""

    BINDINGS = [
        Binding("escape,f1,q", "dismiss", "Close", tooltip="Close the help", id="help-close")
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help"):
            yield Label("chatapp keys", classes="dialog-title")
            with VerticalScroll():
                for title, bindings in binding_sections(list(type(self.app).BINDINGS)):
                    yield Static(self.table(title, bindings))
                yield Static(NOTES, classes="dialog-hint", markup=False)
            yield Label("Esc or F1 to close", classes="dialog-hint")

    def table(self, title: str, bindings: list[Binding]) -> Table:
        """One section: keys (as remapped), what they do, and the id to remap them by."""
        table = Table(
            title=f" {title} ",
            title_justify="left",
            title_style="reverse",
            box=None,
            show_header=False,
            padding=(0, 1, 0, 0),
            expand=True,
        )
        table.add_column(style="bold", no_wrap=True, width=12)
        table.add_column(ratio=1)
        table.add_column(style="dim", no_wrap=True, width=15)
        for keys, words in EXTRAS.get(title, ()):
            table.add_row(keys, words, "")
        for binding in bindings:
            table.add_row(
                keys_of(self.app, binding), binding.tooltip or binding.description, binding.id
            )
        return table
