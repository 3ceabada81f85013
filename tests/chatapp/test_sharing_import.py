"""An import is one transaction: a conversation and every message, or nothing at all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chatapp.accounts import Accounts
from chatapp.conversations import ConversationStore
from chatapp.sharing import EXPORT_FORMAT, Sharing, import_on_own_connection
from chatapp.store import open_database


def _export(texts: list[str]) -> dict[str, object]:
    messages = [
        {"id": f"m{n}", "parent_id": f"m{n - 1}" if n else None, "role": "user", "content": t}
        for n, t in enumerate(texts)
    ]
    conversation = {"title": "copied", "current_leaf": f"m{len(texts) - 1}"}
    return {"format": EXPORT_FORMAT, "conversation": conversation, "messages": messages}


def test_a_failure_midway_leaves_no_conversation_behind(tmp_path: Path) -> None:
    db = open_database(tmp_path / "chatapp.db")
    accounts = Accounts(db)
    ann = accounts.ensure_user("ann", org_id=accounts.ensure_org("o"))
    db.conn.execute(  # the database refuses the second message, after the first is written
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON messages WHEN new.content = 'boom'"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        Sharing(ConversationStore(db)).import_(ann, _export(["fine", "boom"]))
    assert db.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_an_import_on_its_own_connection_keeps_the_tree(tmp_path: Path) -> None:
    path = tmp_path / "chatapp.db"
    db = open_database(path)
    accounts = Accounts(db)
    ann = accounts.ensure_user("ann", org_id=accounts.ensure_org("o"))
    created = import_on_own_connection(path, ann, _export(["one", "two", "three"]))
    assert created["title"] == "copied"
    store = ConversationStore(db)
    path_texts = [m["content"] for m in store.path(created["id"], created["current_leaf"])]
    assert path_texts == ["one", "two", "three"]
