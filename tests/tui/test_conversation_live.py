"""What can be done to a conversation, against a live server: system prompt, archive and back,
export, model, and a list longer than one page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.widgets import OptionList, TextArea

from tests.tui.conftest import Account, main_screen, until
from tests.tui.test_sidebar_live import listed
from tui.app import ChatApp
from tui.screens.prompt import PromptScreen
from tui.screens.system_prompt import SystemPromptScreen


def ask(account: Account, cid: str, question: str) -> None:
    """One question and its (scripted) answer, straight over HTTP."""
    path = f"/v1/conversations/{cid}/messages"
    with account.http.stream("POST", path, json={"content": question}) as response:
        assert response.status_code == 200
        response.read()


async def test_the_system_prompt_is_edited_on_several_lines(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    conversation = account.new_conversation(title="Prompted")
    fetch = lambda: account.http.get(f"/v1/conversations/{conversation['id']}").json()  # noqa: E731
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await screen.open(conversation["id"])
        await pilot.press("ctrl+t")
        await until(pilot, lambda: isinstance(app.screen, SystemPromptScreen), "the dialog")
        await pilot.press(*"Be brief.", "enter", *"Answer in French.", "ctrl+s")
        await until(
            pilot,
            lambda: fetch()["system_prompt"] == "Be brief.\nAnswer in French.",
            "the prompt on the server",
        )
        await until(
            pilot,
            lambda: screen.current is not None and bool(screen.current.system_prompt),
            "the prompt in the app",
        )
        await pilot.press("ctrl+t")  # open again: it shows what is stored; Esc changes nothing
        await until(pilot, lambda: isinstance(app.screen, SystemPromptScreen), "the dialog")
        assert app.screen.query_one(TextArea).text == "Be brief.\nAnswer in French."
        await pilot.press(*" Always.", "escape")
        await pilot.pause(0.3)
        assert fetch()["system_prompt"] == "Be brief.\nAnswer in French."


async def test_archive_show_archived_and_unarchive(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    keep = account.new_conversation(title="Keep")
    old = account.new_conversation(title="Old news")
    fetch = lambda: account.http.get(f"/v1/conversations/{old['id']}").json()  # noqa: E731
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        sidebar = screen.sidebar
        await until(pilot, lambda: listed(app) == [old["id"], keep["id"]], "the list")
        sidebar.options.focus()
        sidebar.options.highlighted = 0
        await pilot.press("a")
        await until(pilot, lambda: fetch()["archived"] is True, "archived on the server")
        await until(pilot, lambda: listed(app) == [keep["id"]], "out of the list")

        await pilot.press("f8")
        await until(pilot, lambda: listed(app) == [old["id"]], "the archived list")
        assert sidebar.archived and sidebar.query_one("#list-title").display
        sidebar.options.focus()
        sidebar.options.highlighted = 0
        await pilot.press("a")
        await until(pilot, lambda: fetch()["archived"] is False, "unarchived on the server")
        await until(pilot, lambda: listed(app) == [], "out of the archived list")

        await pilot.press("f8")
        await until(pilot, lambda: set(listed(app)) == {old["id"], keep["id"]}, "both again")
        assert not sidebar.archived and not sidebar.query_one("#list-title").display


async def test_export_writes_the_servers_markdown_where_asked(
    make_app: Callable[..., ChatApp], account: Account, tui_settings: Path, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    tui_settings.write_text(f'export_dir = "{exports}"\n')
    conversation = account.new_conversation(title="Trip notes")
    ask(account, conversation["id"], "hello")
    expected = account.http.get(
        f"/v1/conversations/{conversation['id']}/export", params={"format": "markdown"}
    ).text
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await until(pilot, lambda: conversation["id"] in screen.sidebar.conversations, "listed")
        await screen.open(conversation["id"])
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen), "where to save")
        target = exports / "Trip-notes.md"
        await pilot.press("enter")  # the suggested path: the export folder from tui.toml
        await until(pilot, target.exists, "the file")
        assert target.read_text() == expected and "hello" in expected
        assert any(f"Saved {target}" in n.message for n in app._notifications)


async def test_the_picked_model_answers_the_next_question(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    app = make_app()  # "scripted" until another is picked
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await pilot.press("ctrl+o")
        await until(pilot, lambda: len(app.screen.query(OptionList)) == 1, "the picker")
        options = app.screen.query_one(OptionList)
        await until(pilot, lambda: options.option_count > 1, "the models")
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert "tiny" in ids and "smollm2" in ids
        steps = ids.index("tiny") - (options.highlighted or 0)
        await pilot.press(*(["down"] * steps if steps > 0 else ["up"] * -steps), "enter")
        await until(pilot, lambda: screen.model == "tiny", "the model chosen")
        assert screen.status.model == "tiny" and screen.status.context == 100
        await pilot.press(*"hello", "enter")
        await until(
            pilot,
            lambda: (
                (v := screen.chat.last("assistant")) is not None
                and v.reply is not None
                and v.reply.done
            ),
            "the answer",
        )
        view = screen.chat.last("assistant")
        assert view is not None and view.message_id is not None and screen.current is not None
        assert account.message(screen.current.id, view.message_id)["model"] == "tiny"


async def test_the_list_pages_in_older_conversations_on_scrolling(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    made = [account.new_conversation(title=f"Chat {i}")["id"] for i in range(62)]
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        sidebar = main_screen(app).sidebar
        await until(pilot, lambda: len(listed(app)) == 50, "the first page")
        sidebar.options.focus()
        await pilot.press("end")  # scrolling near the end fetches the next page
        await until(pilot, lambda: len(listed(app)) == 62, "the second page")
        assert listed(app) == made[::-1]  # newest first, each once
        newest = account.new_conversation(title="Newest")["id"]
        sidebar.reload()  # as after a reply: the first page again, the older ones kept below
        await until(pilot, lambda: listed(app)[:1] == [newest], "the new one on top")
        assert listed(app) == [newest, *made[::-1]]
