"""Fit a conversation into the model's context window: the system prompt plus the most recent
messages that fit in the window minus the output reserve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chatapp.errors import InvalidRequest
from chatapp.token_count import TokenCounter

__all__ = ["PER_MESSAGE", "Prompt", "fit_prompt"]

PER_MESSAGE = 4  # role markers and separators around each message, as OpenAI counts them


@dataclass(frozen=True)
class Prompt:
    """The messages to send, and how many older ones did not fit."""

    messages: list[dict[str, str]]
    dropped: int
    tokens: int


def fit_prompt(
    system_prompt: str | None,
    history: Sequence[Mapping[str, Any]],
    counter: TokenCounter,
    *,
    context_window: int,
    output_reserve: int,
) -> Prompt:
    """The longest recent part of `history` that fits, after the system prompt.

    Each message costs its text's tokens plus PER_MESSAGE. The newest message always goes (the
    question being asked); if it alone does not fit, that is the client's error to fix.
    """
    budget = context_window - output_reserve
    system: list[dict[str, str]] = []
    used = 0
    if system_prompt:
        system = [{"role": "system", "content": system_prompt}]
        used = counter.count(system_prompt) + PER_MESSAGE
    kept: list[dict[str, str]] = []
    for message in reversed(history):
        cost = counter.count(message["content"]) + PER_MESSAGE
        if used + cost > budget:
            if not kept:
                raise InvalidRequest(
                    f"The message needs about {used + cost} tokens with the system prompt, but "
                    f"the model's window leaves {budget} for input: shorten it.",
                    param="content",
                )
            break
        kept.append({"role": message["role"], "content": message["content"]})
        used += cost
    kept.reverse()
    return Prompt(system + kept, len(history) - len(kept), used)
