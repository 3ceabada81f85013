"""SQLite upkeep that would otherwise land on a request: WAL checkpoints and FTS merges.

The server's request connection runs with automatic checkpoints off, and the search index with
automatic merging off (migration 0006); this does both from a worker thread on a connection of
its own, so a request never pays for fsyncing the WAL or merging index segments.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

__all__ = ["Housekeeper"]

_MERGE_PAGES = 500  # index pages merged per round: bounded work, repeated every round


class Housekeeper:
    def __init__(self, db_path: Path) -> None:
        self._conn = sqlite3.connect(
            db_path, timeout=10.0, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA busy_timeout = 10000")
        self._lock = threading.Lock()

    def tidy(self) -> None:
        """One round: merge some index segments, then checkpoint what readers allow."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?)",
                (_MERGE_PAGES,),
            )
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
