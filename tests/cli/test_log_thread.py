"""The server's log lines leave through a thread: a reader that stops never stops the caller."""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Iterator

import pytest

from cli.log_thread import LogThread


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    made = logging.getLogger(f"test.log_thread.{time.time_ns()}")
    made.setLevel(logging.INFO)
    made.propagate = False
    yield made
    made.handlers.clear()


class _Stamp(logging.Filter):
    """Stands for the request-id filter: it must run on the caller's thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.caller = threading.current_thread().name
        return True


def test_records_arrive_in_order_formatted_on_the_thread_with_the_callers_stamp(
    logger: logging.Logger,
) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s by %(caller)s"))
    thread = LogThread(handler, filters=[_Stamp()])
    thread.feed(logger)
    for n in range(200):
        logger.info("line %d of %s", n, "many")
    try:
        raise ValueError("kept")
    except ValueError:
        logger.exception("failed")
    thread.flush()  # as the server does at the end of its shutdown: everything is written
    lines = out.getvalue().splitlines()
    me = threading.current_thread().name
    assert lines[:200] == [f"line {n} of many by {me}" for n in range(200)]
    assert lines[200] == f"failed by {me}"
    assert "ValueError: kept" in out.getvalue()  # the traceback, rendered by the thread
    thread.stop()


def test_flush_waits_until_every_queued_line_is_written(logger: logging.Logger) -> None:
    written: list[str] = []

    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            time.sleep(0.005)
            written.append(record.getMessage())

    thread = LogThread(Slow())
    thread.feed(logger)
    for n in range(50):
        logger.info("line %d", n)
    assert len(written) < 50  # still being written
    thread.flush()
    assert written == [f"line {n}" for n in range(50)]
    thread.stop()


def test_a_reader_that_stops_reading_costs_lines_not_the_caller(logger: logging.Logger) -> None:
    read_end, write_end = os.pipe()
    writer = os.fdopen(write_end, "w", buffering=1)
    thread = LogThread(logging.StreamHandler(writer), capacity=100)
    thread.feed(logger)
    started = time.monotonic()
    for n in range(5_000):  # about 450 KB: several times what the pipe holds unread
        logger.info("line %04d %s", n, "x" * 80)
    assert time.monotonic() - started < 2.0  # with the write on this thread: stuck for good
    received: list[bytes] = []
    reader = threading.Thread(
        target=lambda: received.extend(iter(lambda: os.read(read_end, 65536), b""))
    )
    reader.start()
    deadline = time.monotonic() + 10
    while thread.waiting() and time.monotonic() < deadline:
        time.sleep(0.01)  # what waited is written, so there is room again
    logger.info("after the reader came back")
    thread.stop()
    writer.close()
    reader.join(timeout=10)
    os.close(read_end)
    text = b"".join(received).decode()
    assert "log line(s) dropped: the log's reader fell behind" in text
    assert text.rstrip().endswith("after the reader came back")
    numbers = [int(line.split()[1]) for line in text.splitlines() if line.startswith("line ")]
    assert numbers == sorted(numbers) and 100 <= len(numbers) < 5_000
