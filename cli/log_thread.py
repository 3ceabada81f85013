"""The server's log lines written by a thread of their own.

A write to stdout blocks whenever whoever reads it falls behind (a terminal, journald, a pipe
into `tee`), and a gateway writes a line for every request from its event loop: a slow reader
would stop every stream with it. Here the loop only puts the record on a queue; a thread
formats and writes it. If the reader stops altogether, the queue fills and lines are dropped,
then counted in a warning once there is room again: the gateway's service never waits for its
log.
"""

from __future__ import annotations

import copy
import logging
import queue
from logging.handlers import QueueHandler, QueueListener

__all__ = ["LogThread"]

CAPACITY = 10_000  # lines waiting, at most: seconds of a busy gateway's access log


class LogThread:
    """Records of one logger, handed to `handler` on a thread; `filters` run on the caller's
    thread first (they may read its context, such as the request id)."""

    def __init__(
        self,
        logger: logging.Logger,
        handler: logging.Handler,
        *filters: logging.Filter,
        capacity: int = CAPACITY,
    ) -> None:
        self._waiting: queue.Queue[logging.LogRecord] = queue.Queue(capacity)
        self.handoff = _Handoff(self._waiting)
        for each in filters:
            self.handoff.addFilter(each)
        logger.addHandler(self.handoff)
        self._listener = _Listener(self._waiting, handler)
        self._listener.start()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until what waits is written (a few seconds at most: a reader that stopped
        reading would hold it up for good)."""
        waiting = self._waiting
        with waiting.all_tasks_done:
            waiting.all_tasks_done.wait_for(lambda: not waiting.unfinished_tasks, timeout)

    def stop(self) -> None:
        """Write what waits, then end the thread."""
        self._listener.stop()


class _Handoff(QueueHandler):
    """Queues each record as it is, its message merged with its arguments; drops it when the
    queue is full, and says how many were dropped with the next one that fits."""

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
            if self.dropped:
                self.queue.put_nowait(self._dropped_note(record))
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def _dropped_note(self, record: logging.LogRecord) -> logging.LogRecord:
        text = f"{self.dropped} log line(s) dropped: the log's reader fell behind"
        return logging.LogRecord(record.name, logging.WARNING, __file__, 0, text, None, None)


class _Listener(QueueListener):
    def stop(self) -> None:
        """Write what waits, then end the thread; a few seconds at most, for a reader that
        stopped reading gets nothing more (the thread is a daemon: it never holds up exit)."""
        thread, self._thread = self._thread, None  # type: ignore[has-type]
        try:
            self.queue.put(self._sentinel, timeout=5.0)  # type: ignore[attr-defined]
        except queue.Full:
            return
        if thread is not None:
            thread.join(timeout=5.0)
