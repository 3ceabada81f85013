"""Copying (OSC 52) an answer or its code block, and the context gauge, on a stand-in server."""

from __future__ import annotations

import pytest

from tests.tui.conftest import main_screen
from tests.tui.standin import ANSWER, CODE, StandIn, open_first
from tui.app import ChatApp

TWO_BLOCKS = "First:\n\n```sh\nls -l\n```\n\nThen, indented:\n\n    make test\n    make bench\n"


async def test_copy_the_answer_and_its_last_code_block(monkeypatch: pytest.MonkeyPatch) -> None:
    app = ChatApp(StandIn())
    copied: list[str] = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test(size=(100, 32)) as pilot:
        await open_first(pilot)
        await pilot.press("ctrl+l")
        await pilot.press("alt+c")
        assert copied == [ANSWER, CODE]  # the whole answer, then the code without its fences
        assert any("Copied a code block (2 lines)" in n.message for n in app._notifications)


async def test_copy_code_takes_the_last_block_and_says_when_there_is_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = ChatApp(StandIn(answer=TWO_BLOCKS))
    copied: list[str] = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test(size=(100, 32)) as pilot:
        await open_first(pilot)
        await pilot.press("alt+c")
        assert copied == ["make test\nmake bench\n"]
        await main_screen(app).action_new_chat()
        await pilot.press("alt+c")
        assert len(copied) == 1
        assert any("no code block" in n.message for n in app._notifications)


async def test_the_gauge_shows_the_share_of_the_context_window() -> None:
    app = ChatApp(StandIn(total_tokens=79))
    async with app.run_test(size=(100, 32)) as pilot:
        await open_first(pilot)
        status = main_screen(app).status
        assert status.context == 8192 and status.gauge == "79/8,192 ctx (1%)"
        rendered = status.render()
        assert "79/8,192 ctx (1%)" in str(rendered)
        assert not any(span.style and "bold" in str(span.style) for span in rendered.spans)
        assert not any("Context nearly full" in (n.title or "") for n in app._notifications)


async def test_a_nearly_full_context_warns_once() -> None:
    app = ChatApp(StandIn(total_tokens=7000))
    async with app.run_test(size=(100, 32)) as pilot:
        await open_first(pilot)
        screen = main_screen(app)
        assert screen.status.gauge == "7,000/8,192 ctx (85%)"
        warned = [n for n in app._notifications if n.title == "Context nearly full"]
        assert len(warned) == 1 and warned[0].severity == "warning"
        assert "85%" in warned[0].message
        styled = screen.status.render()
        assert any(span.style and "bold" in str(span.style) for span in styled.spans)
        await screen.open("c1")  # again: no second notice for the same conversation
        await pilot.pause(0.3)
        assert len([n for n in app._notifications if n.title == "Context nearly full"]) == 1
