"""Search indexing after the write (migration 0010): nothing written is ever missed by a
search, a streamed reply is indexed once with its answer, and the index stays consistent."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import sqlite_utils

from chatapp.accounts import Accounts
from chatapp.conversations import ConversationStore
from chatapp.housekeeping import Housekeeper
from chatapp.migrate import apply_migrations
from chatapp.paths import migrations_dir
from chatapp.search import index_pending, search


def _waiting(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT count(*) FROM search_pending").fetchone()[0])


def _indexed(db: sqlite_utils.Database, word: str) -> int:
    """Matches in the index itself, without the catch-up a search does first."""
    sql = "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?"
    return int(db.execute(sql, (word,)).fetchone()[0])


def _consistent(db: sqlite_utils.Database) -> None:
    """FTS5 checks its index against the messages (raises if they differ): only meaningful
    when nothing waits to be indexed."""
    assert _waiting(db) == 0
    with db.conn:
        db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")


def _hits(store: ConversationStore, user: int, word: str) -> list[str | None]:
    return [hit["message_id"] for hit in search(store.db, user, word) if hit["message_id"]]


def test_a_message_waits_for_the_index_but_a_search_finds_it_at_once(
    ann_store: tuple[ConversationStore, int],
) -> None:
    store, ann = ann_store
    conv = store.create(ann, {"title": "zoo"})
    with store.db.conn:
        mid = store.add_message(conv["id"], parent_id=None, role="user", content="okapi facts")
    assert _indexed(store.db, "okapi") == 0 and _waiting(store.db) == 1
    assert _hits(store, ann, "okapi") == [mid]
    assert _waiting(store.db) == 0
    _consistent(store.db)


def test_a_streamed_reply_is_indexed_once_with_its_answer(
    ann_store: tuple[ConversationStore, int],
) -> None:
    store, ann = ann_store
    conv = store.create(ann, {"title": "zoo"})
    with store.db.conn:
        reply = store.add_message(
            conv["id"], parent_id=None, role="assistant", content="", status="streaming"
        )
    assert index_pending(store.db.conn, batch=10) == 0  # still streaming: it waits
    assert _waiting(store.db) == 1
    with store.db.conn:
        store.finish_message(
            store.db.conn,
            reply,
            content="the quokka smiles",
            status="complete",
            finish_reason="stop",
            usage=None,
            request_id="req_1",
        )
    assert index_pending(store.db.conn, batch=10) == 1
    assert _indexed(store.db, "quokka") == 1
    _consistent(store.db)


def test_an_indexed_message_that_changes_is_indexed_again(
    ann_store: tuple[ConversationStore, int],
) -> None:
    store, ann = ann_store
    conv = store.create(ann, {"title": "zoo"})
    with store.db.conn:
        mid = store.add_message(conv["id"], parent_id=None, role="user", content="old wombat")
    index_pending(store.db.conn, batch=10)
    with store.db.conn:
        store.db.execute("UPDATE messages SET content = 'new numbat' WHERE id = ?", (mid,))
    assert _indexed(store.db, "wombat") == 0  # the old words left the index with the change
    assert _hits(store, ann, "numbat") == [mid]
    _consistent(store.db)


def test_deleting_waiting_and_indexed_messages_keeps_the_index_whole(
    ann_store: tuple[ConversationStore, int],
) -> None:
    store, ann = ann_store
    indexed, waiting = store.create(ann, {"title": "a"}), store.create(ann, {"title": "b"})
    with store.db.conn:
        store.add_message(indexed["id"], parent_id=None, role="user", content="tapir one")
    index_pending(store.db.conn, batch=10)
    with store.db.conn:
        store.add_message(waiting["id"], parent_id=None, role="user", content="tapir two")
    for conv in (indexed, waiting):
        store.delete(ann, conv["id"])
    assert store.purge(timedelta(0)) == 2
    assert _waiting(store.db) == 0
    assert _indexed(store.db, "tapir") == 0
    _consistent(store.db)


def test_the_housekeeper_indexes_what_waits_but_not_a_reply_still_streaming(
    tmp_path: Path, ann_store: tuple[ConversationStore, int]
) -> None:
    store, ann = ann_store
    conv = store.create(ann, {"title": "zoo"})
    with store.db.conn:
        for n in range(70):  # more than one batch
            store.add_message(conv["id"], parent_id=None, role="user", content=f"ibex {n}")
        store.add_message(
            conv["id"], parent_id=None, role="assistant", content="", status="streaming"
        )
    housekeeper = Housekeeper(tmp_path / "chatapp.db")
    try:
        assert housekeeper.tidy()
    finally:
        housekeeper.close()
    assert _indexed(store.db, "ibex") == 70
    assert _waiting(store.db) == 1  # the streaming reply
    assert store.repair_interrupted() == 1
    assert index_pending(store.db.conn, batch=10) == 1
    _consistent(store.db)


def test_the_housekeeper_commits_as_durably_as_requests_do_and_no_more(
    tmp_path: Path, ann_store: tuple[ConversationStore, int]
) -> None:
    """Its commits hold the write lock every request waits for: no fsync of the WAL in them."""
    store, _ = ann_store
    housekeeper = Housekeeper(tmp_path / "chatapp.db")
    try:
        synchronous = housekeeper._conn.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        housekeeper.close()
    assert synchronous == store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_upgrading_keeps_what_the_old_triggers_indexed(tmp_path: Path) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for path in migrations_dir().glob("*.sql"):
        if path.name < "0010":
            shutil.copy(path, before / path.name)
    conn = sqlite3.connect(tmp_path / "chatapp.db")
    conn.execute("PRAGMA foreign_keys = ON")
    apply_migrations(conn, before)
    db = sqlite_utils.Database(conn)
    accounts = Accounts(db)
    ann = accounts.ensure_user("ann", org_id=accounts.ensure_org("o"))
    store = ConversationStore(db)
    conv = store.create(ann, {"title": "zoo"})
    with conn:
        old = store.add_message(conv["id"], parent_id=None, role="user", content="old gnu")
        reply = store.add_message(
            conv["id"], parent_id=old, role="assistant", content="", status="streaming"
        )
    assert 10 in apply_migrations(conn, migrations_dir())
    assert _waiting(db) == 0
    assert _hits(store, ann, "gnu") == [old]
    assert store.repair_interrupted() == 1  # indexed empty by the old trigger: changes cleanly
    with conn:
        conn.execute("UPDATE messages SET content = 'half an eland' WHERE id = ?", (reply,))
    assert _hits(store, ann, "eland") == [reply]
    _consistent(db)
    conn.close()
