"""Count tokens for engines that do not report usage (llama-cpp-python's server on streams).

The count uses the model's own tokenizer and chat template, loaded vocabulary-only from its GGUF
file inside the gateway (a few MB, ~0.1 s), so it matches what the engine counts without queuing
behind its single generation slot; callers run it in a worker thread, off the event loop.
Upstreams with no tokenizer at hand fall back to a 4-characters-a-token estimate.
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
# Texts whose counts a tokenizer remembers (keyed by length and hash: a few MB at most).
_KNOWN_TEXTS = 16_384


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...

    def count_prompt(self, messages: Sequence[Mapping[str, Any]]) -> int: ...


class CharEstimate:
    """About four characters a token: better than reporting zero usage."""

    def count(self, text: str) -> int:
        return (len(text) + 3) // 4

    def count_prompt(self, messages: Sequence[Mapping[str, Any]]) -> int:
        return _estimate_prompt(self, messages)


def _estimate_prompt(counter: TokenCounter, messages: Sequence[Mapping[str, Any]]) -> int:
    """Message texts plus OpenAI's rule of thumb for the template around them."""
    text = sum(counter.count(message_text(m)) for m in messages)
    return text + _PER_MESSAGE * len(messages) + _PRIMER


class GgufTokenizer:
    """The tokenizer inside a GGUF file, loaded on first use, vocabulary only.

    Each text's count is remembered: a conversation's prompt is fitted to the window anew at
    every turn, on the event loop, and tokenizing costs ~0.3 ms a 500-character message here
    (2.6 ms for 5,000), so a long history cost every stream milliseconds at each turn, and
    more while a usage count in a worker thread held the tokenizer.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._model: Any = None
        self._template: Any = None
        self._fallback = CharEstimate()
        self._lock = threading.Lock()
        self._known: dict[tuple[int, int], int] = {}

    def _load(self) -> Any:
        try:
            import llama_cpp
            from llama_cpp._internals import LlamaModel
        except ImportError:
            return None
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        try:
            model = LlamaModel(path_model=str(self.path), params=params, verbose=False)
        except (OSError, ValueError):
            return None
        template = model.metadata().get("tokenizer.chat_template")
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._template = Jinja2ChatFormatter(
                template=template,
                bos_token=model.token_get_text(model.token_bos()),
                eos_token=model.token_get_text(model.token_eos()),
            )
        return model

    def _tokens(self, text: str) -> int:
        if self._model is None:
            self._model = self._load() or False
        if not self._model:
            return self._fallback.count(text)
        data = text.encode("utf-8", "replace")
        return len(self._model.tokenize(data, add_bos=False, special=True))

    def count(self, text: str) -> int:
        if not text:
            return 0
        key = (len(text), hash(text))
        known = self._known.get(key)
        if known is not None:
            return known
        with self._lock:
            tokens = self._tokens(text)
        if len(self._known) >= _KNOWN_TEXTS:
            self._known.clear()  # rarely: the live conversations' texts come back in a turn
        self._known[key] = tokens
        return tokens

    def count_prompt(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """The prompt exactly as the engine builds it: the chat template applied, then counted."""
        with self._lock:
            self._tokens("")  # loads the model and its template on first use
            if self._template is not None:
                try:
                    prompt = self._template(messages=[dict(m) for m in messages]).prompt
                except Exception:  # noqa: BLE001 - a template error must not lose the count
                    prompt = None
                if prompt is not None:
                    return self._tokens(prompt)
        return _estimate_prompt(self, messages)


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message whether content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def count_usage(
    counter: TokenCounter, messages: Sequence[Mapping[str, Any]], completion: str
) -> dict[str, int]:
    """An OpenAI `usage` object for an answer; blocking, so run it in a worker thread."""
    prompt = counter.count_prompt(messages)
    output = counter.count(completion)
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
