"""Searches run in a worker thread, on a connection of their own.

A search over a long history spends tens of milliseconds in SQLite (34 ms p95 over a million
messages), and before it looks it indexes what the housekeeper has not got to yet, which waits
for SQLite's write lock. On the event loop every stream of the process would stop for both:
one person searching as they type would stretch everyone's inter-token gaps. SQLite lets go of
the GIL while it works and WAL lets this connection read while the loop's writes, so here the
loop goes on meanwhile.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import sqlite_utils

from chatapp.search import fts_query, search

__all__ = ["Searcher"]


class Searcher:
    """One connection, one search at a time, in a worker thread."""

    def __init__(self, db_path: Path) -> None:
        conn = sqlite3.connect(db_path, timeout=10.0, check_same_thread=False)
        # As the request connection: the index's commits need no fsync of the WAL.
        conn.execute("PRAGMA synchronous = NORMAL")
        self._db = sqlite_utils.Database(conn)
        self._lock = threading.Lock()
        # One worker thread at most: a burst of searches waits here, not in the shared pool's
        # threads, which the ledger's flush and a reply's token count need too.
        self._limiter: anyio.CapacityLimiter | None = None

    async def find(
        self, user_id: int, text: str, *, limit: int = 20, prefix: bool = False
    ) -> list[dict[str, Any]]:
        """`chatapp.search.search` for this user, off the event loop."""
        fts_query(text, prefix=prefix)  # a query with no words is refused without a thread
        work = functools.partial(self._find, user_id, text, limit=limit, prefix=prefix)
        if self._limiter is None:  # made on the loop: anyio needs one running
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(work, limiter=self._limiter)

    def _find(self, user_id: int, text: str, *, limit: int, prefix: bool) -> list[dict[str, Any]]:
        with self._lock:
            return search(self._db, user_id, text, limit=limit, prefix=prefix)

    def close(self) -> None:
        with self._lock:
            self._db.conn.close()
