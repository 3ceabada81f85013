"""Full-text search over a user's messages and conversation titles (SQLite FTS5, BM25)."""

from __future__ import annotations

import re
from typing import Any

import sqlite_utils

from chatapp.errors import InvalidRequest

__all__ = ["MARK", "fts_query", "search"]

MARK = ("<mark>", "</mark>")  # around matched words in snippets
_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: every word must match, the last one as a prefix.

    Quoting each word keeps FTS5's operators (AND, NEAR, quotes, *) from turning a typo into a
    syntax error; the prefix on the last word makes search-as-you-type work.
    """
    words = _WORD.findall(text)
    if not words:
        raise InvalidRequest("Search for at least one word.", param="q")
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


_MESSAGES = f"""
SELECT m.conversation_id, c.title, m.id, m.role,
       snippet(messages_fts, 0, '{MARK[0]}', '{MARK[1]}', '…', 16), bm25(messages_fts)
FROM messages_fts
JOIN messages m ON m.rowid = messages_fts.rowid
JOIN conversations c ON c.id = m.conversation_id
WHERE messages_fts MATCH ? AND c.user_id = ? AND c.deleted_at IS NULL
ORDER BY bm25(messages_fts) LIMIT ?
"""
_TITLES = f"""
SELECT c.id, c.title, NULL, NULL,
       highlight(conversations_fts, 0, '{MARK[0]}', '{MARK[1]}'), bm25(conversations_fts)
FROM conversations_fts
JOIN conversations c ON c.rowid = conversations_fts.rowid
WHERE conversations_fts MATCH ? AND c.user_id = ? AND c.deleted_at IS NULL
ORDER BY bm25(conversations_fts) LIMIT ?
"""


def search(
    db: sqlite_utils.Database, user_id: int, text: str, *, limit: int = 20
) -> list[dict[str, Any]]:
    """Best matches first (titles count double), each with a highlighted snippet."""
    query = fts_query(text)
    hits = []
    for sql, weight in ((_TITLES, 2.0), (_MESSAGES, 1.0)):
        for cid, title, mid, role, snippet, rank in db.execute(sql, (query, user_id, limit)):
            hits.append(
                {
                    "conversation_id": cid,
                    "title": title,
                    "message_id": mid,
                    "role": role,
                    "snippet": snippet,
                    "score": round(-rank * weight, 4),
                }
            )
    hits.sort(key=lambda hit: hit["score"], reverse=True)
    return hits[:limit]
