"""Plain-text message rewriting for llama-cpp-python's server."""

from __future__ import annotations

import pytest

from chatapp.errors import InvalidRequest
from chatapp.plain_messages import plain_messages


def test_rewrites_parts_developer_and_null_content_without_touching_the_input() -> None:
    body = {
        "model": "m",
        "temperature": 0.5,
        "messages": [
            {"role": "developer", "content": "rules"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "assistant", "content": None, "tool_calls": []},
        ],
    }
    plain = plain_messages(body, "m")
    assert [m["role"] for m in plain["messages"]] == ["system", "user", "assistant"]
    assert [m["content"] for m in plain["messages"]] == ["rules", "ab", ""]
    assert plain["temperature"] == 0.5
    assert body["messages"][0]["role"] == "developer"


def test_non_text_parts_are_refused_naming_the_message() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "user", "content": [{"type": "input_audio"}]},
        ]
    }
    with pytest.raises(InvalidRequest) as info:
        plain_messages(body, "m")
    assert info.value.param == "messages[1].content"
    assert "input_audio" in info.value.message
