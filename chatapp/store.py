"""Open the SQLite database the way chatapp always wants it: WAL, foreign keys, migrated."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from chatapp.errors import StorageError
from chatapp.migrate import apply_migrations
from chatapp.paths import migrations_dir

__all__ = ["open_database", "transaction"]


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


@contextlib.contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """A block of writes, all or none, holding the write lock from its start.

    Not `with conn:`: sqlite-utils' `execute` commits a write itself when no transaction is
    open, so a block's writes went in one by one and a refused change could keep half of
    itself. Not sqlite-utils' `atomic()`: its BEGIN is deferred, and a deferred transaction
    that reads before it writes (or writes a table whose triggers feed FTS5, which reads its
    config first) fails at once with "database is locked" while another connection writes,
    where BEGIN IMMEDIATE waits for the lock. Inside a transaction already (a batch of the
    group commit), the block is a savepoint.
    """
    conn = db.conn
    if conn.in_transaction:
        with db.atomic():
            yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # an error can have ended it already (a failed COMMIT)
            conn.execute("ROLLBACK")
        raise
