"""Rewrite OpenAI messages for engines that only take plain-text chat (llama-cpp-python's server).

Its server answers 500 to content-part lists, the `developer` role and `content: null`; the
gateway sends the equivalent plain form instead, and refuses what has none (images) with a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatapp.errors import InvalidRequest

__all__ = ["plain_messages"]


def plain_messages(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """`body` with every message in plain-text form; InvalidRequest for non-text parts."""
    messages = []
    for index, message in enumerate(body.get("messages", [])):
        message = dict(message)
        if message.get("role") == "developer":
            message["role"] = "system"  # OpenAI's own mapping for models without the role
        content = message.get("content")
        if content is None:
            message["content"] = ""
        elif isinstance(content, list):
            kinds = {part.get("type") for part in content}
            if kinds - {"text"}:
                raise InvalidRequest(
                    f"The model '{model}' accepts text only, not "
                    f"{', '.join(sorted(str(k) for k in kinds - {'text'}))} content "
                    f"(messages[{index}].content).",
                    param=f"messages[{index}].content",
                )
            message["content"] = "".join(str(part.get("text", "")) for part in content)
        messages.append(message)
    return {**body, "messages": messages}
