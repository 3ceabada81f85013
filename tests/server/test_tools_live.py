"""Tool calling through a live gateway: the OpenAI SDK with tools, and the conversation loop.

The scripted stand-in emits tool calls (streamed in pieces, and not) the way vLLM does with a
tool-call parser; the embedded llama.cpp model is not set up for tools, so it refuses them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.conftest import LiveServer
from tests.server.test_conversations_live import Api, _user_key

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "arithmetic",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}
ASK = 'script:tool:calculator:{"expression": "2+3*4"}'


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=server.base_url, api_key=_user_key(server, "tools"), max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
def api(server: LiveServer) -> Iterator[Api]:
    client = Api(server, _user_key(server, "toolsconv"))
    yield client
    client.http.close()


def test_tool_calls_come_back_unstreamed(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": ASK}], tools=[CALCULATOR]
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "calculator"
    assert json.loads(call.function.arguments) == {"expression": "2+3*4"}


def test_tool_call_arguments_stream_in_pieces(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": ASK}],
        tools=[CALCULATOR],
        stream=True,
    )
    names, pieces, finish = [], [], None
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                if delta.function and delta.function.name:
                    names.append(delta.function.name)
                if delta.function and delta.function.arguments:
                    pieces.append(delta.function.arguments)
            finish = choice.finish_reason or finish
    assert names == ["calculator"] and len(pieces) == 3
    assert json.loads("".join(pieces)) == {"expression": "2+3*4"} and finish == "tool_calls"


def test_a_tool_result_goes_back_to_the_model(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="scripted",
        tools=[CALCULATOR],
        messages=[
            {"role": "user", "content": ASK},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "calculator", "arguments": '{"expression": "2"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "14"},
        ],
    )
    assert answer.choices[0].message.content == "result: 14"


def test_a_model_without_tool_support_refuses_tools_clearly(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], tools=[CALCULATOR]
        )
    assert info.value.code == "tools_not_supported"
    assert "smollm2" in info.value.message and "tool_call_parser" in info.value.message


def test_the_conversation_loop_runs_the_calculator_and_stores_every_step(api: Api) -> None:
    conv = api.new(tools=["calculator"])
    assert conv["tools"] == ["calculator"]
    events = api.events(conv["id"], ASK)
    names = [name for _, name, _ in events]
    assert names.index("tool.call") < names.index("tool.result") < names.index("message.completed")
    call = next(data for _, name, data in events if name == "tool.call")
    result = next(data for _, name, data in events if name == "tool.result")
    assert call["name"] == "calculator" and json.loads(call["arguments"])["expression"] == "2+3*4"
    expected = {"id": call["id"], "name": "calculator", "content": "2+3*4 = 14", "error": False}
    assert result == expected
    completed = events[-1][2]
    assert completed["content"] == "result: 2+3*4 = 14" and completed["status"] == "complete"
    branch = api.http.get(f"/conversations/{conv['id']}/messages").json()["data"]
    assert [m["role"] for m in branch] == ["user", "assistant", "tool", "assistant"]
    assert branch[1]["tool_calls"][0]["function"]["name"] == "calculator"
    assert branch[2]["tool_call_id"] == call["id"] and branch[2]["content"] == "2+3*4 = 14"
    assert branch[3]["content"] == "result: 2+3*4 = 14"
    assert branch[3]["usage"]["completion_tokens"] == 14  # both rounds are counted
    exported = api.http.get(f"/conversations/{conv['id']}/export").json()
    response = api.http.post("/conversations/import", json=exported)
    assert response.status_code == 201, response.text
    imported = response.json()
    assert imported["tools"] == ["calculator"]
    again = api.http.get(f"/conversations/{imported['id']}/messages").json()["data"]
    assert [m["tool_call_id"] for m in again] == [m["tool_call_id"] for m in branch]
    assert again[1]["tool_calls"] == branch[1]["tool_calls"]


def test_a_failing_tool_is_reported_to_the_model(api: Api) -> None:
    conv = api.new(tools=["calculator"])
    events = api.events(conv["id"], 'script:tool:calculator:{"expression": "1/0"}')
    result = next(data for _, name, data in events if name == "tool.result")
    assert result["error"] is True and "division by zero" in result["content"]
    assert events[-1][2]["content"].startswith("result: error:")


def test_the_loop_stops_after_the_configured_number_of_rounds(api: Api) -> None:
    conv = api.new(tools=["calculator"])
    events = api.events(conv["id"], "script:tools-forever")
    calls = [data for _, name, data in events if name == "tool.call"]
    assert len(calls) == 4  # server.tool_iterations
    assert events[-1][2]["content"] == "gave up"


def test_the_built_in_tools_are_listed(api: Api) -> None:
    listed = api.http.get("/tools").json()["data"]
    assert [t["name"] for t in listed] == ["calculator", "current_datetime", "search_conversations"]
    assert all(t["description"] and t["parameters"]["type"] == "object" for t in listed)


def test_unknown_tools_and_models_without_tools_are_400s(api: Api) -> None:
    response = api.http.post("/conversations", json={"model": "scripted", "tools": ["shell"]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "tools"
    conv = api.new(model="smollm2", tools=["current_datetime"])
    refused = api.http.post(f"/conversations/{conv['id']}/messages", json={"content": "now?"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "tools_not_supported"
