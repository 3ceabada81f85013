"""A chat turn's start in the store: the question and the empty reply in one statement."""

from __future__ import annotations

import sqlite3

import pytest

from chatapp.conversations import ConversationStore
from chatapp.ids import new_id


def test_a_turn_stores_its_question_and_an_empty_reply_as_the_leaf(
    ann_store: tuple[ConversationStore, int],
) -> None:
    store, ann = ann_store
    cid = store.create(ann, {"title": "zoo"})["id"]
    question, reply = new_id("msg"), new_id("msg")
    with store.db.conn as conn:
        store.add_turn(
            conn, cid, parent_id=None, question=(question, "okapi?"), reply_id=reply, model="m"
        )
    conv = store.get(ann, cid)
    assert conv["current_leaf"] == reply
    path = store.path(cid, reply)
    assert [(m["id"], m["role"], m["content"], m["status"]) for m in path] == [
        (question, "user", "okapi?", "complete"),
        (reply, "assistant", "", "streaming"),
    ]
    assert path[0]["model"] is None and path[1]["model"] == "m"
    assert path[1]["parent_id"] == question
    assert all(m["tool_calls"] is None and m["tool_call_id"] is None for m in path)
    waiting = store.db.execute("SELECT count(*) FROM search_pending").fetchone()[0]
    assert waiting == 2  # both wait for the search index, as any written message


def test_a_regenerated_turn_adds_only_a_reply_beside_the_first(
    ann_store: tuple[ConversationStore, int],
) -> None:
    store, ann = ann_store
    cid = store.create(ann, {"title": "zoo"})["id"]
    question, first, second = new_id("msg"), new_id("msg"), new_id("msg")
    with store.db.conn as conn:
        store.add_turn(
            conn, cid, parent_id=None, question=(question, "okapi?"), reply_id=first, model="m"
        )
    with store.db.conn as conn:
        store.add_turn(conn, cid, parent_id=question, question=None, reply_id=second, model="m")
    assert store.get(ann, cid)["current_leaf"] == second
    assert [m["id"] for m in store.path(cid, second)] == [question, second]
    count = store.db.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", (cid,))
    assert count.fetchone()[0] == 3


def test_a_turn_that_fails_writes_neither_row(ann_store: tuple[ConversationStore, int]) -> None:
    store, ann = ann_store
    cid = store.create(ann, {"title": "zoo"})["id"]
    with pytest.raises(sqlite3.IntegrityError), store.db.conn as conn:
        store.add_turn(  # a parent that does not exist: the foreign key refuses the question
            conn,
            cid,
            parent_id="msg_missing",
            question=(new_id("msg"), "okapi?"),
            reply_id=new_id("msg"),
            model="m",
        )
    assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert store.get(ann, cid)["current_leaf"] is None
