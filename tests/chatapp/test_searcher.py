"""Searches off the event loop: one thread of their own, none of the shared pool's."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from chatapp.accounts import Accounts
from chatapp.conversations import ConversationStore
from chatapp.errors import InvalidRequest
from chatapp.searcher import Searcher
from chatapp.store import open_database


def _search_threads() -> int:
    return sum(t.name.startswith("chatapp-search") for t in threading.enumerate())


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
    before = _search_threads()
    given_up = [asyncio.wait_for(searcher.find(ann, "quokka"), 0.05) for _ in range(5)]
    for search in given_up:  # a tool's timeout, a client gone: the thread is not let go
        with pytest.raises(TimeoutError):
            await search
    searches = [asyncio.ensure_future(searcher.find(ann, "quokka")) for _ in range(5)]
    await asyncio.sleep(0.2)
    assert _search_threads() - before == 1
    pool = anyio.to_thread.current_default_thread_limiter()
    assert pool.borrowed_tokens == 0
    with anyio.fail_after(1):  # the ledger's flush or a token count still gets a thread
        assert await anyio.to_thread.run_sync(lambda: 42) == 42
    assert not any(search.done() for search in searches)
    holder.execute("ROLLBACK")
    found = await asyncio.gather(*searches)
    assert all([hit["snippet"] for hit in hits] == ["<mark>quokka</mark> facts"] for hits in found)
    with pytest.raises(InvalidRequest):
        await searcher.find(ann, "!!!")
    await searcher.aclose()
    with pytest.raises(sqlite3.OperationalError, match="closed"):  # answered 503
        await searcher.find(ann, "quokka")
    holder.close()
    db.conn.close()
