"""Open the SQLite database the way chatapp always wants it: WAL, foreign keys, migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from chatapp.errors import StorageError
from chatapp.migrate import apply_migrations
from chatapp.paths import migrations_dir

__all__ = ["open_database"]


def open_database(path: Path, *, migrate: bool = True) -> sqlite_utils.Database:
    """Open (creating if needed) the database at `path`, brought up to the latest migration.

    `check_same_thread=False` lets the server hand the connection to a worker thread; callers
    never use one connection from two threads at once.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 10000")
        db = sqlite_utils.Database(conn)
        db.enable_wal()
        conn.execute("PRAGMA synchronous = NORMAL")
        if migrate:
            apply_migrations(conn, migrations_dir())
    except (sqlite3.Error, OSError) as exc:
        raise StorageError(f"{path}: cannot open the database ({exc})") from exc
    return db
