"""Fit a conversation into the model's context window: the system prompt, a summary of what
no longer fits (when there is one), and the most recent messages that fit in the window minus
the output reserve."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatapp.errors import InvalidRequest
from chatapp.token_count import TokenCounter

__all__ = ["PER_MESSAGE", "SUMMARY_PREFIX", "Prompt", "fit_prompt"]

PER_MESSAGE = 4  # role markers and separators around each message, as OpenAI counts them
SUMMARY_PREFIX = "Summary of the earlier part of this conversation: "


@dataclass(frozen=True)
class Prompt:
    """The messages to send, the older ones that did not fit, and whether a summary stood in."""

    messages: list[dict[str, str]]
    dropped: list[Mapping[str, Any]] = field(default_factory=list)
    tokens: int = 0
    summarized: bool = False


def fit_prompt(
    system_prompt: str | None,
    history: Sequence[Mapping[str, Any]],
    counter: TokenCounter,
    *,
    context_window: int,
    output_reserve: int,
    summary: str | None = None,
    summary_through: str | None = None,
) -> Prompt:
    """The longest recent part of `history` that fits, after the system prompt.

    Each message costs its text's tokens plus PER_MESSAGE. The newest message always goes (the
    question being asked); if it alone does not fit, that is the client's error to fix. When
    turns are dropped and `summary` covers some of them (through message `summary_through`),
    it goes in as a system message and the turns are fitted again around it.
    """
    head: list[dict[str, str]] = []
    if system_prompt:
        head.append({"role": "system", "content": system_prompt})
    prompt = _fit(head, history, counter, context_window - output_reserve)
    dropped_ids = {m.get("id") for m in prompt.dropped}
    if summary and prompt.dropped and summary_through in dropped_ids:
        note = {"role": "system", "content": SUMMARY_PREFIX + summary}
        with_summary = _fit([*head, note], history, counter, context_window - output_reserve)
        return Prompt(with_summary.messages, with_summary.dropped, with_summary.tokens, True)
    return prompt


def _fit(
    head: list[dict[str, str]],
    history: Sequence[Mapping[str, Any]],
    counter: TokenCounter,
    budget: int,
) -> Prompt:
    used = sum(counter.count(m["content"]) + PER_MESSAGE for m in head)
    kept: list[dict[str, Any]] = []
    for message in reversed(history):
        cost = _cost(message, counter)
        if used + cost > budget:
            if not kept:
                raise InvalidRequest(
                    f"The message needs about {used + cost} tokens with the system prompt, but "
                    f"the model's window leaves {budget} for input: shorten it.",
                    param="content",
                )
            break
        kept.append(_as_prompt(message))
        used += cost
    kept.reverse()
    # A tool result whose call was cut off would make engines refuse the prompt: drop it too.
    while len(kept) > 1 and kept[0]["role"] == "tool":
        used -= _cost(kept.pop(0), counter)
    return Prompt(head + kept, list(history[: len(history) - len(kept)]), used)


def _cost(message: Mapping[str, Any], counter: TokenCounter) -> int:
    calls = message.get("tool_calls")
    extra = counter.count(json.dumps(calls)) if calls else 0
    return counter.count(message["content"]) + extra + PER_MESSAGE


def _as_prompt(message: Mapping[str, Any]) -> dict[str, Any]:
    """A stored message as the engine reads it: tool calls and the call a result answers."""
    prompt: dict[str, Any] = {"role": message["role"], "content": message["content"]}
    if message.get("tool_calls"):
        prompt["tool_calls"] = message["tool_calls"]
    if message.get("tool_call_id"):
        prompt["tool_call_id"] = message["tool_call_id"]
    return prompt
