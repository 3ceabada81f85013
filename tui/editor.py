"""Writing a long message in the user's own editor ($VISUAL, else $EDITOR, else vi)."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

__all__ = ["EditorFailed", "edit_text", "editor_command"]


class EditorFailed(Exception):
    """The editor could not be started, or it exited with an error (the text is unchanged)."""


def editor_command() -> list[str]:
    """The editor to run, as an argv (`$EDITOR` may carry options: `code --wait`)."""
    return shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")


def edit_text(text: str) -> str:
    """Open `text` in the editor on a temp file; what it holds once the editor exits.

    Blocks until the editor exits: call it with the app suspended (the editor has the terminal).
    """
    command = editor_command() or ["vi"]
    with tempfile.TemporaryDirectory(prefix="chatapp-") as folder:
        path = Path(folder) / "message.md"
        path.write_text(text, encoding="utf-8")
        try:
            result = subprocess.run([*command, str(path)], check=False)
        except OSError as exc:
            raise EditorFailed(f"Could not start {command[0]!r} ({exc}): set $EDITOR.") from None
        if result.returncode != 0:
            raise EditorFailed(f"{command[0]} exited with {result.returncode}; text unchanged.")
        edited = path.read_text(encoding="utf-8")
    return edited[:-1] if edited.endswith("\n") and not text.endswith("\n") else edited
