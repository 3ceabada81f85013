"""Layout snapshots (80x24) of the main screen, the help screen and the model picker.

The app runs against a stand-in for the server (fixed conversations, messages and models), so
the pictures depend on nothing but the code. `pytest --snapshot-update` redraws them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui.standin import StandIn, open_first
from tui.app import ChatApp


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Message times print in local time: make that UTC everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_main_screen(snap_compare: Any) -> None:
    assert snap_compare(ChatApp(StandIn()), terminal_size=(80, 24), run_before=open_first)


def test_help_screen(snap_compare: Any) -> None:
    async def help_open(pilot: Pilot[Any]) -> None:
        await open_first(pilot)
        await pilot.press("f1")
        await pilot.pause(0.2)

    assert snap_compare(ChatApp(StandIn()), terminal_size=(80, 24), run_before=help_open)


def test_model_picker(snap_compare: Any) -> None:
    async def picker_open(pilot: Pilot[Any]) -> None:
        await open_first(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause(0.3)

    assert snap_compare(ChatApp(StandIn()), terminal_size=(80, 24), run_before=picker_open)
