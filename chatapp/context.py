"""Fit a conversation into the model's context window: the system prompt, a summary of what
no longer fits (when there is one), and the most recent messages that fit in the window minus
the output reserve."""

from __future__ import annotations

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
    return Prompt(head + kept, list(history[: len(history) - len(kept)]), used)
