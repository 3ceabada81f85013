"""Searches run in a worker thread, on a connection of their own.

A search over a long history spends tens of milliseconds in SQLite (34 ms p95 over a million
messages), and before it looks it indexes what the housekeeper has not got to yet, which waits
for SQLite's write lock. On the event loop every stream of the process would stop for both:
one person searching as they type would stretch everyone's inter-token gaps. SQLite lets go of
the GIL while it works and WAL lets this connection read beside the loop's writes, so here the
loop goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from chatapp.search import fts_query, search
from chatapp.store import open_database

__all__ = ["Searcher"]


class Searcher:
    """One connection and one thread of its own: searches queue for it, in order.

    Not anyio's shared pool: a search given up on (a tool's timeout, a client gone) would
    hand back its place there while its thread still ran, and a burst of them would take
    threads that the ledger's flush and a reply's token count need. Here a search already
    running finishes, one still queued never starts, and no second thread is ever made.
    """

    def __init__(self, db_path: Path) -> None:
        # Set up as the request connection (WAL, synchronous=NORMAL, the same busy timeout).
        self._db = open_database(db_path, migrate=False)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatapp-search")
        self._closed = False

    async def find(
        self, user_id: int, text: str, *, limit: int = 20, prefix: bool = False
    ) -> list[dict[str, Any]]:
        """`chatapp.search.search` for this user, off the event loop."""
        fts_query(text, prefix=prefix)  # a query with no words is refused without a thread
        if self._closed:  # the server is stopping: answered 503, as a locked file is
            raise sqlite3.OperationalError("search is closed: the server is stopping")
        work = functools.partial(search, self._db, user_id, text, limit=limit, prefix=prefix)
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def aclose(self) -> None:
        """Close the connection once the search running now (if any) is done; the queued
        ones are dropped. The loop is free meanwhile."""
        self._closed = True
        self._thread.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._thread.shutdown(wait=True)  # the running search, then the connection
        self._db.conn.close()
