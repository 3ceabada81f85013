"""The chat completion request: validated before the first byte, each error naming its field."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chatapp.errors import InvalidRequest

__all__ = ["ChatRequest", "parse_chat_request", "parse_json"]

ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class ChatRequest:
    """A valid request: the model asked for, the body for the engine, and how to stream it."""

    model: str
    body: dict[str, Any]
    stream: bool
    include_usage: bool


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 that says what is wrong with it."""
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return data


def _fail(param: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value for '{param}': {problem}", param=param)


def _number(low: float, high: float) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(name, "expected a number.")
        # Ints compare exactly however large; isfinite would overflow on a 400-digit one.
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(name, "expected a finite number.")
        if not low <= value <= high:
            raise _fail(name, f"must be between {low:g} and {high:g}.")

    return check


def _integer(low: int, high: int | None = None) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(name, "expected an integer.")
        if value < low or (high is not None and value > high):
            raise _fail(
                name,
                f"must be at least {low}."
                if high is None
                else f"must be between {low} and {high}.",
            )

    return check


def _of_type(kind: type | tuple[type, ...], label: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, kind):
            raise _fail(name, f"expected {label}.")

    return check


def _stop(name: str, value: Any) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list) or len(value) > 4 or not all(isinstance(v, str) for v in value):
        raise _fail(name, "expected a string or a list of up to 4 strings.")


def _logit_bias(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise _fail(name, "expected an object mapping token ids to biases.")
    for token, bias in value.items():
        if not token.isdigit():
            raise _fail(f"{name}.{token}", "keys must be token ids (integers as strings).")
        _number(-100, 100)(f"{name}.{token}", bias)


def _function(name: str, value: Any, *, arguments: bool) -> None:
    """A tool definition's or a tool call's `function` object."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        raise _fail(f"{name}.name", "a function needs a non-empty string name.")
    if arguments and not isinstance(value.get("arguments"), str):
        raise _fail(f"{name}.arguments", "expected the arguments as a JSON string.")
    if not arguments and not isinstance(value.get("parameters", {}), dict):
        raise _fail(f"{name}.parameters", "expected a JSON Schema object.")


def _tools(name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise _fail(name, "expected a list of tools.")
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _fail(f"{name}[{i}].type", 'each tool must be {"type": "function", ...}.')
        _function(f"{name}[{i}].function", tool.get("function"), arguments=False)


def _tool_calls(name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise _fail(name, "expected a list of tool calls.")
    for i, call in enumerate(value):
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            raise _fail(f"{name}[{i}].id", "each tool call needs a string id.")
        _function(f"{name}[{i}].function", call.get("function"), arguments=True)


def _tool_choice(name: str, value: Any) -> None:
    if value in ("none", "auto", "required"):
        return
    if isinstance(value, dict) and value.get("type") == "function":
        _function(f"{name}.function", value.get("function"), arguments=False)
        return
    raise _fail(name, 'expected "none", "auto", "required" or {"type": "function", ...}.')


def _response_format(name: str, value: Any) -> None:
    kinds = ("text", "json_object", "json_schema")
    if not isinstance(value, dict) or value.get("type") not in kinds:
        raise _fail(f"{name}.type", f"expected one of {', '.join(kinds)}.")


def _n(name: str, value: Any) -> None:
    if value != 1 or isinstance(value, bool):
        raise _fail(name, "only n=1 is supported.")


def _stream_options(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise _fail(name, "expected an object.")
    for key, option in value.items():
        if key != "include_usage":
            raise _fail(f"{name}.{key}", "unknown option (supported: include_usage).")
        if not isinstance(option, bool):
            raise _fail(f"{name}.include_usage", "expected a boolean.")


_FIELDS: dict[str, Callable[[str, Any], None]] = {
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "max_tokens": _integer(1),
    "max_completion_tokens": _integer(1),
    "seed": _integer(-(2**63), 2**64 - 1),
    "n": _n,
    "stop": _stop,
    "stream": _of_type(bool, "a boolean"),
    "stream_options": _stream_options,
    "user": _of_type(str, "a string"),
    "logprobs": _of_type(bool, "a boolean"),
    "top_logprobs": _integer(0, 20),
    "logit_bias": _logit_bias,
    "response_format": _response_format,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _of_type(bool, "a boolean"),
}


def _messages(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise _fail("messages", "expected a non-empty list of messages.")
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _fail(where, "expected an object with 'role' and 'content'.")
        role = message.get("role")
        if role not in ROLES:
            raise _fail(f"{where}.role", f"expected one of {', '.join(ROLES)} (got {role!r}).")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _fail(f"{where}.tool_call_id", "a tool message must name the call it answers.")
        if "tool_calls" in message:
            _tool_calls(f"{where}.tool_calls", message["tool_calls"])
        content = message.get("content")
        if content is None and role == "assistant" and message.get("tool_calls"):
            continue
        if isinstance(content, str):
            _text(f"{where}.content", content)
            continue
        if not isinstance(content, list) or not all(
            isinstance(part, dict) and isinstance(part.get("type"), str) for part in content
        ):
            raise _fail(f"{where}.content", "expected a string or a list of content parts.")
        for j, part in enumerate(content):
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise _fail(f"{where}.content[{j}].text", "expected a string.")
                _text(f"{where}.content[{j}].text", part["text"])


def _text(name: str, text: str) -> None:
    """JSON may carry lone surrogates (\\ud800) that are no text at all: refuse them here."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(name, "contains invalid Unicode (a lone surrogate).") from None


def parse_chat_request(data: Mapping[str, Any]) -> ChatRequest:
    """Check every field a client sent; unknown fields are refused as OpenAI does."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    _messages(data.get("messages"))
    for name, value in data.items():
        if name in ("model", "messages"):
            continue
        check = _FIELDS.get(name)
        if check is None:
            raise InvalidRequest(f"Unrecognized request argument supplied: {name}", param=name)
        if value is not None:
            check(name, value)
    body = {k: v for k, v in data.items() if v is not None and k != "stream_options"}
    if "max_completion_tokens" in body:
        # llama.cpp only knows max_tokens; vLLM treats the two the same.
        body["max_tokens"] = body.pop("max_completion_tokens")
    options = data.get("stream_options") or {}
    return ChatRequest(
        model=model,
        body=body,
        stream=bool(data.get("stream")),
        include_usage=bool(options.get("include_usage")),
    )
