"""SQLite upkeep that would otherwise land on a request: WAL checkpoints and FTS merges.

The server's request connection runs with automatic checkpoints off, and the search index with
automatic merging off (migration 0006); this does both from a worker thread on a connection of
its own, so a request's commit never pays for fsyncing the WAL or merging index segments. The
merge goes in small steps: each holds the write lock, which requests wait for.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

__all__ = ["Housekeeper"]

_MERGE_PAGES = 32  # index pages written per round: short enough that no request waits long


class Housekeeper:
    def __init__(self, db_path: Path) -> None:
        self._conn = sqlite3.connect(
            db_path, timeout=10.0, check_same_thread=False, isolation_level=None
        )
        # Upkeep yields to requests: a busy round is skipped, the next one tries again.
        self._conn.execute("PRAGMA busy_timeout = 250")
        self._lock = threading.Lock()

    def tidy(self) -> bool:
        """A small step of index merging, then a checkpoint of what readers allow; False when
        the database was busy and the round was skipped."""
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?)",
                    (_MERGE_PAGES,),
                )
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                return False
            return True

    def close(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
