"""Searches off the event loop: one worker thread, none of the shared pool's."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import anyio
import pytest

from chatapp.accounts import Accounts
from chatapp.conversations import ConversationStore
from chatapp.errors import InvalidRequest
from chatapp.searcher import Searcher
from chatapp.store import open_database


async def test_searches_waiting_for_the_lock_hold_one_thread_and_none_of_the_pools(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chatapp.db"
    db = open_database(path)
    accounts = Accounts(db)
    ann = accounts.ensure_user("ann", org_id=accounts.ensure_org("o"))
    store = ConversationStore(db)
    conv = store.create(ann, {"title": "t"})
    with db.conn:
        store.add_message(conv["id"], parent_id=None, role="user", content="quokka facts")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the message waits to be indexed, behind this lock
    searcher = Searcher(path)
    searches = [asyncio.ensure_future(searcher.find(ann, "quokka")) for _ in range(5)]
    await asyncio.sleep(0.2)
    pool = anyio.to_thread.current_default_thread_limiter()
    assert pool.borrowed_tokens == 0
    with anyio.fail_after(1):  # the ledger's flush or a token count would still get a thread
        assert await anyio.to_thread.run_sync(lambda: 42) == 42
    assert not any(search.done() for search in searches)
    holder.execute("ROLLBACK")
    found = await asyncio.gather(*searches)
    assert all([hit["snippet"] for hit in hits] == ["<mark>quokka</mark> facts"] for hits in found)
    with pytest.raises(InvalidRequest):
        await searcher.find(ann, "!!!")
    searcher.close()
    holder.close()
