"""Group commit: the writes of one loop turn share a commit, and each fails alone."""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chatapp.conversations import ConversationStore
from chatapp.errors import InvalidRequest
from chatapp.group_commit import GroupCommit


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE notes (text TEXT UNIQUE)")
    yield conn
    conn.close()


def _committed(path: Path) -> list[str]:
    """What another connection sees: only what was committed."""
    other = sqlite3.connect(path)
    try:
        return [row[0] for row in other.execute("SELECT text FROM notes ORDER BY rowid")]
    finally:
        other.close()


def _note(text: str) -> Callable[[sqlite3.Connection], int]:
    def write(conn: sqlite3.Connection) -> int:
        return conn.execute("INSERT INTO notes VALUES (?)", (text,)).lastrowid or 0

    return write


async def test_writes_of_one_turn_share_one_commit(conn: sqlite3.Connection) -> None:
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    group = GroupCommit(conn)
    rowids = await asyncio.gather(*(group.run(_note(f"n{i}")) for i in range(5)))
    assert rowids == [1, 2, 3, 4, 5]
    assert statements.count("COMMIT") == 1
    assert [s for s in statements if not s.startswith("PRAGMA")][0] == "BEGIN IMMEDIATE"


async def test_a_write_is_seen_by_others_once_its_caller_hears_back(
    conn: sqlite3.Connection,
) -> None:
    path = Path(conn.execute("PRAGMA database_list").fetchone()[2])
    seen_while_writing: list[list[str]] = []

    def write(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO notes VALUES ('a')")
        seen_while_writing.append(_committed(path))

    await GroupCommit(conn).run(write)
    assert seen_while_writing == [[]]
    assert _committed(path) == ["a"]


async def test_a_failing_write_is_undone_alone(conn: sqlite3.Connection) -> None:
    group = GroupCommit(conn)
    results = await asyncio.gather(
        group.run(_note("a")),
        group.run(_note("a")),  # breaks the UNIQUE constraint
        group.run(_note("b")),
        return_exceptions=True,
    )
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert [results[0], results[2]] == [1, 2]
    assert [r[0] for r in conn.execute("SELECT text FROM notes ORDER BY rowid")] == ["a", "b"]


async def test_a_write_that_fails_midway_leaves_none_of_its_rows(
    conn: sqlite3.Connection,
) -> None:
    group = GroupCommit(conn)

    def half(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO notes VALUES ('half')")
        raise ValueError("changed my mind")

    results = await asyncio.gather(
        group.run(half), group.run(_note("kept")), return_exceptions=True
    )
    assert isinstance(results[0], ValueError)
    assert [r[0] for r in conn.execute("SELECT text FROM notes")] == ["kept"]


def _locked(path: Path, timeout: float) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """A connection waiting at most `timeout` for the write lock, and another (as another
    process would) holding that lock."""
    conn = sqlite3.connect(path, timeout=timeout)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE notes (text TEXT UNIQUE)")
    conn.commit()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")
    return conn, holder


async def test_a_failed_commit_fails_every_write_and_stores_none(tmp_path: Path) -> None:
    conn, holder = _locked(tmp_path / "t.db", timeout=0.05)
    try:
        group = GroupCommit(conn)
        results = await asyncio.gather(
            group.run(_note("a")), group.run(_note("b")), return_exceptions=True
        )
    finally:
        holder.rollback()
        holder.close()
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    assert _committed(tmp_path / "t.db") == []
    assert not conn.in_transaction
    assert await GroupCommit(conn).run(_note("later")) == 1  # the connection still works
    conn.close()


async def test_a_caller_cancelled_before_the_batch_writes_nothing(
    conn: sqlite3.Connection,
) -> None:
    group = GroupCommit(conn)
    gone = asyncio.ensure_future(group.run(_note("gone")))
    kept = asyncio.ensure_future(group.run(_note("kept")))
    await asyncio.sleep(0)  # both are queued; the batch runs at the next turn
    gone.cancel()
    await asyncio.gather(gone, kept, return_exceptions=True)
    assert gone.cancelled()
    assert [r[0] for r in conn.execute("SELECT text FROM notes")] == ["kept"]


async def test_later_turns_get_transactions_of_their_own(conn: sqlite3.Connection) -> None:
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    group = GroupCommit(conn)
    await group.run(_note("a"))
    await group.run(_note("b"))
    assert statements.count("COMMIT") == 2


async def test_a_held_write_lock_is_waited_for_without_stopping_the_loop(tmp_path: Path) -> None:
    conn, holder = _locked(tmp_path / "t.db", timeout=2.0)
    holder.execute("INSERT INTO notes VALUES ('theirs')")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    group = GroupCommit(conn)
    first = asyncio.ensure_future(group.run(_note("first")))
    ticks = 0
    for _ in range(20):  # the loop goes on while the first write waits for the lock
        await asyncio.sleep(0.002)
        ticks += 1
    later = asyncio.ensure_future(group.run(_note("later")))  # joins the waiting batch
    await asyncio.sleep(0.005)
    # Released by the loop itself: a wait inside SQLite's busy handler would never see it.
    holder.commit()
    assert await asyncio.wait_for(asyncio.gather(first, later), timeout=1.0) == [2, 3]
    holder.close()
    assert ticks == 20
    assert _committed(tmp_path / "t.db") == ["theirs", "first", "later"]
    assert statements.count("COMMIT") == 1  # the write that came meanwhile shared it
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2000  # as it was
    conn.close()


async def test_after_others_lets_the_tasks_started_in_the_same_turn_go_first(
    conn: sqlite3.Connection,
) -> None:
    group = GroupCommit(conn)
    order: list[str] = []

    async def first_step(name: str) -> None:
        order.append(f"{name} started")

    def write(name: str) -> Callable[[sqlite3.Connection], None]:
        def work(conn: sqlite3.Connection) -> None:
            order.append(f"{name} written")

        return work

    async def turn(name: str, after_others: bool) -> None:
        asyncio.ensure_future(first_step(name))  # a reply's task, begun by its request
        await group.run(write(name), after_others=after_others)

    # Two requests handled in the same turn of the loop, as a burst of them is.
    await asyncio.gather(turn("a", True), turn("b", True))
    assert order == ["a started", "b started", "a written", "b written"]
    order.clear()
    await asyncio.gather(turn("a", False), turn("b", False))
    assert order == ["a started", "a written", "b written", "b started"]


async def test_each_write_runs_in_its_callers_context(conn: sqlite3.Connection) -> None:
    # A write's observers log under its own request (the access log's usage, the request id
    # on a failure's log line), not under whichever caller happened to start the batch.
    request: contextvars.ContextVar[str] = contextvars.ContextVar("request")
    group = GroupCommit(conn)

    async def caller(name: str) -> str:
        request.set(name)
        return await group.run(lambda conn: request.get())

    assert await asyncio.gather(*(caller(f"r{i}") for i in range(3))) == ["r0", "r1", "r2"]


async def test_store_methods_with_transaction_blocks_run_in_a_batch(
    ann_store: tuple[ConversationStore, int],
) -> None:
    """A `transaction` block inside a batch is a savepoint: the store's own write methods run
    there as they are, share its commit, and one that fails takes none of the others' rows."""
    store, ann = ann_store
    db = store.db
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    made, refused = await asyncio.gather(
        store.group_commit.run(lambda _: store.create(ann, {"title": "one"})),
        store.group_commit.run(lambda _: store.create(ann, {"title": "two", "pinned": 3})),
        return_exceptions=True,
    )
    db.conn.set_trace_callback(None)
    assert isinstance(refused, InvalidRequest)
    assert isinstance(made, dict) and made["title"] == "one"
    assert statements.count("COMMIT") == 1
    titles = [row[0] for row in db.execute("SELECT title FROM conversations")]
    assert titles == ["one"]
