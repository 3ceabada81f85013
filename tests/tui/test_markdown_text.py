"""MarkdownText: blocks are found as Rich's Markdown finds them, and a streamed answer draws
each finished block once, ending exactly as the whole text drawn at once."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll

from tui.widgets.markdown_text import MarkdownText, block_starts

ANSWER = """# Plan

Some words, then a list:

- one
- two

  still item two, after a blank line

| a | b |
| --- | --- |
| 1 | 2 |

```python
x = 1

y = 2
```

> quoted

Done.
"""


def test_blocks_are_the_top_level_ones() -> None:
    starts = block_starts(ANSWER)
    blocks = [ANSWER[a:b] for a, b in zip(starts, [*starts[1:], len(ANSWER)], strict=True)]
    assert "".join(blocks) == ANSWER
    heads = [b.lstrip("\n").split("\n")[0] for b in blocks]
    assert heads == [
        "# Plan",
        "Some words, then a list:",
        "- one",
        "| a | b |",
        "```python",
        "> quoted",
        "Done.",
    ]
    assert block_starts("```\nopen fence\n\nstill code") == [0]  # unclosed: one block to the end


class Shows(App[None]):
    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield MarkdownText(classes="streamed")
            yield MarkdownText(ANSWER, classes="whole")


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources MarkdownText draws, in order."""
    calls: list[str] = []
    draw = MarkdownText._draw

    def recorded(self: MarkdownText, source: str, width: int, gap: bool) -> object:
        if self.has_class("streamed"):
            calls.append(source)
        return draw(self, source, width, gap)

    monkeypatch.setattr(MarkdownText, "_draw", recorded)
    return calls


async def test_a_streamed_answer_draws_finished_blocks_once(drawn: list[str]) -> None:
    app = Shows()
    async with app.run_test(size=(60, 60)) as pilot:
        streamed = app.query_one(".streamed", MarkdownText)
        whole = app.query_one(".whole", MarkdownText)
        for piece in re.findall(r"\s*\S+|\s+", ANSWER):
            streamed.append(piece)
            await pilot.pause()  # a frame between pieces: the worst case for drawing
        await pilot.pause()
        width = streamed.content_region.width
        assert streamed.source == ANSWER
        assert streamed.lines(width) == whole.lines(width)  # the same as drawn at once
    starts = block_starts(ANSWER)
    finished = [ANSWER[a:b] for a, b in zip(starts, starts[1:], strict=False)]
    counts = Counter(drawn)
    assert all(counts[block] == 1 for block in finished)  # drawn once, when it was finished
    assert max(len(source) for source in drawn) < len(ANSWER) / 2  # never the whole answer
