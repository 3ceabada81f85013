"""Markdown as one widget of lines: headings, lists, tables and highlighted code, drawn by Rich.

Textual's Markdown widget makes a widget of every block (a list item, a table cell), and every
layout of the screen visits them all: a 2,000-token answer is a thousand widgets and 100 ms a
frame. Here an answer is one widget. Its text is split into top-level blocks as it grows; a
block that another has followed is finished and drawn once (per width and theme), so an append
re-parses and re-draws only the last block, never the whole answer.
"""

from __future__ import annotations

from itertools import pairwise

from markdown_it import MarkdownIt
from rich.color import Color as RichColor
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markdown import Heading, Markdown
from rich.segment import Segment
from rich.theme import Theme
from textual.color import Color
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

__all__ = ["MarkdownText", "block_starts"]

# The blocks Rich's Markdown sees: the same parser and extensions.
_PARSER = MarkdownIt().enable("strikethrough").enable("table")


def block_starts(source: str) -> list[int]:
    """Where each top-level block of `source` begins, as offsets into it (the first is 0)."""
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    starts = sorted(
        {token.map[0] for token in _PARSER.parse(source) if token.level == 0 and token.map}
    )
    return [0, *(offsets[line] for line in starts[1:])]


def _blank(line: list[Segment], background: RichColor | None) -> bool:
    """Nothing to see: only spaces on the widget's own background (a code block's padding has
    another)."""
    return all(
        not seg.text.strip() and (seg.style is None or seg.style.bgcolor in (None, background))
        for seg in line
    )


class _Heading(Heading):
    """Headings flush left (Rich centres h1), like the rest of the chat."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        text = self.text.copy()
        text.justify = "left"
        yield text


class _Markdown(Markdown):
    elements = {**Markdown.elements, "heading_open": _Heading}


def _theme(variables: dict[str, str]) -> Theme:
    """Rich's markdown styles in the colours of the app's theme."""

    def color(name: str) -> str:
        background = Color.parse(variables.get("background", "#000000"))
        return (background + Color.parse(variables.get(name, "#808080"))).hex6

    primary, accent, muted = color("text-primary"), color("text-accent"), color("foreground-muted")
    return Theme(
        {
            "markdown.h1": f"bold underline {primary}",
            "markdown.h2": f"bold {primary}",
            "markdown.h3": f"bold {color('text-secondary')}",
            "markdown.h4": "bold italic",
            "markdown.h5": "italic",
            "markdown.h6": f"italic {muted}",
            "markdown.code": f"bold {accent} on {color('surface')}",
            "markdown.block_quote": f"italic {muted}",
            "markdown.item.bullet": f"bold {accent}",
            "markdown.item.number": f"bold {accent}",
            "markdown.hr": muted,
            "markdown.link": f"underline {primary}",
            "markdown.link_url": muted,
            "markdown.table.border": muted,
            "markdown.table.header": "bold",
        }
    )


class MarkdownText(Widget):
    """Markdown source, shown as lines; `append` adds to it (streaming), `update` replaces it."""

    DEFAULT_CSS = """
    MarkdownText {
        height: auto;
    }
    """

    def __init__(self, source: str = "", *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self._done: list[str] = []  # the finished blocks' sources
        self._tail = source  # the last block (and what came after it), still growing
        self._split_pending = bool(source)
        self._key: tuple[int, str] | None = None  # width and theme the lines below are for
        self._done_lines: list[Strip] = []  # the finished blocks drawn, for _key
        self._drawn = 0  # how many finished blocks are in _done_lines
        self._tail_lines: list[Strip] | None = None  # None: to be drawn again
        self._styles: Theme | None = None  # Rich's markdown styles for the current theme

    @property
    def source(self) -> str:
        return "".join(self._done) + self._tail

    def append(self, text: str) -> None:
        """Add text at the end; it is drawn with the next frame."""
        if text:
            self._tail += text
            self._split_pending, self._tail_lines = True, None
            self.refresh(layout=True)

    def update(self, source: str) -> None:
        """Replace the whole text."""
        self._done, self._tail, self._key = [], source, None
        self._split_pending, self._tail_lines = True, None
        self.refresh(layout=True)

    def _split(self) -> None:
        """Move the tail's blocks that another block follows to the finished ones."""
        self._split_pending = False
        starts = block_starts(self._tail)
        if len(starts) > 1:
            self._done.extend(self._tail[a:b] for a, b in pairwise(starts))
            self._tail = self._tail[starts[-1] :]

    def lines(self, width: int) -> tuple[list[Strip], list[Strip]]:
        """The finished blocks' lines and the last block's, drawn `width` cells wide."""
        key = (width, self.app.theme)
        if key != self._key:
            self._key, self._done_lines, self._drawn, self._tail_lines = key, [], 0, None
            self._styles = _theme(self.app.theme_variables)
        if self._split_pending:
            self._split()
        while self._drawn < len(self._done):
            self._done_lines.extend(self._draw(self._done[self._drawn], width, self._drawn > 0))
            self._drawn += 1
        if self._tail_lines is None:
            self._tail_lines = self._draw(self._tail, width, bool(self._done))
        return self._done_lines, self._tail_lines

    def _draw(self, source: str, width: int, gap: bool) -> list[Strip]:
        """One block (or the tail) as lines, after a blank line when it is not the first."""
        if not source.strip() or width <= 0:
            return []
        dark = self.app.current_theme.dark
        markdown = _Markdown(source, code_theme="monokai" if dark else "friendly", hyperlinks=False)
        console = self.app.console
        style = self.rich_style
        options = console.options.update(width=width, height=None, highlight=False)
        with console.use_theme(self._styles or _theme(self.app.theme_variables)):
            rendered = console.render_lines(markdown, options, style=style, pad=False)
        # Rich puts empty lines around some blocks (lists, tables); the gaps are ours to make.
        while rendered and _blank(rendered[0], style.bgcolor):
            rendered.pop(0)
        while rendered and _blank(rendered[-1], style.bgcolor):
            rendered.pop()
        strips = [Strip(line).adjust_cell_length(width, style) for line in rendered]
        return [Strip.blank(width, style), *strips] if gap and strips else strips

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        done, tail = self.lines(width)
        return len(done) + len(tail)

    def render_line(self, y: int) -> Strip:
        width = self.content_region.width
        done, tail = self.lines(width)
        if y < len(done):
            return done[y]
        if y - len(done) < len(tail):
            return tail[y - len(done)]
        return Strip.blank(width, self.rich_style)
