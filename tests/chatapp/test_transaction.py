"""`transaction`: a block of writes goes in whole or not at all, and waits for a held lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from chatapp.store import open_database, transaction


def test_a_block_that_fails_keeps_none_of_its_writes(tmp_path: Path) -> None:
    db = open_database(tmp_path / "chatapp.db")
    with pytest.raises(sqlite3.IntegrityError), transaction(db):
        db.execute("INSERT INTO orgs (name) VALUES ('acme')")  # sqlite-utils would commit it
        db.execute("INSERT INTO orgs (name) VALUES ('acme')")  # names are unique
    assert db.execute("SELECT count(*) FROM orgs WHERE name = 'acme'").fetchone()[0] == 0
    assert not db.conn.in_transaction


def test_a_block_waits_for_a_lock_held_elsewhere_even_when_it_reads_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chatapp.db"
    db = open_database(path)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    releaser = threading.Timer(0.3, holder.execute, ("ROLLBACK",))
    releaser.start()
    started = time.perf_counter()
    try:
        with transaction(db):  # after a deferred BEGIN this read-then-write fails at once
            db.execute("SELECT count(*) FROM orgs").fetchone()
            db.execute("INSERT INTO orgs (name) VALUES ('waited')")
    finally:
        releaser.join()
        holder.close()
    assert time.perf_counter() - started >= 0.25
    assert db.execute("SELECT count(*) FROM orgs WHERE name = 'waited'").fetchone()[0] == 1


def test_inside_an_open_transaction_a_block_is_a_savepoint(tmp_path: Path) -> None:
    db = open_database(tmp_path / "chatapp.db")
    db.conn.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO orgs (name) VALUES ('kept')")
    with pytest.raises(sqlite3.IntegrityError), transaction(db):
        db.execute("INSERT INTO orgs (name) VALUES ('undone')")
        db.execute("INSERT INTO orgs (name) VALUES ('kept')")
    assert db.conn.in_transaction  # the outer transaction is still the caller's to end
    db.conn.execute("COMMIT")
    names = [row[0] for row in db.execute("SELECT name FROM orgs ORDER BY name")]
    assert "kept" in names and "undone" not in names
