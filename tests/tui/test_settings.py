"""tui.toml: remapped keys, the theme remembered, and a bad file reported with defaults kept."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

from chatapp.engines.supervisor import free_port
from tests.tui.conftest import Account, main_screen, until
from tui.api import ChatApi, Endpoint
from tui.app import ChatApp
from tui.keymap import keys_of
from tui.screens.main import MainScreen
from tui.settings import Settings, load_settings, save_theme, valid_key

IDS = frozenset({"pin", "new", "newline"})


def offline_app(settings: Path) -> ChatApp:
    """An app with no server behind it: enough for keys and themes."""
    return ChatApp(ChatApi(Endpoint(f"http://127.0.0.1:{free_port()}", "ca-x")), settings=settings)


def test_keys_are_checked_one_by_one(tmp_path: Path) -> None:
    assert valid_key("ctrl+g") and valid_key("f5") and valid_key("alt+enter,ctrl+j")
    assert valid_key("slash") and valid_key("x") and valid_key("ctrl+shift+up")
    assert not valid_key("ctlr+g") and not valid_key("ctrl+nope") and not valid_key("")
    path = tmp_path / "tui.toml"
    path.write_text(
        'export_dir = "~/chats"\n[bindings]\npin = "ctrl+g"\nnew = "ctlr+n"\nfly = "f5"\n'
    )
    settings, warnings = load_settings(path, IDS)
    assert settings.bindings == {"pin": "ctrl+g"}  # the good one is kept
    assert settings.export_dir == Path("~/chats").expanduser()
    assert len(warnings) == 2
    assert "bindings.new" in warnings[0] and "bindings.fly is no action" in warnings[1]


def test_an_unreadable_file_keeps_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "tui.toml"
    path.write_text("[bindings\npin = ")
    settings, warnings = load_settings(path, IDS)
    assert settings.bindings == {} and settings.theme is None
    assert len(warnings) == 1 and "defaults are in use" in warnings[0]
    assert load_settings(tmp_path / "absent.toml", IDS) == (Settings(), [])  # no file: quiet


def test_saving_the_theme_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tui.toml"
    path.write_text('# mine\n[bindings]\npin = "ctrl+g"\n')
    save_theme(path, "nord")
    save_theme(path, "gruvbox")  # replaced, not added again
    text = path.read_text()
    assert text.count("theme") == 1 and "# mine" in text
    assert tomllib.loads(text) == {"theme": "gruvbox", "bindings": {"pin": "ctrl+g"}}


async def test_a_bad_file_is_a_warning_and_the_app_still_starts(tui_settings: Path) -> None:
    tui_settings.write_text('[bindings]\npin = "ctrl+g"\nteleport = "f5"\n')
    app = offline_app(tui_settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        warnings = [n.message for n in app._notifications if n.severity == "warning"]
        assert any("bindings.teleport is no action" in w for w in warnings)
        assert app.keymap == {"pin": "ctrl+g"}
        assert isinstance(app.screen, MainScreen)


async def test_a_remapped_key_does_the_action_and_the_help_shows_it(
    make_app: Callable[..., ChatApp], account: Account, tui_settings: Path
) -> None:
    tui_settings.write_text('[bindings]\npin = "ctrl+g"\n')
    conversation = account.new_conversation(title="Pin me")
    fetch = lambda: account.http.get(f"/v1/conversations/{conversation['id']}").json()  # noqa: E731
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await screen.open(conversation["id"])
        await pilot.press("ctrl+p")  # the old key does nothing now
        await pilot.pause(0.3)
        assert fetch()["pinned"] is False
        await pilot.press("ctrl+g")
        await until(pilot, lambda: fetch()["pinned"] is True, "the pin by the new key")
        pin = next(b for b in MainScreen.BINDINGS if getattr(b, "id", None) == "pin")
        assert keys_of(app, pin) == "^g"  # what F1 lists for it


async def test_f9_picks_a_theme_and_the_next_start_has_it(tui_settings: Path) -> None:
    tui_settings.write_text('[bindings]\npin = "ctrl+g"\n')
    app = offline_app(tui_settings)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme != "nord"
        await pilot.press("f9")
        await pilot.pause(0.2)
        await pilot.press(*"nord")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.theme == "nord", "the theme changed")
        await until(pilot, lambda: "nord" in tui_settings.read_text(), "the theme saved")
    assert tomllib.loads(tui_settings.read_text())["bindings"] == {"pin": "ctrl+g"}
    again = offline_app(tui_settings)
    async with again.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        assert again.theme == "nord"
