"""Count usage for engines that stream without it (llama-cpp-python's), with their tokenizer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

__all__ = ["count_usage", "message_text"]

# Per-message template tokens (role markers, separators) and the assistant primer, as in
# OpenAI's own counting guide; the engine's tokenizer counts the text itself.
_PER_MESSAGE = 4
_PRIMER = 3


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message whether content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return ""


async def _count(client: httpx.AsyncClient, root: str, headers: dict[str, str], text: str) -> int:
    if not text:
        return 0
    try:
        response = await client.post(
            f"{root}/extras/tokenize/count", json={"input": text}, headers=headers, timeout=10.0
        )
        response.raise_for_status()
        return int(response.json()["count"])
    except (httpx.HTTPError, KeyError, ValueError, TypeError):
        # The engine is gone or has no tokenizer route: a rough 4-characters-a-token estimate
        # still beats reporting zero usage.
        return max(1, len(text) // 4)


async def count_usage(
    client: httpx.AsyncClient,
    base_url: str,
    headers: dict[str, str],
    messages: Sequence[Mapping[str, Any]],
    completion: str,
) -> dict[str, int]:
    """An OpenAI `usage` object for a finished stream, counted by the engine's own tokenizer."""
    root = base_url.removesuffix("/v1")
    prompt_text = "\n".join(message_text(m) for m in messages)
    prompt, output = await asyncio.gather(
        _count(client, root, headers, prompt_text),
        _count(client, root, headers, completion),
    )
    prompt += _PER_MESSAGE * len(messages) + _PRIMER
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
