"""Titles written by a small model need cleaning; the question's words are the fallback."""

from __future__ import annotations

from chatapp.search import fts_query
from chatapp.titles import clean_title, fallback_title


def test_clean_title_keeps_the_first_line_without_quotes_or_labels() -> None:
    assert clean_title('Title: "Trip to Lisbon."\nMore text') == "Trip to Lisbon"
    assert clean_title("\n\n  **Budget planning**  ") == "Budget planning"
    assert len(clean_title("word " * 40)) <= 60


def test_fallback_title_is_the_first_words() -> None:
    assert fallback_title("Plan a trip to Lisbon in May please") == "Plan a trip to Lisbon in…"
    assert fallback_title("   ") == "New conversation"


def test_search_words_are_quoted_and_the_last_is_a_prefix() -> None:
    assert fts_query('zebra AND "stripes') == '"zebra" "AND" "stripes"'
    assert fts_query("zeb", prefix=True) == '"zeb"*'
