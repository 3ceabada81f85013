"""Group commit: writes asked for in the same turn of the event loop share one transaction.

A chat turn's commit, or an API request's usage row's, costs more than its writes: the WAL
frames and the file locks. When many turns start or end together (a class pressing enter at
once, or answers of the same length ending in step), each one committing alone queues every
turn behind all the others' commits. Here
each write runs in a savepoint of one shared transaction, so one that fails is rolled back
alone, and nobody hears back before the commit that makes their write durable.

While another connection holds the write lock (the housekeeper indexing, the usage ledger
emptying the outbox), the batch waits for it on the event loop's timers, not in SQLite's busy
handler: that one sleeps on the loop's thread, 1, 2, 5, 10, 15, 20, 25 ms..., and every
stream of the process would wait with it.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")

_Work = Callable[[sqlite3.Connection], Any]


class _Pending(NamedTuple):
    """A write waiting for its batch, with its caller's context: what it logs, and the usage
    its observers note for the access log, belong to its own request, not the batch's."""

    work: _Work
    context: contextvars.Context
    future: asyncio.Future[Any]


# How often a batch asks again for a write lock held elsewhere. The holders keep it for a few
# milliseconds, and asking costs a few microseconds.
_RETRY_SECONDS = 0.001


class GroupCommit:
    """Runs write functions on one connection, those of one loop turn in one transaction.

    Every writer of the connection on the event loop may use it or not: a batch runs in one
    synchronous callback, so it never interleaves with a plain `with conn:` block.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._pending: list[_Pending] = []
        # A batch waits for the lock as long as the connection's own writers would.
        self._busy_ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        self._waiting_since: float | None = None

    async def run(
        self, work: Callable[[sqlite3.Connection], T], *, after_others: bool = False
    ) -> T:
        """`work(conn)` inside the shared transaction; its result once committed.

        `work` must not commit or open a transaction itself (no `with conn:`; a
        `chatapp.store.transaction` block in it is a savepoint, so the store's own write
        methods can run here as they are). If it raises, its writes are undone and the error
        is raised here; if the commit fails, every write of the batch is undone and each
        caller gets that error. A caller cancelled before the batch runs has its work
        skipped. `after_others` lets every task started in this turn of the loop take its
        first step before the batch (a chat turn's engine request).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._pending:
            if after_others:
                loop.call_soon(loop.call_soon, self._commit)
            else:
                loop.call_soon(self._commit)
        self._pending.append(_Pending(work, contextvars.copy_context(), future))
        return await future

    def _commit(self) -> None:
        # A caller cancelled while its work waited is left out: nothing of it is written.
        batch = [pending for pending in self._pending if not pending.future.done()]
        if not batch:
            self._pending, self._waiting_since = [], None
            return
        try:
            # Or the first savepoint would begin the transaction, and its release commit it.
            if not self.conn.in_transaction and not self._begin():
                return  # the lock is taken; asked again soon, with whatever joined meanwhile
        except sqlite3.Error as exc:  # out of time waiting, or the file is unusable
            self._pending, self._waiting_since = [], None
            for pending in batch:
                pending.future.set_exception(exc)
            return
        self._pending = []
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.conn:
                for pending in batch:
                    outcomes.append(self._attempt(pending.work, pending.context))
        except Exception as exc:  # the commit itself (busy, disk full): nothing was stored
            for pending in batch:
                pending.future.set_exception(exc)
            return
        # No caller can give up between the batch's start and here: this is one callback.
        for (stored, value), pending in zip(outcomes, batch, strict=True):
            if stored:
                pending.future.set_result(value)
            else:
                pending.future.set_exception(value)

    def _begin(self) -> bool:
        """BEGIN IMMEDIATE if the write lock is free; if not, False and a retry scheduled
        (raising SQLITE_BUSY once the batch has waited the connection's busy timeout)."""
        self.conn.execute("PRAGMA busy_timeout = 0")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            now = time.monotonic()
            self._waiting_since = self._waiting_since or now
            if now - self._waiting_since >= self._busy_ms / 1000:
                raise
            asyncio.get_running_loop().call_later(_RETRY_SECONDS, self._commit)
            return False
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        self._waiting_since = None
        return True

    def _attempt(self, work: _Work, context: contextvars.Context) -> tuple[bool, Any]:
        """One write in its own savepoint: (True, result), or (False, error) rolled back."""
        self.conn.execute("SAVEPOINT group_commit")
        try:
            result = context.run(work, self.conn)
        except Exception as exc:
            self.conn.execute("ROLLBACK TO group_commit")
            self.conn.execute("RELEASE group_commit")
            return False, exc
        self.conn.execute("RELEASE group_commit")
        return True, result
