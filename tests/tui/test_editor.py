"""Ctrl+E: the composer's text goes to $EDITOR and what the editor saved comes back."""

from __future__ import annotations

import contextlib
import stat
from pathlib import Path

import pytest

from chatapp.engines.supervisor import free_port
from tests.tui.conftest import main_screen
from tui.api import ChatApi, Endpoint
from tui.app import ChatApp
from tui.editor import EditorFailed, edit_text


def script(folder: Path, body: str) -> Path:
    """An 'editor': a shell script run on the file (its last argument, in `$f`)."""
    path = folder / "fake-editor"
    path.write_text(f"#!/bin/sh\nfor f; do :; done\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_editor_edits_the_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    editor = script(tmp_path, 'printf "\\nsecond line\\n" >> "$f"')
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", str(editor))
    assert edit_text("first line") == "first line\nsecond line"  # the editor's last \n dropped
    monkeypatch.setenv("VISUAL", f"{editor} --wait")  # VISUAL first; options are split off
    assert edit_text("x").startswith("x\nsecond line")


def test_a_failing_or_missing_editor_leaves_the_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", str(script(tmp_path, "exit 3")))
    with pytest.raises(EditorFailed, match="exited with 3"):
        edit_text("keep")
    monkeypatch.setenv("EDITOR", str(tmp_path / "no-such-editor"))
    with pytest.raises(EditorFailed, match="set \\$EDITOR"):
        edit_text("keep")


async def test_ctrl_e_round_trips_the_composer_through_the_editor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", str(script(tmp_path, 'printf "# Title\\n\\n- a list\\n" > "$f"')))
    app = ChatApp(ChatApi(Endpoint(f"http://127.0.0.1:{free_port()}", "ca-x")))
    async with app.run_test(size=(80, 24)) as pilot:
        composer = main_screen(app).composer
        await pilot.press(*"draft")
        # Headless there is no terminal to hand over: without this the app says so (below).
        with monkeypatch.context() as patch:
            patch.setattr(app, "suspend", contextlib.nullcontext)
            await pilot.press("ctrl+e")
            await pilot.pause(0.1)
        assert composer.text == "# Title\n\n- a list"
        assert app.focused is composer
        await pilot.press("ctrl+e")  # the headless driver cannot suspend: a notice, no change
        await pilot.pause(0.1)
        assert composer.text == "# Title\n\n- a list"
        assert any("cannot hand over" in n.message for n in app._notifications)
