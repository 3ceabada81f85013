"""Count tokens for engines that do not report usage (llama-cpp-python's server on streams).

The count uses the model's own tokenizer, loaded vocabulary-only from its GGUF file inside the
gateway (a few MB, ~0.1 s), so counting never queues behind the engine's single generation
slot; callers run it in a worker thread, off the event loop. Upstreams with no tokenizer at
hand fall back to a 4-characters-a-token estimate.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["CharEstimate", "GgufTokenizer", "TokenCounter", "count_usage", "message_text"]

# Per-message template tokens (role markers, separators) and the assistant primer, as in
# OpenAI's own counting guide; the tokenizer counts the text itself.
_PER_MESSAGE = 4
_PRIMER = 3


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


class CharEstimate:
    """About four characters a token: better than reporting zero usage."""

    def count(self, text: str) -> int:
        return (len(text) + 3) // 4


class GgufTokenizer:
    """The tokenizer inside a GGUF file, loaded on first use, vocabulary only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._model: Any = None
        self._fallback = CharEstimate()
        self._lock = threading.Lock()

    def _load(self) -> Any:
        try:
            import llama_cpp
            from llama_cpp._internals import LlamaModel
        except ImportError:
            return None
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        try:
            return LlamaModel(path_model=str(self.path), params=params, verbose=False)
        except (OSError, ValueError):
            return None

    def count(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            if self._model is None:
                self._model = self._load() or False
            if not self._model:
                return self._fallback.count(text)
            return len(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message whether content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return ""


def count_usage(
    counter: TokenCounter, messages: Sequence[Mapping[str, Any]], completion: str
) -> dict[str, int]:
    """An OpenAI `usage` object for an answer; blocking, so run it in a worker thread."""
    prompt = sum(counter.count(message_text(m)) for m in messages)
    prompt += _PER_MESSAGE * len(messages) + _PRIMER
    output = counter.count(completion)
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
