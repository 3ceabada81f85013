"""The server's log lines written by a thread of their own.

A write to stdout blocks whenever whoever reads it falls behind (a terminal, journald, a pipe
into `tee`), and a gateway writes a line for every request from its event loop: a slow reader
would stop every stream with it. Here the loop only puts the record on a queue; one thread
formats and writes every line, in the order they were logged. If the reader stops altogether,
the queue fills and lines are dropped, then counted in a warning once there is room again:
the gateway's service never waits for its log.
"""

from __future__ import annotations

import copy
import logging
import queue
from collections.abc import Sequence
from logging.handlers import QueueHandler, QueueListener

__all__ = ["CAPACITY", "LogThread"]

CAPACITY = 10_000  # lines waiting, at most: seconds of a busy gateway's access log


class LogThread:
    """Records of the loggers it is fed, handed on a thread to `handlers` (each writes those
    its own filters let through); `filters` run first, on the caller's thread, where they can
    read its context (the request id)."""

    def __init__(
        self,
        *handlers: logging.Handler,
        filters: Sequence[logging.Filter] = (),
        capacity: int = CAPACITY,
    ) -> None:
        self._waiting: queue.Queue[logging.LogRecord] = queue.Queue(capacity)
        self.handoff = _Handoff(self._waiting)
        for log_filter in filters:
            self.handoff.addFilter(log_filter)
        self._listener = _Listener(self._waiting, *handlers)
        self._listener.start()

    def feed(self, logger: logging.Logger) -> None:
        logger.addHandler(self.handoff)

    def waiting(self) -> int:
        """How many lines are queued, not yet written."""
        return self._waiting.qsize()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until what is queued is written (a few seconds at most: a reader that stopped
        reading would hold it up for good)."""
        self.handoff.note_dropped()
        waiting = self._waiting
        with waiting.all_tasks_done:
            waiting.all_tasks_done.wait_for(lambda: not waiting.unfinished_tasks, timeout)

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        self.handoff.note_dropped()
        self._listener.stop()


class _Handoff(QueueHandler):
    """Queues each record as it is, its message merged with its arguments; drops it when the
    queue is full, and says how many were dropped once one fits again."""

    def __init__(self, waiting: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(waiting)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Formatted on the thread, not here. QueueHandler's own prepare formats it now and
        # drops the exception, which the thread's formatter renders in its own way.
        record = copy.copy(record)
        record.msg, record.args = record.getMessage(), None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.note_dropped(raising=True)
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def note_dropped(self, *, raising: bool = False) -> None:
        """Queue the count of dropped lines, if any (queue.Full if it does not fit and
        `raising`)."""
        if not self.dropped:
            return
        text = f"{self.dropped} log line(s) dropped: the log's reader fell behind"
        note = logging.LogRecord("chatapp", logging.WARNING, __file__, 0, text, None, None)
        try:
            self.queue.put_nowait(note)
        except queue.Full:
            if raising:
                raise
            return
        self.dropped = 0


class _Listener(QueueListener):
    """QueueListener, with a stop that cannot hang on a reader that stopped reading."""

    def stop(self) -> None:
        """Write what waits, then end the thread; a few seconds at most (the thread is a
        daemon: it never holds up exit)."""
        thread, self._thread = self._thread, None  # type: ignore[has-type]
        try:
            self.queue.put(self._sentinel, timeout=5.0)  # type: ignore[attr-defined]
        except queue.Full:
            return
        if thread is not None:
            thread.join(timeout=5.0)
