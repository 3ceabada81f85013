"""Ctrl+T: the conversation's system prompt, in a multi-line editor."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, TextArea

from tui.keymap import keys_of

__all__ = ["SystemPromptScreen"]

SAVE = Binding("ctrl+s", "save", "Save", tooltip="Save the system prompt", id="dialog-save")


class SystemPromptScreen(ModalScreen[str | None]):
    """Ctrl+S gives the text (empty: no system prompt), Esc gives None; Enter is a new line."""

    BINDINGS = [
        SAVE,
        Binding(
            "escape",
            "cancel",
            "Cancel",
            tooltip="Close the dialog without changing anything",
            id="dialog-cancel",
        ),
    ]

    def __init__(self, prompt: str) -> None:
        super().__init__()
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("System prompt for this conversation", classes="dialog-title")
            editor = TextArea(self.prompt, id="system-prompt", soft_wrap=True, compact=True)
            yield editor
            save = keys_of(self.app, SAVE)
            hint = f"Enter: new line · {save}: save (empty: none) · esc: cancel"
            yield Label(hint, classes="dialog-hint")

    def on_mount(self) -> None:
        editor = self.query_one(TextArea)
        editor.move_cursor(editor.document.end)
        editor.focus()

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)
