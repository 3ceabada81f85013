"""The official openai SDK, sync and async, against a live `chatapp serve` on the real model."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.conftest import LiveServer


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=server.key, max_retries=0) as client:
        yield client


def test_non_streamed_answer_has_text_and_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2",
        max_tokens=12,
        temperature=0,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello."},
        ],
    )
    assert answer.model == "smollm2"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content
    assert answer.usage is not None
    assert answer.usage.prompt_tokens > 0
    assert 0 < answer.usage.completion_tokens <= 12
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_streamed_answer_has_many_chunks_and_a_final_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2",
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Count from one to ten."}],
    )
    chunks = list(stream)
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) > 1
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 0
    assert usage.completion_tokens >= len(content) - 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            max_tokens=4,
            stream=True,
            messages=[{"role": "user", "content": "Hi"}],
        )
    )
    assert chunks and all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_max_completion_tokens_limits_the_answer(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2",
        max_completion_tokens=3,
        seed=7,
        top_p=0.9,
        stop=["\n\n"],
        user="t",
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
    )
    assert answer.usage is not None and answer.usage.completion_tokens <= 3
    assert answer.choices[0].finish_reason == "length"


async def test_async_client_streams_and_completes(server: LiveServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key=server.key, max_retries=0)
    async with client:
        answer = await client.chat.completions.create(
            model="smollm2", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
        )
        assert answer.choices[0].message.content
        stream = await client.chat.completions.create(
            model="smollm2",
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Hi"}],
        )
        pieces = [
            c.choices[0].delta.content
            async for c in stream
            if c.choices and c.choices[0].delta.content
        ]
        assert len(pieces) > 1


def test_models_lists_the_configured_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"smollm2", "scripted", "dead"} <= ids


def test_wrong_key_is_401(server: LiveServer) -> None:
    bad = openai.OpenAI(base_url=server.base_url, api_key="ca-not-a-real-key-at-all", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi"}])
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key"


def test_unknown_model_is_404_naming_the_available_ones(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "Hi"}])
    assert info.value.body["code"] == "model_not_found"
    assert info.value.body["param"] == "model"
    assert "smollm2" in info.value.body["message"]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 7}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 3}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"extra_body": {"frobnicate": True}}, "frobnicate"),
        ({"temperature": 10**400}, "temperature"),
        ({"tools": [1]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0].function.name"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "bogus"}}, "response_format.type"),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]},
            "messages[0].tool_calls[0].function.name",
        ),
        # Requests llama-cpp-python's server would answer with a 500 and a traceback:
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ]
            },
            "messages[0].content",
        ),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
        ({"logit_bias": {"not-a-token": 1}}, "logit_bias.not-a-token"),
        ({"logit_bias": {"42": 500}}, "logit_bias.42"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        (
            {"stream_options": {"include_usage": "yes"}, "stream": True},
            "stream_options.include_usage",
        ),
    ],
)
def test_malformed_request_is_400_naming_the_field(
    client: openai.OpenAI, kwargs: dict, param: str
) -> None:
    request = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**request)
    assert info.value.status_code == 400
    assert info.value.body["param"] == param
    assert param.split("[")[0].split(".")[0] in info.value.body["message"]


@pytest.mark.parametrize(
    "messages",
    [
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}],
            }
        ],
        [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        [
            {"role": "user", "content": "What is 6*7?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "calc", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
    ],
    ids=["content-parts", "developer-role", "tool-round-trip"],
)
def test_message_forms_the_engine_lacks_are_sent_in_plain_form(
    client: openai.OpenAI, messages: list
) -> None:
    answer = client.chat.completions.create(model="smollm2", max_tokens=3, messages=messages)
    assert answer.choices[0].message.content is not None
    assert answer.usage is not None and answer.usage.prompt_tokens > 0


def test_prompt_over_the_context_window_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="smollm2", max_tokens=3, messages=[{"role": "user", "content": "word " * 3000}]
        )
    assert "context" in info.value.body["message"]
