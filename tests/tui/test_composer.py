"""The composer's keys, with no server needed: Enter sends, Ctrl+J breaks lines, up/down recall."""

from __future__ import annotations

from chatapp.engines.supervisor import free_port
from tests.tui.conftest import main_screen
from tui.api import ChatApi, Endpoint
from tui.app import ChatApp
from tui.widgets.composer import Composer


async def test_enter_sends_ctrl_j_breaks_the_line_and_up_recalls_earlier_prompts() -> None:
    app = ChatApp(ChatApi(Endpoint(f"http://127.0.0.1:{free_port()}", "ca-x")))
    sent: list[str] = []
    async with app.run_test(size=(80, 24)) as pilot:
        screen = main_screen(app)
        composer = screen.composer
        original = screen.send
        screen.send = lambda text: sent.append(text)  # type: ignore[method-assign,assignment,return-value]
        await pilot.press(*"first", "ctrl+j", *"line", "enter")
        assert sent == ["first\nline"] and composer.text == ""
        await pilot.press(*"second", "enter")
        assert sent[-1] == "second"
        await pilot.press("up")
        assert composer.text == "second"
        await pilot.press("up")
        assert composer.text == "first\nline"
        await pilot.press("down")
        assert composer.text == "second"
        await pilot.press("down")
        assert composer.text == ""
        await pilot.press("enter")  # nothing to send
        assert len(sent) == 2
        screen.send = original  # type: ignore[method-assign]
        assert isinstance(app.focused, Composer)
