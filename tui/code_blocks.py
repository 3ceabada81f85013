"""The code blocks of an answer, parsed as the Markdown widget parses them (for copying)."""

from __future__ import annotations

from markdown_it import MarkdownIt

__all__ = ["code_blocks"]

_PARSER = MarkdownIt("gfm-like")


def code_blocks(markdown: str) -> list[str]:
    """Each fenced (or indented) code block's text, in order, without its fences."""
    return [
        token.content for token in _PARSER.parse(markdown) if token.type in ("fence", "code_block")
    ]
