"""Tool calls in streamed chunks: put the pieces back together, and refuse tools politely.

An engine streams a call as deltas keyed by `index`: the first carries the id and the
function name, the rest append to the arguments string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatapp.errors import InvalidRequest
from chatapp.tools import ToolCall

__all__ = ["ToolCallBuilder", "tools_not_supported"]


def tools_not_supported(model: str) -> InvalidRequest:
    return InvalidRequest(
        f"The model '{model}' is not set up for tool calling (for vLLM set tool_call_parser; "
        "or set tools = true in models.toml if its engine parses tool calls).",
        param="tools",
        code="tools_not_supported",
    )


class ToolCallBuilder:
    """Collects the tool-call deltas of one streamed answer."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, chunk: Mapping[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            for delta in (choice.get("delta") or {}).get("tool_calls") or ():
                if not isinstance(delta, dict):
                    continue
                index = delta.get("index", len(self._calls))
                call = self._calls.setdefault(
                    index if isinstance(index, int) else len(self._calls),
                    {"id": "", "name": "", "arguments": ""},
                )
                call["id"] = delta.get("id") or call["id"]
                function = delta.get("function") or {}
                call["name"] = function.get("name") or call["name"]
                arguments = function.get("arguments")
                if isinstance(arguments, str):
                    call["arguments"] += arguments

    def __bool__(self) -> bool:
        return bool(self._calls)

    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"])
            for i, c in sorted(self._calls.items())
        ]

    def as_message_calls(self) -> list[dict[str, Any]]:
        """The calls as an assistant message's `tool_calls`, to send back and to store."""
        return [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in self.calls()
        ]
