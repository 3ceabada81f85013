"""Debug logging of engine exchanges: prompts and answers only at debug level, cut to size."""

from __future__ import annotations

import json
import logging

import pytest

from chatapp import exchange_log

ENGINE = "chatapp.engine"


def test_at_debug_the_request_and_answers_are_logged_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "naïve question"}]}
    with caplog.at_level(logging.DEBUG, logger=ENGINE):
        exchange_log.sent("m@local", payload)
        exchange_log.answered("m@local", b'{"choices": [{"message": {"content": "hi"}}]}')
        exchange_log.finished(
            "m@local",
            ["Para", "graph\none"],
            finish_reason="stop",
            usage={"completion_tokens": 2},
            outcome="cancelled",
        )
    to, whole, streamed = [r.getMessage() for r in caplog.records]
    assert to == f"to m@local: {json.dumps(payload, ensure_ascii=False)}"
    assert whole == 'from m@local: {"choices": [{"message": {"content": "hi"}}]}'
    # The text as a JSON string: one line whatever it holds.
    assert streamed == (
        'from m@local, streamed, finish_reason stop, usage {"completion_tokens":2}: '
        '"Paragraph\\none"'
    )
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.parametrize(
    ("outcome", "said"), [("cancelled", "cut short"), ("error", "failed"), ("ok", "cut short")]
)
def test_an_answer_without_finish_reason_says_it_ended_early(
    caplog: pytest.LogCaptureFixture, outcome: str, said: str
) -> None:
    with caplog.at_level(logging.DEBUG, logger=ENGINE):
        exchange_log.finished("u", ["so far"], finish_reason=None, usage=None, outcome=outcome)
    assert caplog.records[0].getMessage() == f'from u, streamed, {said}, usage none: "so far"'


def test_long_texts_are_cut_and_say_how_much_was_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    words = "x" * (exchange_log.MAX_CHARS + 1234)
    with caplog.at_level(logging.DEBUG, logger=ENGINE):
        exchange_log.answered("u", words.encode())
    message = caplog.records[0].getMessage()
    assert message == f"from u: {'x' * exchange_log.MAX_CHARS}… (1,234 more characters)"


def test_at_info_nothing_is_logged_nor_encoded(caplog: pytest.LogCaptureFixture) -> None:
    unencodable = {"messages": object()}  # json.dumps would raise: proves no JSON work
    with caplog.at_level(logging.INFO, logger=ENGINE):
        assert not exchange_log.enabled()
        exchange_log.sent("u", unencodable)
        exchange_log.answered("u", b"secret answer")
        exchange_log.finished("u", ["secret"], finish_reason="stop", usage=None, outcome="ok")
    assert caplog.records == []


def test_tool_calls_get_a_line_of_their_own(caplog: pytest.LogCaptureFixture) -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]
    with caplog.at_level(logging.DEBUG, logger=ENGINE):
        exchange_log.finished(
            "u", [], finish_reason="tool_calls", usage=None, outcome="ok", tool_calls=calls
        )
        exchange_log.finished("u", ["text"], finish_reason="stop", usage=None, outcome="ok")
    answer, called, plain = [r.getMessage() for r in caplog.records]
    assert answer == 'from u, streamed, finish_reason tool_calls, usage none: ""'
    assert called == f"from u, streamed, tool calls: {json.dumps(calls)}"
    assert plain == 'from u, streamed, finish_reason stop, usage none: "text"'  # none: no line
