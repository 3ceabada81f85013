"""Context windowing with exact token arithmetic (one token a word, 4 per message)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from chatapp.context import PER_MESSAGE, fit_prompt
from chatapp.errors import InvalidRequest
from chatapp.token_count import CharEstimate


class Words:
    def count(self, text: str) -> int:
        return len(text.split())

    def count_prompt(self, messages: Sequence[Mapping[str, Any]]) -> int:
        raise AssertionError("not used")


def _history(*texts: str) -> list[dict[str, str]]:
    roles = ["user", "assistant"]
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(texts)]


def test_everything_fits_when_there_is_room() -> None:
    history = _history("one two", "three", "four five six")
    prompt = fit_prompt("be kind", history, Words(), context_window=100, output_reserve=50)
    assert prompt.dropped == []
    assert [m["content"] for m in prompt.messages] == [
        "be kind",
        "one two",
        "three",
        "four five six",
    ]
    assert prompt.tokens == (2 + 2 + 1 + 3) + 4 * PER_MESSAGE


def test_oldest_turns_go_first_and_the_system_prompt_stays() -> None:
    history = _history("a " * 10, "b " * 10, "c " * 10, "d " * 10)
    # budget 60 - 14 = 46; system 2+4 = 6; each turn 14: d, c fit (34), b would make 48.
    prompt = fit_prompt("sys prompt", history, Words(), context_window=60, output_reserve=14)
    assert len(prompt.dropped) == 2
    assert [m["content"].split()[0] for m in prompt.messages] == ["sys", "c", "d"]
    assert prompt.tokens == 6 + 14 + 14


def test_exactly_full_still_fits() -> None:
    history = _history("x " * 6)  # 6 + 4 = 10
    prompt = fit_prompt(None, history, Words(), context_window=20, output_reserve=10)
    assert prompt.tokens == 10 and prompt.dropped == []


def test_a_question_too_long_on_its_own_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequest, match="shorten it") as info:
        fit_prompt(None, _history("y " * 30), Words(), context_window=20, output_reserve=10)
    assert info.value.param == "content"


def test_a_summary_stands_in_for_dropped_turns_it_covers() -> None:
    history = [
        {"id": f"m{i}", **m}
        for i, m in enumerate(_history("a " * 10, "b " * 10, "c " * 10, "d " * 10))
    ]
    # budget 46: without a summary d, c, b fit (42) and a is dropped; the note
    # "Summary of the earlier part of this conversation: s1 s2" is 10 words + 4 = 14, so with
    # it only d and c fit: 42.
    prompt = fit_prompt(
        None,
        history,
        Words(),
        context_window=60,
        output_reserve=14,
        summary="s1 s2",
        summary_through="m0",
    )
    assert prompt.summarized
    assert prompt.messages[0]["content"].endswith("s1 s2")
    assert [m["content"].split()[0] for m in prompt.messages[1:]] == ["c", "d"]
    assert prompt.tokens == 14 + 14 + 14
    stale = fit_prompt(
        None,
        history,
        Words(),
        context_window=60,
        output_reserve=14,
        summary="s1 s2",
        summary_through="m3",
    )  # covers nothing dropped
    assert not stale.summarized


def test_a_tool_result_never_starts_the_prompt_without_its_call() -> None:
    function = {"name": "calculator", "arguments": "{}"}
    calls = [{"id": "c1", "type": "function", "function": function}]
    history = [
        {"role": "user", "content": "q" * 40},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": "4", "tool_call_id": "c1"},
        {"role": "assistant", "content": "four"},
        {"role": "user", "content": "and?"},
    ]
    prompt = fit_prompt(None, history, CharEstimate(), context_window=60, output_reserve=20)
    roles = [m["role"] for m in prompt.messages]
    assert roles[0] != "tool" and roles[-1] == "user"
