"""Full-text search over a user's messages and conversation titles (SQLite FTS5, BM25).

The message index carries each message's owner, so a query keeps to the caller inside FTS.
Only the newest CANDIDATES matching messages are scored: a common word matches most of a
large history, and scoring all of it took most of a second; the newest matches are also the
ones a person is most likely looking for.

Messages are indexed after they are written, not as they are (migration 0010): the
housekeeper indexes what waits in search_pending, and a search first indexes whatever it has
not got to yet.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

import sqlite_utils

from chatapp.errors import InvalidRequest

__all__ = ["CANDIDATES", "MARK", "fts_query", "index_pending", "search"]

MARK = ("<mark>", "</mark>")  # around matched words in snippets
CANDIDATES = 2000
_WORD = re.compile(r"\w+", re.UNICODE)


_WAITING_SQL = """
SELECT p.rowid FROM search_pending AS p JOIN messages AS m ON m.rowid = p.rowid
WHERE m.status != 'streaming' ORDER BY p.rowid LIMIT ?
"""
_INDEX_SQL = """
INSERT INTO messages_fts (rowid, content, owner)
SELECT m.rowid, m.content, 'u' || c.user_id FROM json_each(?) AS j
CROSS JOIN messages AS m ON m.rowid = j.value
CROSS JOIN conversations AS c ON c.id = m.conversation_id
"""


def index_pending(conn: sqlite3.Connection, *, batch: int) -> int:
    """Index up to `batch` waiting messages (replies still streaming wait on) in one
    transaction, which holds the write lock; returns how many were indexed."""
    if not conn.execute(_WAITING_SQL, (1,)).fetchone():
        return 0  # the usual case: no write transaction, no wait for the lock
    conn.execute("BEGIN IMMEDIATE")
    try:
        waiting = [rowid for (rowid,) in conn.execute(_WAITING_SQL, (batch,))]
        if waiting:
            rowids = json.dumps(waiting)
            conn.execute(_INDEX_SQL, (rowids,))
            conn.execute(
                "DELETE FROM search_pending WHERE rowid IN (SELECT value FROM json_each(?))",
                (rowids,),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return len(waiting)


def fts_query(text: str, *, prefix: bool = False) -> str:
    """A user's words as an FTS5 expression: every word must match (the last one as a prefix
    when `prefix`, for search-as-you-type). Quoting each word keeps FTS5's operators (AND,
    NEAR, quotes, *) from turning a typo into a syntax error."""
    words = _WORD.findall(text)
    if not words:
        raise InvalidRequest("Search for at least one word.", param="q")
    quoted = [f'"{w}"' for w in words]
    if prefix:
        quoted[-1] += "*"
    return " ".join(quoted)


_CANDIDATE_SQL = (
    "SELECT rowid, bm25(messages_fts, 1.0, 0.0) FROM messages_fts WHERE messages_fts MATCH ?"
    " ORDER BY rowid DESC LIMIT ?"
)
# CROSS JOIN keeps SQLite's join order: look up the given rowids, never scan the caller's
# whole history to test each message against the list (that was 200 ms over 1M messages).
_OWNED_SQL = """
SELECT m.rowid FROM json_each(?) AS j
CROSS JOIN messages AS m ON m.rowid = j.value
CROSS JOIN conversations AS c ON c.id = m.conversation_id
WHERE c.user_id = ? AND c.deleted_at IS NULL
"""
_DETAILS_SQL = f"""
SELECT m.rowid, m.conversation_id, c.title, m.id, m.role,
       snippet(messages_fts, 0, '{MARK[0]}', '{MARK[1]}', '…', 16)
FROM json_each(?) AS j
CROSS JOIN messages_fts ON messages_fts.rowid = j.value
CROSS JOIN messages AS m ON m.rowid = messages_fts.rowid
CROSS JOIN conversations AS c ON c.id = m.conversation_id
WHERE messages_fts MATCH ?
"""
_TITLES_SQL = f"""
SELECT c.id, c.title, highlight(conversations_fts, 0, '{MARK[0]}', '{MARK[1]}'),
       bm25(conversations_fts)
FROM conversations_fts
JOIN conversations c ON c.rowid = conversations_fts.rowid
WHERE conversations_fts MATCH ? AND c.user_id = ? AND c.deleted_at IS NULL
ORDER BY bm25(conversations_fts) LIMIT ?
"""


def _candidates(
    db: sqlite_utils.Database, match: str, user_id: int
) -> tuple[list[tuple[int, float]], bool]:
    """The caller's among the newest CANDIDATES matches, with BM25 ranks; and whether the
    scan stopped at CANDIDATES (so older matches of the caller's may exist)."""
    rows = db.execute(_CANDIDATE_SQL, (match, CANDIDATES)).fetchall()
    if not rows:
        return [], False
    owned = {
        rowid for (rowid,) in db.execute(_OWNED_SQL, (json.dumps([r[0] for r in rows]), user_id))
    }
    return [(rowid, rank) for rowid, rank in rows if rowid in owned], len(rows) == CANDIDATES


def search(
    db: sqlite_utils.Database, user_id: int, text: str, *, limit: int = 20, prefix: bool = False
) -> list[dict[str, Any]]:
    """Best matches first (titles count double), each with a highlighted snippet."""
    words = fts_query(text, prefix=prefix)
    while index_pending(db.conn, batch=500):  # what the housekeeper has not got to yet
        pass
    hits = [
        {
            "conversation_id": cid,
            "title": title,
            "message_id": None,
            "role": None,
            "snippet": snippet,
            "score": round(-rank * 2.0, 4),
        }
        for cid, title, snippet, rank in db.execute(_TITLES_SQL, (words, user_id, limit))
    ]
    content = f"content:({words})"
    ranked, capped = _candidates(db, content, user_id)
    if capped and len(ranked) < limit:
        # Everyone's newest matches held too few of the caller's: ask the index for the
        # caller's own (exact, slower when one user owns most of the messages).
        ranked, _ = _candidates(db, f'owner:"u{user_id}" AND {content}', user_id)
    ranked.sort(key=lambda row: row[1])
    best = {rowid: rank for rowid, rank in ranked[:limit]}
    if best:
        for rowid, cid, title, mid, role, snippet in db.execute(
            _DETAILS_SQL, (json.dumps(list(best)), content)
        ):
            hits.append(
                {
                    "conversation_id": cid,
                    "title": title,
                    "message_id": mid,
                    "role": role,
                    "snippet": snippet,
                    "score": round(-best[rowid], 4),
                }
            )
    hits.sort(key=lambda hit: hit["score"], reverse=True)
    return hits[:limit]
