"""Migrations: an empty dir gets the full schema, re-running is a no-op, a failure rolls back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chatapp.errors import StorageError
from chatapp.migrate import applied_versions, apply_migrations, discover_migrations
from chatapp.paths import migrations_dir
from chatapp.store import open_database


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def test_empty_data_dir_gets_every_table_with_its_columns(tmp_path: Path) -> None:
    db = open_database(tmp_path / "new" / "chatapp.db")
    conn = db.conn
    assert {"orgs", "users", "api_keys", "conversations", "messages"} <= set(db.table_names())
    assert {
        "id",
        "user_id",
        "prefix",
        "secret_hash",
        "scopes",
        "revoked_at",
        "expires_at",
    } <= _columns(conn, "api_keys")
    assert {"id", "conversation_id", "parent_id", "role", "content", "status"} <= _columns(
        conn, "messages"
    )
    assert {"tier", "model", "kind", "value"} <= _columns(conn, "tier_limits")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    versions = [m.version for m in discover_migrations(migrations_dir())]
    assert applied_versions(conn) == set(versions)


def test_rerunning_migrations_is_a_noop(tmp_path: Path) -> None:
    path = tmp_path / "chatapp.db"
    db = open_database(path)
    db["orgs"].insert({"name": "kept"})
    db.conn.commit()
    db.conn.close()
    again = open_database(path, migrate=False)
    assert apply_migrations(again.conn, migrations_dir()) == []
    assert [r["name"] for r in again["orgs"].rows] == ["kept"]


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    db = open_database(tmp_path / "chatapp.db")
    with pytest.raises(sqlite3.IntegrityError):
        db.conn.execute("INSERT INTO users (org_id, name) VALUES (999, 'ghost')")


def test_failing_migration_rolls_back_whole_and_keeps_earlier_ones(tmp_path: Path) -> None:
    scripts = tmp_path / "migrations"
    scripts.mkdir()
    (scripts / "0001_one.sql").write_text("-- why: test\nCREATE TABLE a (x INTEGER);\n")
    (scripts / "0002_two.sql").write_text(
        "CREATE TABLE b (y INTEGER);\nCREATE TRIGGER t AFTER INSERT ON b BEGIN\n"
        "  INSERT INTO a VALUES (new.y);\nEND;\nINSERT INTO nowhere VALUES (1);\n"
    )
    conn = sqlite3.connect(tmp_path / "t.db")
    with pytest.raises(StorageError, match="0002_two.sql"):
        apply_migrations(conn, scripts)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "a" in tables and "b" not in tables
    assert applied_versions(conn) == {1}


def test_upgrade_applies_only_what_is_new(tmp_path: Path) -> None:
    """A database kept at an older version gets just the newer migrations, data intact."""
    scripts = tmp_path / "migrations"
    scripts.mkdir()
    (scripts / "0001_one.sql").write_text("CREATE TABLE a (x INTEGER);\n")
    conn = sqlite3.connect(tmp_path / "t.db")
    assert apply_migrations(conn, scripts) == [1]
    conn.execute("INSERT INTO a VALUES (42)")
    conn.commit()
    (scripts / "0002_two.sql").write_text("ALTER TABLE a ADD COLUMN y TEXT DEFAULT 'new';\n")
    assert apply_migrations(conn, scripts) == [2]
    assert conn.execute("SELECT x, y FROM a").fetchall() == [(42, "new")]


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1;")
    with pytest.raises(StorageError, match="0001_what.sql"):
        discover_migrations(tmp_path)


def test_table_rebuild_keeps_child_rows_and_broken_keys_roll_back(tmp_path: Path) -> None:
    """The usual rebuild (new table, copy, drop, rename) must not cascade-delete children."""
    path = tmp_path / "chatapp.db"
    db = open_database(path)
    org = db.conn.execute("INSERT INTO orgs (name) VALUES ('o')").lastrowid
    user = db.conn.execute("INSERT INTO users (org_id, name) VALUES (?, 'u')", (org,)).lastrowid
    db.conn.execute(
        "INSERT INTO api_keys (user_id, prefix, secret_hash) VALUES (?, 'p', 'h')", (user,)
    )
    db.conn.commit()
    scripts = tmp_path / "migrations"
    scripts.mkdir()
    for source in migrations_dir().glob("*.sql"):
        (scripts / source.name).write_text(source.read_text())
    (scripts / "0098_rebuild_users.sql").write_text(
        "CREATE TABLE users_new (id INTEGER PRIMARY KEY, org_id INTEGER NOT NULL"
        " REFERENCES orgs(id), name TEXT NOT NULL UNIQUE, email TEXT, is_admin INTEGER NOT NULL"
        " DEFAULT 0, tier TEXT, status TEXT NOT NULL DEFAULT 'active', created_at TEXT);\n"
        "INSERT INTO users_new SELECT * FROM users;\n"
        "DROP TABLE users;\n"
        "ALTER TABLE users_new RENAME TO users;\n"
    )
    assert apply_migrations(db.conn, scripts) == [98]
    assert db.conn.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 1
    assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    (scripts / "0099_orphan.sql").write_text("DELETE FROM users;\n")
    with pytest.raises(StorageError, match="foreign keys broken"):
        apply_migrations(db.conn, scripts)
    assert db.conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1


def test_the_conversation_listing_reads_its_own_index_and_no_duplicate_is_kept(
    tmp_path: Path,
) -> None:
    conn = open_database(tmp_path / "chatapp.db").conn
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(conversations)")}
    assert "conversations_listing" in indexes and "conversations_user_updated" not in indexes
    plan = " ".join(
        str(row[3])
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM conversations"
            " WHERE user_id = ? AND deleted_at IS NULL AND archived = ?"
            " ORDER BY updated_at DESC, id DESC LIMIT ?",
            (1, 0, 50),
        )
    )
    assert "conversations_listing" in plan and "TEMP B-TREE" not in plan
