"""The chat client against a live `chatapp serve`: send, stream, stop, regenerate, switch."""

from __future__ import annotations

from collections.abc import Callable

from tests.tui.conftest import Account, main_screen, until
from tui.app import ChatApp
from tui.widgets.message import MessageView

COUNTED = "".join(f"t{i} " for i in range(30))  # what "script:count" streams, 40 ms a piece


async def test_start_lists_conversations_pinned_first(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    pinned = account.new_conversation(title="Pinned plans", pinned=True)
    newer = account.new_conversation(title="Newest chat")
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        sidebar = main_screen(app).sidebar
        await until(pilot, lambda: len(sidebar.listed) == 2, "the list")
        assert sidebar.listed == [pinned["id"], newer["id"]]
        assert "★" in str(sidebar.options.get_option_at_index(0).prompt)


async def test_send_streams_text_before_the_reply_is_complete(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await pilot.press(*"script:count", "enter")
        await until(pilot, lambda: screen.chat.last("assistant") is not None, "the reply's view")
        view = screen.chat.last("assistant")
        assert view is not None and view.reply is not None
        await until(pilot, lambda: "t3 " in view.text, "streamed text")
        assert view.reply.status == "streaming"  # text on screen while it is still generating
        await until(pilot, lambda: view.reply is not None and view.reply.done, "the end")
        await pilot.pause(0.2)
        assert view.text == COUNTED  # every token, once
        assert view.reply.message_id is not None and screen.current is not None
        stored = account.message(screen.current.id, view.reply.message_id)
        assert stored["status"] == "complete" and stored["content"] == COUNTED
        question = screen.chat.last("user")
        assert question is not None and question.text == "script:count"
        assert "scripted" in str(view.query_one(".meta").render())
        # the sidebar lists the new conversation
        assert screen.current.id in screen.sidebar.conversations


async def test_escape_stops_and_the_server_keeps_it_cancelled(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await pilot.press(*"script:endless", "enter")
        await until(pilot, lambda: screen.chat.last("assistant") is not None, "the reply")
        view = screen.chat.last("assistant")
        assert view is not None and view.reply is not None
        await until(pilot, lambda: "tick" in view.text, "streamed ticks")
        await pilot.press("escape")
        await until(pilot, lambda: view.reply is not None and view.reply.done, "the stop")
        assert view.reply.status == "cancelled"
        assert screen.current is not None and view.reply.message_id is not None
        stored = account.message(screen.current.id, view.reply.message_id)
        assert stored["status"] == "cancelled"
        assert stored["content"].startswith("tick") and stored["content"] == view.reply.text
        assert "cancelled" in str(view.query_one(".meta").render())


async def test_regenerate_adds_a_sibling_and_shows_which_of_how_many(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await pilot.press(*"hello", "enter")
        await until(
            pilot,
            lambda: (
                screen.replies.active(screen.current_id) is None
                and screen.current is not None
                and screen.chat.last("assistant") is not None
                and not screen.chat.last("assistant").streaming
            ),
            "the first answer",
        )
        first = screen.chat.last("assistant")
        assert first is not None and first.message_id is not None
        first_id = first.message_id
        await pilot.press("ctrl+r")
        await until(
            pilot,
            lambda: (
                (v := screen.chat.last("assistant")) is not None
                and v.message_id not in (None, first_id)
                and not v.streaming
            ),
            "the new answer",
        )
        new = screen.chat.last("assistant")
        assert new is not None and new.text == "ok ok ok"
        assert len(list(screen.chat.query(MessageView))) == 2  # the old answer is a branch now
        assert screen.current is not None
        siblings = account.http.get(
            f"/v1/conversations/{screen.current.id}/messages/{new.message_id}/siblings"
        ).json()["data"]
        assert [m["id"] for m in siblings] == [first_id, new.message_id]
        await until(pilot, lambda: new.branch == (2, 2), "the branch marker")
        assert "‹2/2›" in str(new.query_one(".meta").render())


async def test_switching_away_mid_reply_and_back_shows_the_whole_answer_once(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    other = account.new_conversation(title="Somewhere else")
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await pilot.press(*"script:count", "enter")
        await until(
            pilot,
            lambda: (v := screen.chat.last("assistant")) is not None and "t2 " in v.text,
            "the reply under way",
        )
        assert screen.current is not None
        first = screen.current.id
        await screen.open(other["id"])  # as Enter on it in the list does
        await until(pilot, lambda: screen.chat.conversation_id == other["id"], "the switch")
        reply = screen.replies.active(first)
        assert reply is not None  # still generating, still followed
        await pilot.pause(0.3)
        await screen.open(first)
        await until(
            pilot,
            lambda: (v := screen.chat.last("assistant")) is not None and v.reply is reply,
            "the reply's view again",
        )
        view = screen.chat.last("assistant")
        assert view is not None
        await until(pilot, lambda: reply.done, "the end of the reply")
        await pilot.pause(0.2)
        assert view.text == COUNTED
        assert reply.message_id is not None
        assert account.message(first, reply.message_id)["content"] == COUNTED


async def test_a_reply_left_by_quitting_is_picked_up_by_the_next_start(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await pilot.press(*"script:count", "enter")
        await until(
            pilot,
            lambda: (v := screen.chat.last("assistant")) is not None and "t1 " in v.text,
            "the reply under way",
        )
        assert screen.current is not None
        cid = screen.current.id
    # quit mid-reply: the server goes on for its grace period; a new start re-attaches
    again = make_app()
    async with again.run_test(size=(100, 32)) as pilot:
        screen = main_screen(again)
        await screen.open(cid)
        await until(
            pilot,
            lambda: (v := screen.chat.last("assistant")) is not None and v.reply is not None,
            "the resumed reply",
        )
        view = screen.chat.last("assistant")
        assert view is not None and view.reply is not None
        await until(pilot, lambda: view.reply is not None and view.reply.done, "its end")
        await pilot.pause(0.2)
        assert view.reply.status == "complete"
        assert view.text == COUNTED


async def test_the_real_model_answers_and_the_answer_is_stored(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    app = make_app(model="smollm2", max_tokens=12)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await pilot.press(*"Say hello.", "enter")
        await until(
            pilot,
            lambda: (
                (v := screen.chat.last("assistant")) is not None
                and v.reply is not None
                and v.reply.done
            ),
            "the answer",
            timeout=60,
        )
        view = screen.chat.last("assistant")
        assert view is not None and view.reply is not None
        assert view.reply.status == "complete" and view.text.strip()
        assert screen.current is not None and view.reply.message_id is not None
        stored = account.message(screen.current.id, view.reply.message_id)
        assert stored["content"] == view.text and stored["model"] == "smollm2"
        assert stored["usage"]["completion_tokens"] > 0
        await pilot.pause(0.1)
        assert f"{stored['usage']['completion_tokens']} tokens" in str(
            view.query_one(".meta").render()
        )


async def test_older_messages_load_when_scrolling_to_the_top(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    conversation = account.new_conversation(title="Long one")
    for i in range(18):
        with account.http.stream(
            "POST", f"/v1/conversations/{conversation['id']}/messages", json={"content": f"q{i}"}
        ) as response:
            assert response.status_code == 200
            response.read()
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await screen.open(conversation["id"])
        views = lambda: list(screen.chat.query(MessageView))  # noqa: E731
        await until(pilot, lambda: len(views()) == 30, "the newest page")
        assert views()[-1].message.content == "ok ok ok"
        screen.chat.scroll_home(animate=False)
        await until(pilot, lambda: len(views()) == 36, "the older page on top")
        assert views()[0].message.content == "q0"
        # what was on screen stays there: the new page is above it, not in its place
        await until(pilot, lambda: screen.chat.scroll_y > 10, "the place kept", timeout=3)


async def test_editing_the_last_question_branches_and_alt_arrows_switch(
    make_app: Callable[..., ChatApp], account: Account
) -> None:
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await pilot.press(*"hello", "enter")

        def answered() -> bool:
            view = screen.chat.last("assistant")
            return view is not None and view.reply is not None and view.reply.done

        await until(pilot, answered, "the first answer")
        first_question = screen.chat.last("user")
        assert first_question is not None and first_question.message_id is not None
        await pilot.press("f4")
        await until(pilot, lambda: screen.composer.text == "hello", "the question to edit")
        await pilot.press("ctrl+u", *"hello again", "enter")
        await until(
            pilot,
            lambda: (
                (q := screen.chat.last("user")) is not None
                and q.message_id not in (None, first_question.message_id)
                and answered()
            ),
            "the edited question's answer",
        )
        assert len(list(screen.chat.query(MessageView))) == 2  # the old turn is another branch
        question = screen.chat.last("user")
        assert question is not None and question.text == "hello again"
        await until(pilot, lambda: question.branch == (2, 2), "the ‹2/2› marker")
        await pilot.press("alt+left")
        await until(
            pilot,
            lambda: (q := screen.chat.last("user")) is not None and q.text == "hello",
            "the first branch back",
        )
        assert screen.current is not None
        stored = account.http.get(f"/v1/conversations/{screen.current.id}").json()
        assert stored["current_leaf"] != question.message_id
