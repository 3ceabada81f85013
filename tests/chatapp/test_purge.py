"""Purging deleted conversations: everything of them goes, a few to a transaction."""

from __future__ import annotations

from datetime import timedelta

from chatapp.conversations import ConversationStore
from chatapp.search import index_pending


def test_a_purge_lets_go_of_the_write_lock_between_short_transactions(
    ann_store: tuple[ConversationStore, int],
) -> None:
    store, ann = ann_store
    db = store.db
    kept = store.create(ann, {"title": "kept"})["id"]
    store.add_message(kept, parent_id=None, role="user", content="kept okapi")
    for n in range(25):
        cid = store.create(ann, {"title": f"gone {n}"})["id"]
        with db.conn:
            store.add_message(cid, parent_id=None, role="user", content=f"gone okapi {n}")
        store.delete(ann, cid)
    with db.conn:
        index_pending(db.conn, batch=1000)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    assert store.purge(timedelta(0)) == 25
    db.conn.set_trace_callback(None)
    assert sum(s.strip().upper() == "COMMIT" for s in statements) == 3  # 10, 10 and 5
    assert db.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    with db.conn:  # the search index lost exactly the purged messages' entries
        db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
    assert store.purge(timedelta(0)) == 0
