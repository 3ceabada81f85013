"""Ctrl+O: choose the model for this conversation (and new ones) from /v1/models."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from tui.api import ApiError, ChatApi

__all__ = ["ModelPickerScreen"]


class ModelPickerScreen(ModalScreen[str | None]):
    """Enter picks the highlighted model; Esc keeps the current one."""

    BINDINGS = [
        Binding(
            "escape",
            "dismiss_none",
            "Cancel",
            tooltip="Close the dialog without changing anything",
            id="dialog-cancel",
        )
    ]

    def __init__(self, api: ChatApi, current: str | None) -> None:
        super().__init__()
        self.api = api
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Model", classes="dialog-title")
            yield OptionList(id="models")
            yield Label("Enter to choose, Esc to cancel", classes="dialog-hint")

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="models")
    async def load(self) -> None:
        """Ask the server which models it serves."""
        options = self.query_one("#models", OptionList)
        try:
            models = await self.api.models()
        except ApiError as exc:
            options.add_option(Option(exc.message, disabled=True))
            return
        for model in models:
            context = f"{model.context_window:,} tokens context" if model.context_window else ""
            state = "" if model.ready else " (starting)"
            mark = "● " if model.id == self.current else "  "
            options.add_option(Option(f"{mark}{model.id}  {context}{state}", id=model.id))
        ids = [m.id for m in models]
        options.highlighted = ids.index(self.current) if self.current in ids else 0
        options.focus()

    @on(OptionList.OptionSelected, "#models")
    def chosen(self, event: OptionList.OptionSelected) -> None:
        """Enter or a click: that model."""
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
