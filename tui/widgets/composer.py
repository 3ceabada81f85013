"""Where questions are written: multi-line, Enter sends, up/down recall earlier prompts, and
Ctrl+E hands the text to $EDITOR for a long one."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.app import SuspendNotSupported
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

from tui.editor import EditorFailed, edit_text

__all__ = ["Composer"]


class Composer(TextArea):
    """A TextArea where Enter sends and Ctrl+J (or Shift+Enter) starts a new line."""

    BINDINGS = [
        Binding(
            "ctrl+j,shift+enter",
            "newline",
            "Newline",
            show=False,
            tooltip="Insert a new line (Ctrl+J where the terminal swallows Shift+Enter)",
            id="newline",
        ),
        Binding(
            "ctrl+e",
            "open_editor",
            "Editor",
            show=False,
            tooltip="Write the message in $VISUAL / $EDITOR (default vi)",
            id="editor",
        ),
    ]

    @dataclass
    class Submitted(Message):
        """Enter was pressed with text in the box."""

        composer: Composer
        text: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, tab_behavior="focus", compact=True)
        self.prompts: list[str] = []
        self._recalled: int | None = None  # index into history while browsing it

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.action_submit()
            return
        await super()._on_key(event)

    def action_submit(self) -> None:
        text = self.text.strip()
        if not text:
            return
        if not self.prompts or self.prompts[-1] != text:
            self.prompts.append(text)
        self._recalled = None
        self.clear()
        self.post_message(self.Submitted(self, text))

    def action_newline(self) -> None:
        self.insert("\n")

    def action_open_editor(self) -> None:
        """Ctrl+E: the app steps aside while the editor runs on the text; its result comes back."""
        try:
            with self.app.suspend():
                text = edit_text(self.text)
        except SuspendNotSupported:
            self.notify("This terminal cannot hand over to an editor.", severity="error")
            return
        except EditorFailed as exc:
            self.notify(str(exc), severity="error")
            return
        self.set_text(text)
        self.focus()

    def restore(self, text: str) -> None:
        """Put back a question that could not be sent, so nothing typed is lost."""
        if not self.text.strip():
            self.set_text(text)

    def set_text(self, text: str) -> None:
        """Replace the text, with the cursor at its end."""
        self.load_text(text)
        self.move_cursor(self.document.end)

    def action_cursor_up(self, select: bool = False) -> None:
        """On an empty box (or while browsing), go back through earlier prompts."""
        if not select and self.prompts and (not self.text or self._recalled is not None):
            if self.cursor_location[0] == 0:
                index = len(self.prompts) if self._recalled is None else self._recalled
                self._recall(max(index - 1, 0))
                return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        if not select and self._recalled is not None:
            if self.cursor_location[0] == self.document.line_count - 1:
                if self._recalled + 1 < len(self.prompts):
                    self._recall(self._recalled + 1)
                else:
                    self._recalled = None
                    self.clear()
                return
        super().action_cursor_down(select)

    def _recall(self, index: int) -> None:
        self._recalled = index
        self.set_text(self.prompts[index])
