"""With debug logging on, what each engine request carried and what came back, for
troubleshooting: the only log lines that hold what people typed, so only at debug level.

Every chat completion the gateway sends an engine goes through here (the API's, a
conversation's reply, a title or summary), one line for the request and one for its answer;
the request id comes with them, like every other line a request causes. At info level each
call is one level check, never the JSON work.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MAX_CHARS", "answered", "enabled", "finished", "sent"]

log = logging.getLogger("chatapp.engine")

# A prompt of a long conversation is most of a context window: each text is cut here, as
# vLLM's --max-log-len cuts its request lines.
MAX_CHARS = 10_000


def enabled() -> bool:
    return log.isEnabledFor(logging.DEBUG)


def sent(upstream: str, payload: Mapping[str, Any]) -> None:
    """The request as it goes to an engine: messages, tools and every parameter."""
    if enabled():
        log.debug("to %s: %s", upstream, _cut(json.dumps(payload, ensure_ascii=False)))


def answered(upstream: str, content: bytes) -> None:
    """A whole (non-streamed) answer: the engine's JSON as it came."""
    if enabled():
        log.debug("from %s: %s", upstream, _cut(content.decode("utf-8", "replace")))


def finished(
    upstream: str,
    pieces: Sequence[str],
    *,
    finish_reason: str | None,
    usage: Mapping[str, Any] | None,
    outcome: str,
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """A streamed answer's text as the engine sent it (so far, when it was cut short), with
    the engine's usage ("none" from llama-cpp-python, which streams none: the gateway counts)."""
    if enabled():
        how = f"finish_reason {finish_reason}"
        if not finish_reason:  # the client left, or the engine stopped without finishing
            how = "failed" if outcome == "error" else "cut short"
        log.debug(
            "from %s, streamed, %s, usage %s: %s",
            upstream,
            how,
            json.dumps(usage, separators=(",", ":")) if usage else "none",  # no ": " in it
            _cut(json.dumps("".join(pieces), ensure_ascii=False)),
        )
        if tool_calls:  # a line of their own: their arguments are JSON text, ": " and all
            calls = json.dumps(tool_calls, ensure_ascii=False)
            log.debug("from %s, streamed, tool calls: %s", upstream, _cut(calls))


def _cut(text: str) -> str:
    if len(text) <= MAX_CHARS:
        return text
    return f"{text[:MAX_CHARS]}… ({len(text) - MAX_CHARS:,} more characters)"
