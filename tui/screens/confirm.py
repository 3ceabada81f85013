"""A yes/no question before something that cannot be undone from the client."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

__all__ = ["ConfirmScreen"]


class ConfirmScreen(ModalScreen[bool]):
    """y or Enter: True; n or Esc: False."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes", tooltip="Yes: go ahead", id="confirm-yes"),
        Binding("n,escape", "answer(False)", "No", tooltip="No: leave it", id="confirm-no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title", markup=False)
            yield Label("y / Enter: yes    n / Esc: no", classes="dialog-hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
