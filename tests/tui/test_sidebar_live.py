"""The conversation list against a live server: open, search as you type, rename, pin, delete."""

from __future__ import annotations

from collections.abc import Callable

from tests.tui.conftest import Account, main_screen, until
from tui.app import ChatApp


def listed(app: ChatApp) -> list[str]:
    return main_screen(app).sidebar.listed


async def test_enter_opens_the_highlighted_conversation(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    older = account.new_conversation(title="Older")
    account.new_conversation(title="Newer")
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await until(pilot, lambda: len(listed(app)) == 2, "the list")
        screen.sidebar.options.focus()
        await pilot.press("down", "enter")
        await until(pilot, lambda: screen.current_id == older["id"], "the older one opened")
        assert screen.chat.conversation_id == older["id"]
        assert app.focused is screen.composer


async def test_search_as_you_type_lists_only_the_matches(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    wanted = account.new_conversation(title="Zebraphone field notes")
    account.new_conversation(title="Groceries")
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        await until(pilot, lambda: len(listed(app)) == 2, "the list")
        await pilot.press("ctrl+f", *"zebra")  # a prefix of the word: search-as-you-type
        await until(pilot, lambda: listed(app) == [wanted["id"]], "only the match")
        prompt = str(main_screen(app).sidebar.options.get_option_at_index(0).prompt)
        title, snippet = prompt.split("\n")
        assert title == "Zebraphone field notes" and "Zebraphone" in snippet
        for _ in "zebra":
            await pilot.press("backspace")
        await until(pilot, lambda: len(listed(app)) == 2, "the whole list again")


async def test_rename_pin_and_delete(make_app: Callable[..., ChatApp], account: Account) -> None:
    first = account.new_conversation(title="First")
    second = account.new_conversation(title="Second")
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await until(pilot, lambda: listed(app) == [second["id"], first["id"]], "the list")
        await screen.open(first["id"])
        await pilot.press("f2")
        await pilot.press("ctrl+u", *"Renamed", "enter")  # ctrl+u clears the old title
        renamed = lambda: account.http.get(f"/v1/conversations/{first['id']}").json()  # noqa: E731
        await until(pilot, lambda: renamed()["title"] == "Renamed", "the rename on the server")
        await until(
            pilot,
            lambda: screen.sidebar.conversations[first["id"]].title == "Renamed",
            "the new title in the list",
        )

        await pilot.press("ctrl+p")
        await until(pilot, lambda: renamed()["pinned"] is True, "the pin on the server")
        await until(pilot, lambda: listed(app)[0] == first["id"], "pinned on top")

        screen.sidebar.options.focus()
        screen.sidebar.options.highlighted = listed(app).index(second["id"])
        await pilot.press("delete")
        await pilot.press("y")
        await until(pilot, lambda: listed(app) == [first["id"]], "the deletion in the list")
        gone = account.http.get(f"/v1/conversations/{second['id']}")
        assert gone.status_code == 404
        assert screen.current_id == first["id"]  # the open one was not the one deleted
