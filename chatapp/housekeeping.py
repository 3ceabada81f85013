"""SQLite upkeep that would otherwise land on a request: search indexing, FTS merges and WAL
checkpoints.

The server's request connection runs with automatic checkpoints off, the search index with
automatic merging off (migration 0006), and new messages wait to be indexed (migration
0010); this does all three from a worker thread on a connection of its own, so a request's
commit never pays for indexing a message, fsyncing the WAL or merging index segments. Each
goes in small steps: each holds the write lock, which requests wait for.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from chatapp.search import index_pending

__all__ = ["Housekeeper"]

_MERGE_PAGES = 32  # index pages written per round: short enough that no request waits long
_INDEX_BATCH = 16  # messages indexed per transaction: a couple of ms of the write lock
_INDEX_BATCHES = 32  # per round, at most: past that, searches index what still waits
# Between two of them, long enough for a writer that waited (SQLite's busy handler retries
# after 1, 2, 5 ms...) to get the lock: back to back, the event loop could wait out them all.
_INDEX_PAUSE = 0.01


class Housekeeper:
    def __init__(self, db_path: Path) -> None:
        self._conn = sqlite3.connect(
            db_path, timeout=10.0, check_same_thread=False, isolation_level=None
        )
        # Upkeep yields to requests: a busy round is skipped, the next one tries again.
        self._conn.execute("PRAGMA busy_timeout = 250")
        # As the request connection: with WAL, a commit then writes the log without an
        # fsync, and the write lock, which every request's commit waits for, is held for
        # the writes alone. Checkpoints still sync.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._lock = threading.Lock()

    def tidy(self) -> bool:
        """Index the messages that wait, a small step of index merging, then a checkpoint of
        what readers allow; False when the database was busy and the round was cut short."""
        with self._lock:
            try:
                for _ in range(_INDEX_BATCHES):
                    if index_pending(self._conn, batch=_INDEX_BATCH) < _INDEX_BATCH:
                        break
                    time.sleep(_INDEX_PAUSE)
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
