"""Measure the chat client's targets: start to interactive, a 5,000-conversation sidebar, and the
render lag of a 2,000-token Markdown answer streamed at 200 tokens/s.

Run as `.venv/bin/python bench/tui_bench.py` (about 30 s; `--quick` for a smoke run). The app
runs headless (Textual's run_test: every layout and frame is computed, only the bytes to a
terminal are skipped) against a stub of the server's API, so the numbers are the client's own
cost. One more measure runs the installed `chatapp chat` for real in a tmux terminal, against a
stub HTTP server, from the Enter that starts it until the screen shows the conversation list.

Stalls are measured by a task that asks the event loop to wake it every 5 ms: a key press waits
as long as the worst gap past those 5 ms, so that gap is the input latency the work adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import textual
from report import Row, console_for, percentile, print_facts, print_table

from tui.api import ChatApi, Endpoint
from tui.app import ChatApp
from tui.data import (
    ChatMessage,
    Completed,
    Conversation,
    Delta,
    ModelInfo,
    Page,
    Started,
    StreamEvent,
)
from tui.screens.main import MainScreen
from tui.widgets.markdown_text import MarkdownText
from tui.widgets.message import MessageView

TICK = 0.005  # the stall monitor's period


@dataclass(frozen=True)
class Sizes:
    """How many starts, conversations and tokens; `--quick` shrinks them for a smoke run."""

    starts: int
    conversations: int
    tokens: int
    terminal_starts: int


FULL = Sizes(starts=5, conversations=5_000, tokens=2_000, terminal_starts=5)
QUICK = Sizes(starts=2, conversations=500, tokens=300, terminal_starts=1)


def conversation(i: int) -> dict[str, Any]:
    return {"id": f"c{i:05d}", "title": f"Conversation {i:05d}", "model": "smollm2"}


class StubApi(ChatApi):
    """The server's answers, made up and instant: `count` conversations in pages, one model,
    and a reply that streams `answer` at `rate` tokens a second."""

    def __init__(self, count: int = 3, pieces: list[str] | None = None, rate: float = 200) -> None:
        super().__init__(Endpoint("http://127.0.0.1:8000", "ca-bench"))
        self.count = count
        self.pieces = pieces or []
        self.rate = rate
        self.arrivals: list[float] = []  # when each piece was handed to the app

    async def conversations(
        self, *, cursor: str | None = None, limit: int = 50, archived: bool = False
    ) -> Page[Conversation]:
        start = int(cursor or 0)
        end = min(start + limit, self.count)
        items = [Conversation.of(conversation(i)) for i in range(start, end)]
        return Page(items, str(end) if end < self.count else None)

    async def messages(
        self, cid: str, *, before: str | None = None, limit: int = 30
    ) -> Page[ChatMessage]:
        return Page([], None)

    async def siblings(self, cid: str, mid: str) -> list[ChatMessage]:
        return []

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo("smollm2", 8192)]

    async def usage(self) -> dict[str, Any]:
        return {"remaining": {}}

    async def create(self, **fields: Any) -> Conversation:
        return Conversation("new", None, "smollm2")

    def send(
        self,
        cid: str,
        content: str,
        *,
        parent_id: str | None = None,
        branch: bool = False,
        **p: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        return self._stream(cid)

    async def _stream(self, cid: str) -> AsyncGenerator[StreamEvent, None]:
        yield Started(1, cid, "m2", "m1", "smollm2")
        start = time.perf_counter()
        for i, piece in enumerate(self.pieces):
            due = start + i / self.rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            self.arrivals.append(time.perf_counter())
            yield Delta(i + 2, piece)
        usage = {"prompt_tokens": 20, "completion_tokens": len(self.pieces), "total_tokens": 0}
        yield Completed(len(self.pieces) + 2, "m2", "complete", "".join(self.pieces), usage)


@dataclass
class StallMonitor:
    """Wakes every TICK; records how late each wake-up was (the event loop's stalls)."""

    gaps: list[float] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            self.gaps.append(max(0.0, now - last - TICK))
            last = now

    def __enter__(self) -> StallMonitor:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def until(check: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise TimeoutError("the app did not get there")
        await asyncio.sleep(0.001)


def main_screen(app: ChatApp) -> MainScreen:
    screen = app.screen_stack[0]
    assert isinstance(screen, MainScreen)
    return screen


# -- (a) start to interactive ------------------------------------------------------------------


async def start_in_process(settings: Path) -> float:
    """Seconds from ChatApp.run_test() to the sidebar listing the first page."""
    start = time.perf_counter()
    app = ChatApp(StubApi(count=50), settings=settings)
    async with app.run_test(size=(100, 32)):
        sidebar = main_screen(app).sidebar
        await until(lambda: sidebar.options.option_count == 50)
        return time.perf_counter() - start


def import_seconds() -> float:
    """A fresh interpreter's time to import the CLI and the app (what `chatapp chat` loads)."""
    code = (
        "import time; t = time.perf_counter(); import cli.main, tui.app; "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


class StubHandler(BaseHTTPRequestHandler):
    """The few GET routes `chatapp chat` calls on start, answered from memory."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/v1/conversations"):
            body: Any = {"data": [conversation(i) for i in range(50)], "next_cursor": None}
        elif self.path.startswith("/v1/models"):
            body = {"data": [{"id": "smollm2", "context_window": 8192, "ready": True}]}
        elif self.path.startswith("/v1/usage"):
            body = {"remaining": {}}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_in_terminal(url: str, settings: Path, run: int) -> float:
    """Seconds from Enter on `chatapp chat` in a tmux terminal to the list and key hints on its
    screen (tmux itself is started first, and not timed)."""
    chatapp = Path(sys.executable).parent / "chatapp"
    tmux = ["tmux", "-L", f"chatapp-bench-{os.getpid()}-{run}"]  # a fresh tmux server each
    env = {**os.environ, "CHATAPP_TUI_CONFIG": str(settings), "TERM": "xterm-256color"}
    command = f"read go; exec {chatapp} --url {url} --key ca-bench chat"
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "b", "-x", "100", "-y", "30", "sh", "-c", command],
        env=env,
        check=True,
    )
    try:
        time.sleep(0.5)  # the shell is up and waiting
        start = time.perf_counter()
        subprocess.run([*tmux, "send-keys", "-t", "b", "Enter"], check=True)
        while time.perf_counter() - start < 30:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "b"], capture_output=True, text=True
            ).stdout
            if "Conversation 00000" in screen and "Help" in screen:
                return time.perf_counter() - start
            time.sleep(0.01)
        raise TimeoutError("chatapp chat did not draw its screen in 30 s")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


# -- (b) a sidebar of thousands ----------------------------------------------------------------


async def big_sidebar(count: int, settings: Path) -> dict[str, float]:
    """Drag a list of `count` conversations to its end again and again (each time the next
    page loads), then scroll about it with keys; the event loop's stalls meanwhile."""
    app = ChatApp(StubApi(count=count), settings=settings)
    async with app.run_test(size=(100, 32)) as pilot:
        sidebar = main_screen(app).sidebar
        view = sidebar.options
        await until(lambda: view.option_count == 50)
        view.focus()
        start = time.perf_counter()
        with StallMonitor() as loading:
            while view.option_count < count:
                view.scroll_end(animate=False)  # as dragging the scrollbar down does
                await asyncio.sleep(0.001)
        loaded = time.perf_counter() - start
        assert sidebar.listed == [f"c{i:05d}" for i in range(count)], "each once, in order"
        with StallMonitor() as scrolling:
            await pilot.press("home", *["down"] * 30)
            assert view.highlighted == 30, "every key press arrived"
            await pilot.press(*["pagedown"] * 20, "end", *["pageup"] * 20)
    load_gaps, scroll_gaps = sorted(loading.gaps), sorted(scrolling.gaps)
    return {
        "loaded": loaded,
        "load_p99": percentile(load_gaps, 99),
        "load_max": load_gaps[-1],
        "scroll_p99": percentile(scroll_gaps, 99),
        "scroll_max": scroll_gaps[-1],
    }


# -- (c) streamed render lag -------------------------------------------------------------------

SECTION = """## Step {n}: set up the service

Install the package, then check the version:

- download the **wheel** for your platform
- run `pip install chatapp` in a fresh virtual environment
- start it with `chatapp serve` and open the port

| setting | default | meaning |
| --- | --- | --- |
| port | 8000 | where it listens |
| workers | 2 | engines per model |

```python
def handler(request):
    body = request.json()
    return {{"ok": True, "echo": body, "step": {n}}}
```

1. read the logs
2. watch the queue depth, which should stay small under normal load
3. move on to the next step

"""


def answer_pieces(tokens: int) -> list[str]:
    """A long Markdown answer cut into LLM-sized pieces (a word and its spaces, or a symbol)."""
    text = "".join(SECTION.format(n=n) for n in range(1, tokens // 60 + 3))
    pieces = re.findall(r"\s*\w+|\s*[^\w\s]|\s+", text)
    return pieces[:tokens]


async def render_lag(tokens: int, settings: Path) -> dict[str, float]:
    """Stream `tokens` pieces at 200/s through the app's own path (the reply's worker, its
    messages, the MessageView's MarkdownText) and time each piece from its arrival to the end
    of the first frame drawn after it reached the widget."""
    pieces = answer_pieces(tokens)
    api = StubApi(pieces=pieces)
    app = ChatApp(api, settings=settings)
    appended: list[tuple[float, int]] = []  # (when a piece reached the widget, its length then)
    frames: list[tuple[float, float]] = []  # (when a frame was done, how long it took)
    append = MarkdownText.append

    def recorded_append(widget: MarkdownText, text: str) -> None:
        append(widget, text)
        appended.append((time.perf_counter(), len(widget.source)))

    async with app.run_test(size=(100, 32)):
        screen = main_screen(app)
        refresh = screen._compositor_refresh

        def timed_refresh() -> None:
            begun = time.perf_counter()
            refresh()
            done = time.perf_counter()
            frames.append((done, done - begun))

        screen._compositor_refresh = timed_refresh  # type: ignore[method-assign]
        MarkdownText.append = recorded_append  # type: ignore[assignment,method-assign]
        try:
            with StallMonitor() as streaming:
                screen.send("go")  # as Enter in the composer does (a pilot press waits for idle)
                await until(lambda: screen.chat.last("assistant") is not None)
                view = screen.chat.last("assistant")
                assert isinstance(view, MessageView)
                await until(lambda: view.reply is not None and view.reply.done, timeout=tokens)
                await asyncio.sleep(0.2)
        finally:
            MarkdownText.append = append  # type: ignore[method-assign]
        final = view.text
    assert final == "".join(pieces), "the answer on screen is the whole answer, once"
    # Each piece: the first append after which the widget held it, then the next frame's end.
    ends, total = [], 0
    for piece in pieces:
        total += len(piece)
        ends.append(total)
    lags: list[float] = []
    a = f = 0
    for arrival, end in zip(api.arrivals, ends, strict=True):
        while appended[a][1] < end:
            a += 1
        while f < len(frames) and frames[f][0] < appended[a][0]:
            f += 1
        lags.append(frames[f][0] - arrival)
    quarter = len(lags) // 4
    ordered = sorted(lags)
    durations = sorted(d for _, d in frames)
    gaps = sorted(streaming.gaps)
    return {
        "tokens": len(lags),
        "rate": (len(api.arrivals) - 1) / (api.arrivals[-1] - api.arrivals[0]),
        "lag_p50": percentile(ordered, 50),
        "lag_p99": percentile(ordered, 99),
        "lag_max": ordered[-1],
        "first_quarter": statistics.median(lags[:quarter]),
        "last_quarter": statistics.median(lags[-quarter:]),
        "catch_up": lags[-1],
        "frames": len(frames),
        "frame_p50": percentile(durations, 50),
        "frame_p99": percentile(durations, 99),
        "stall_p99": percentile(gaps, 99),
    }


# -- the report -------------------------------------------------------------------------------


def terminal_starts(sizes: Sizes, settings: Path) -> list[float] | None:
    if shutil.which("tmux") is None:
        return None
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        return [start_in_terminal(url, settings, run) for run in range(sizes.terminal_starts)]
    finally:
        server.shutdown()


async def measure(sizes: Sizes, settings: Path) -> list[Row]:
    starts = [await start_in_process(settings) for _ in range(sizes.starts)]
    listed = statistics.median(starts)
    imports = import_seconds()
    real = terminal_starts(sizes, settings)
    side = await big_sidebar(sizes.conversations, settings)
    lag = await render_lag(sizes.tokens, settings)
    n = f"{sizes.conversations:,}"
    rows = [
        Row(
            "start: ChatApp run_test() to the sidebar listed (median; first)",
            f"{ms(listed)}; {ms(starts[0])}",
            "< 1 s",
            max(listed, starts[0]) < 1,
        ),
        Row("start: import cli.main + tui.app, fresh interpreter", ms(imports)),
    ]
    if real is None:
        rows.append(Row("start: `chatapp chat` in tmux to the list drawn", "skipped (no tmux)"))
    else:
        middle, worst = statistics.median(real), max(real)
        rows.append(
            Row(
                f"start: `chatapp chat` in tmux to the list drawn (median, worst of {len(real)})",
                f"{ms(middle)}, {ms(worst)}",
                "< 1 s",
                middle < 1,
            )
        )
    rows += [
        Row(f"sidebar: drag to the end until all {n} are in", f"{side['loaded']:.1f} s"),
        Row(
            "sidebar: event-loop stall while pages load (p99 / max)",
            f"{ms(side['load_p99'])} / {ms(side['load_max'])}",
            "p99 < 50 ms",
            side["load_p99"] < 0.05,
        ),
        Row(
            f"sidebar: stall while paging about {n} with keys (p99 / max)",
            f"{ms(side['scroll_p99'])} / {ms(side['scroll_max'])}",
            "p99 < 50 ms",
            side["scroll_p99"] < 0.05,
        ),
        Row(
            f"stream: {lag['tokens']:,} tokens at {lag['rate']:.0f}/s, lag to frame p50 / p99",
            f"{ms(lag['lag_p50'])} / {ms(lag['lag_p99'])}",
            "p99 < 100 ms",
            lag["lag_p99"] < 0.1,
        ),
        Row(
            "stream: lag, median of first / last quarter",
            f"{ms(lag['first_quarter'])} / {ms(lag['last_quarter'])}",
            "no growth (< 2x)",
            lag["last_quarter"] < 2 * max(lag["first_quarter"], 0.005),
        ),
        Row("stream: last token to its frame (catch-up)", ms(lag["catch_up"])),
        Row(
            "stream: frames drawn, and their time p50 / p99",
            f"{lag['frames']:,}: {ms(lag['frame_p50'])} / {ms(lag['frame_p99'])}",
        ),
        Row("stream: event-loop stall p99", ms(lag["stall_p99"])),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory() as folder:
        settings = Path(folder) / "tui.toml"  # never the user's own settings
        rows = asyncio.run(measure(sizes, settings))
    console = console_for(120)
    print_facts(console, f"textual {textual.__version__}", quick=args.quick)
    print_table(console, "chat client (headless Textual, stub API)", rows)


if __name__ == "__main__":
    main()
