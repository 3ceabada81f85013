"""An import is one transaction: a conversation and every message, or nothing at all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chatapp.conversations import ConversationStore
from chatapp.sharing import EXPORT_FORMAT, Sharing, import_on_own_connection


def _export(texts: list[str]) -> dict[str, object]:
    messages = [
        {"id": f"m{n}", "parent_id": f"m{n - 1}" if n else None, "role": "user", "content": t}
        for n, t in enumerate(texts)
    ]
    conversation = {"title": "copied", "current_leaf": f"m{len(texts) - 1}"}
    return {"format": EXPORT_FORMAT, "conversation": conversation, "messages": messages}


def test_a_failure_midway_leaves_no_conversation_behind(
    ann_store: tuple[ConversationStore, int],
) -> None:
    store, ann = ann_store
    db = store.db
    db.conn.execute(  # the database refuses the second message, after the first is written
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON messages WHEN new.content = 'boom'"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        Sharing(store).import_(ann, _export(["fine", "boom"]))
    assert db.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_an_import_on_its_own_connection_keeps_the_tree(
    tmp_path: Path, ann_store: tuple[ConversationStore, int]
) -> None:
    store, ann = ann_store
    exported = _export(["one", "two", "three"])
    created = import_on_own_connection(tmp_path / "chatapp.db", ann, exported)
    assert created["title"] == "copied"
    path_texts = [m["content"] for m in store.path(created["id"], created["current_leaf"])]
    assert path_texts == ["one", "two", "three"]
