"""The installed `chatapp chat` in a real terminal (tmux): it starts and draws the main screen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.tui.conftest import Account

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def test_chatapp_chat_draws_the_main_screen_in_tmux(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    account.new_conversation(title="Seen from tmux")
    chatapp = Path(sys.executable).parent / "chatapp"
    assert chatapp.exists(), "the chatapp script is not installed next to this python"
    socket = f"chatapp-test-{os.getpid()}"  # a tmux server of its own, started with this env
    tmux = ["tmux", "-L", socket]
    env = {**os.environ, "CHATAPP_TUI_CONFIG": str(tmp_path / "tui.toml"), "TERM": "xterm-256color"}
    command = f"{chatapp} --url {server.url} --key {account.secret} chat"
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "chat", "-x", "100", "-y", "30", command],
        env=env,
        check=True,
    )
    try:
        screen, deadline = "", time.monotonic() + 20
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "chat"], capture_output=True, text=True
            ).stdout
            if all(part in screen for part in ("Seen from tmux", server.url, "Help")):
                break
            time.sleep(0.1)
        assert "Seen from tmux" in screen, screen  # the sidebar, filled from the server
        assert server.url in screen and "Help" in screen and "Search" in screen, screen
        assert len(screen.splitlines()) >= 29  # it drew the whole 100x30 window
        subprocess.run([*tmux, "send-keys", "-t", "chat", "C-q"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = subprocess.run([*tmux, "has-session", "-t", "chat"], capture_output=True)
            if alive.returncode != 0:
                break  # Ctrl+Q quit the app, which ended the session
            time.sleep(0.1)
        assert alive.returncode != 0, "Ctrl+Q did not quit"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
