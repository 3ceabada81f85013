"""Conversations and their message trees in SQLite, every query scoped to the calling user.

Messages form a tree by parent_id: regenerating an answer or editing a question adds a
sibling instead of overwriting. A conversation remembers its current leaf; the prompt is the
path from the root to it. Another user's conversation is simply not found (never "forbidden").
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils

from chatapp.errors import InvalidRequest, NotFound
from chatapp.group_commit import GroupCommit
from chatapp.ids import new_id
from chatapp.store import transaction
from chatapp.tools import TOOLS

__all__ = ["PATCHABLE", "ConversationStore", "Page"]

PATCHABLE = (
    "title",
    "system_prompt",
    "model",
    "tags",
    "folder",
    "pinned",
    "archived",
    "tools",
)
_CONVERSATION = (
    "id, user_id, title, model, system_prompt, current_leaf, tags, folder, pinned, archived,"
    " created_at, updated_at, summary, summary_through, tools"
)
_MESSAGE = (
    "id, conversation_id, parent_id, role, content, model, status, finish_reason,"
    " prompt_tokens, completion_tokens, request_id, created_at, updated_at, tool_calls,"
    " tool_call_id"
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_INSERT_MESSAGES = (
    "INSERT INTO messages (id, conversation_id, parent_id, role, content, status, model,"
    " created_at, updated_at, tool_calls, tool_call_id) VALUES "
)
_MESSAGE_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


# Conversations deleted for good in one transaction: 10 of 20 messages each take 25-50 ms here.
_PURGE_CHUNK = 10


def _make_leaf(conn: sqlite3.Connection, cid: str, mid: str, now: str) -> None:
    conn.execute(
        "UPDATE conversations SET current_leaf = ?, updated_at = ? WHERE id = ?", (mid, now, cid)
    )


def _cutoff(older_than: timedelta) -> str:
    return (datetime.now(UTC) - older_than).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Page:
    """One page of a listing and the cursor of the next (None at the end)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def _conversation(row: Sequence[Any]) -> dict[str, Any]:
    (
        cid,
        _user,
        title,
        model,
        system_prompt,
        leaf,
        tags,
        folder,
        pinned,
        archived,
        created,
        updated,
        summary,
        summary_through,
        tools,
    ) = row
    return {
        "id": cid,
        "object": "conversation",
        "title": title,
        "model": model,
        "system_prompt": system_prompt,
        "current_leaf": leaf,
        "tags": json.loads(tags),
        "folder": folder,
        "pinned": bool(pinned),
        "archived": bool(archived),
        "created_at": created,
        "updated_at": updated,
        "summary": summary,
        "summary_through": summary_through,
        "tools": json.loads(tools),
    }


def _message(row: Sequence[Any]) -> dict[str, Any]:
    (
        mid,
        cid,
        parent,
        role,
        content,
        model,
        status,
        finish,
        prompt,
        completion,
        request_id,
        created,
        updated,
        tool_calls,
        tool_call_id,
    ) = row
    usage = None
    if prompt is not None or completion is not None:
        usage = {
            "prompt_tokens": prompt or 0,
            "completion_tokens": completion or 0,
            "total_tokens": (prompt or 0) + (completion or 0),
        }
    return {
        "id": mid,
        "object": "conversation.message",
        "conversation_id": cid,
        "parent_id": parent,
        "role": role,
        "content": content,
        "model": model,
        "status": status,
        "finish_reason": finish,
        "usage": usage,
        "request_id": request_id,
        "created_at": created,
        "updated_at": updated,
        "tool_calls": json.loads(tool_calls) if tool_calls else None,
        "tool_call_id": tool_call_id,
    }


def _encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeDecodeError):
        values = None
    if (
        not isinstance(values, list)
        or len(values) != size
        or not all(isinstance(v, str) for v in values)
    ):
        raise InvalidRequest("The cursor is not one this server gave out.", param="cursor")
    return values


class ConversationStore:
    """Conversations, messages and idempotency keys over the SQLite database."""

    def __init__(self, db: sqlite_utils.Database, group_commit: GroupCommit | None = None) -> None:
        self.db = db
        # A chat turn's two transactions (its start, and its reply with the usage row) go
        # through this: turns that start or end together share a commit (with the usage rows
        # of API requests ending then too, when the meter is given the same one).
        self.group_commit = group_commit or GroupCommit(db.conn)

    # Conversations -----------------------------------------------------------------------

    def create(self, user_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        values = _checked(fields)
        cid = new_id("conv")
        now = _now()
        with transaction(self.db):
            self.db.execute(
                "INSERT INTO conversations (id, user_id, title, model, system_prompt, tags,"
                " folder, pinned, archived, created_at, updated_at, tools)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cid,
                    user_id,
                    values.get("title", ""),
                    values.get("model"),
                    values.get("system_prompt"),
                    values.get("tags", "[]"),
                    values.get("folder"),
                    values.get("pinned", 0),
                    values.get("archived", 0),
                    now,
                    now,
                    values.get("tools", "[]"),
                ),
            )
        return self.get(user_id, cid)

    def get(self, user_id: int, cid: str) -> dict[str, Any]:
        row = self.db.execute(
            f"SELECT {_CONVERSATION} FROM conversations"
            " WHERE id = ? AND user_id = ? AND deleted_at IS NULL",
            (cid, user_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"No conversation '{cid}'.", code="conversation_not_found")
        return _conversation(row)

    def listing(
        self,
        user_id: int,
        *,
        limit: int = 50,
        cursor: str | None = None,
        archived: bool | None = False,
        pinned: bool | None = None,
        tag: str | None = None,
        folder: str | None = None,
    ) -> Page:
        """Most recently updated first; `cursor` continues where the last page ended."""
        where = ["user_id = ?", "deleted_at IS NULL"]
        params: list[Any] = [user_id]
        if archived is not None:
            where.append("archived = ?")
            params.append(int(archived))
        if pinned is not None:
            where.append("pinned = ?")
            params.append(int(pinned))
        if folder is not None:
            where.append("folder = ?")
            params.append(folder)
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(conversations.tags) WHERE value = ?)")
            params.append(tag)
        if cursor:
            updated, last_id = _decode_cursor(cursor, 2)
            where.append("(updated_at < ? OR (updated_at = ? AND id < ?))")
            params += [updated, updated, last_id]
        rows = self.db.execute(
            f"SELECT {_CONVERSATION} FROM conversations WHERE {' AND '.join(where)}"
            " ORDER BY updated_at DESC, id DESC LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        items = [_conversation(row) for row in rows[:limit]]
        more = len(rows) > limit
        next_cursor = _encode_cursor(items[-1]["updated_at"], items[-1]["id"]) if more else None
        return Page(items, next_cursor)

    def update(self, user_id: int, cid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        self.get(user_id, cid)
        values = _checked(fields)
        if values:
            assignments = ", ".join(f"{name} = ?" for name in values)  # names from PATCHABLE
            with transaction(self.db):
                self.db.execute(
                    f"UPDATE conversations SET {assignments}, updated_at = ? WHERE id = ?",
                    (*values.values(), _now(), cid),
                )
        return self.get(user_id, cid)

    def delete(self, user_id: int, cid: str) -> None:
        """Soft delete: gone from every listing at once, purged after the retention period."""
        self.get(user_id, cid)
        with transaction(self.db):
            self.db.execute("UPDATE conversations SET deleted_at = ? WHERE id = ?", (_now(), cid))

    def repair_interrupted(self) -> int:
        """Replies left `streaming` by a crash are `incomplete`: nothing generates them now."""
        with transaction(self.db):
            return self.db.execute(
                "UPDATE messages SET status = 'incomplete' WHERE status = 'streaming'"
            ).rowcount

    def purge(self, older_than: timedelta, *, limit: int | None = None) -> int:
        """Really delete conversations soft-deleted longer ago than `older_than` (at most
        `limit` of them), a few to a transaction: deleting messages and their search entries
        takes milliseconds a conversation, and every other writer waits for the lock
        meanwhile. Returns how many went."""
        cutoff = _cutoff(older_than)
        ids = [
            row[0]
            for row in self.db.execute(
                "SELECT id FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at < ?"
                " ORDER BY deleted_at LIMIT ?",
                (cutoff, -1 if limit is None else limit),
            )
        ]
        purged = 0
        for start in range(0, len(ids), _PURGE_CHUNK):
            chunk = ids[start : start + _PURGE_CHUNK]
            marks = ", ".join("?" * len(chunk))
            with transaction(self.db):
                # Messages first: their search-index trigger needs the conversation's owner.
                self.db.execute(f"DELETE FROM messages WHERE conversation_id IN ({marks})", chunk)
                purged += self.db.execute(
                    f"DELETE FROM conversations WHERE id IN ({marks})", chunk
                ).rowcount  # another purge running beside this one may have taken some
        return purged

    def purgeable(self, older_than: timedelta) -> int:
        """How many deleted conversations a purge with `older_than` would remove now."""
        row = self.db.execute(
            "SELECT count(*) FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at < ?",
            (_cutoff(older_than),),
        ).fetchone()
        return int(row[0])

    def ids_of(self, user_id: int | None) -> list[tuple[str, int]]:
        """(conversation id, owner) of every live conversation, or one user's, oldest first."""
        where = "deleted_at IS NULL" + ("" if user_id is None else " AND user_id = ?")
        rows = self.db.execute(
            f"SELECT id, user_id FROM conversations WHERE {where} ORDER BY created_at, id",
            () if user_id is None else (user_id,),
        )
        return [(cid, owner) for cid, owner in rows]

    # Messages ----------------------------------------------------------------------------

    def message(self, user_id: int, cid: str, mid: str) -> dict[str, Any]:
        self.get(user_id, cid)
        row = self.db.execute(
            f"SELECT {_MESSAGE} FROM messages WHERE id = ? AND conversation_id = ?", (mid, cid)
        ).fetchone()
        if row is None:
            raise NotFound(f"No message '{mid}' in this conversation.", code="message_not_found")
        return _message(row)

    def path(self, cid: str, leaf: str | None) -> list[dict[str, Any]]:
        """The messages from the root down to `leaf`, oldest first."""
        if leaf is None:
            return []
        rows = self.db.execute(
            f"WITH RECURSIVE up(mid, depth) AS (SELECT ?, 0 UNION ALL"
            " SELECT m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.mid"
            " WHERE m.parent_id IS NOT NULL AND up.depth < 100000)"
            f" SELECT {', '.join('m.' + c.strip() for c in _MESSAGE.split(','))}"
            " FROM up JOIN messages m ON m.id = up.mid WHERE m.conversation_id = ?"
            " ORDER BY up.depth DESC",
            (leaf, cid),
        ).fetchall()
        return [_message(row) for row in rows]

    def branch_to(self, cid: str, parent_id: str | None) -> list[dict[str, Any]]:
        """`path` to a new message's parent, which must be of this conversation (its path is
        empty otherwise: the walk keeps only this conversation's messages)."""
        branch = self.path(cid, parent_id)
        if parent_id is not None and not branch:
            raise InvalidRequest(
                f"No message '{parent_id}' in this conversation.", param="parent_id"
            )
        return branch

    def all_messages(self, cid: str) -> list[dict[str, Any]]:
        """Every message of every branch, parents before children (ids sort by creation)."""
        rows = self.db.execute(
            f"SELECT {_MESSAGE} FROM messages WHERE conversation_id = ? ORDER BY id", (cid,)
        ).fetchall()
        return [_message(row) for row in rows]

    def page(self, user_id: int, cid: str, *, limit: int, before: str | None) -> Page:
        """The current branch, newest last, `limit` at a time going back (for scrolling up)."""
        conversation = self.get(user_id, cid)
        path = self.path(cid, conversation["current_leaf"])
        end = len(path)
        if before:
            ids = [m["id"] for m in path]
            if before not in ids:
                raise InvalidRequest(
                    "`before` is not a message of the current branch.", param="before"
                )
            end = ids.index(before)
        start = max(0, end - limit)
        return Page(path[start:end], path[start]["id"] if start > 0 else None)

    def siblings(self, user_id: int, cid: str, mid: str) -> list[dict[str, Any]]:
        """The message and its alternatives (same parent, same role), oldest first."""
        message = self.message(user_id, cid, mid)
        rows = self.db.execute(
            f"SELECT {_MESSAGE} FROM messages WHERE conversation_id = ? AND role = ?"
            " AND parent_id IS ? ORDER BY id",
            (cid, message["role"], message["parent_id"]),
        ).fetchall()
        return [_message(row) for row in rows]

    def switch(self, user_id: int, cid: str, mid: str) -> dict[str, Any]:
        """Make the branch through `mid` current, down to its most recent leaf."""
        self.message(user_id, cid, mid)
        leaf, seen = mid, {mid}
        while True:
            child = self.db.execute(
                "SELECT id FROM messages WHERE parent_id = ? ORDER BY id DESC LIMIT 1", (leaf,)
            ).fetchone()
            if child is None or child[0] in seen:  # a cycle cannot come from us; stop anyway
                break
            leaf = child[0]
            seen.add(leaf)
        with transaction(self.db):
            self.db.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?", (leaf, cid))
        return self.get(user_id, cid)

    def add_message(
        self,
        cid: str,
        *,
        parent_id: str | None,
        role: str,
        content: str,
        status: str = "complete",
        model: str | None = None,
        conn: sqlite3.Connection | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        tool_call_id: str | None = None,
    ) -> str:
        """Append a message under `parent_id` and make it the conversation's current leaf."""
        mid = new_id("msg")
        now = _now()
        target = conn or self.db.conn
        calls = json.dumps(tool_calls) if tool_calls else None
        target.execute(
            _INSERT_MESSAGES + _MESSAGE_VALUES,
            (mid, cid, parent_id, role, content, status, model, now, now, calls, tool_call_id),
        )
        _make_leaf(target, cid, mid, now)
        return mid

    def add_turn(
        self,
        conn: sqlite3.Connection,
        cid: str,
        *,
        parent_id: str | None,
        question: tuple[str, str] | None,
        reply_id: str,
        model: str,
    ) -> None:
        """A chat turn's start: its question (`(id, text)`; None when regenerating) and the
        empty reply streamed into, as the current leaf. One statement for both rows: the
        turn is on every reply's path when many start together."""
        now = _now()
        rows: list[tuple[Any, ...]] = []
        if question is not None:
            question_id, text = question
            rows.append((question_id, cid, parent_id, "user", text, "complete", None, now, now))
            parent_id = question_id
        rows.append((reply_id, cid, parent_id, "assistant", "", "streaming", model, now, now))
        conn.execute(
            _INSERT_MESSAGES + ", ".join([_MESSAGE_VALUES] * len(rows)),
            [value for row in rows for value in (*row, None, None)],  # no tool calls
        )
        _make_leaf(conn, cid, reply_id, now)

    def finish_message(
        self,
        conn: sqlite3.Connection,
        mid: str,
        *,
        content: str,
        status: str,
        finish_reason: str | None,
        usage: Mapping[str, Any] | None,
        request_id: str,
    ) -> None:
        """Store how a reply ended; runs inside the caller's transaction (with the usage row)."""
        conn.execute(
            "UPDATE messages SET content = ?, status = ?, finish_reason = ?, prompt_tokens = ?,"
            " completion_tokens = ?, request_id = ?, updated_at = ? WHERE id = ?",
            (
                content,
                status,
                finish_reason,
                (usage or {}).get("prompt_tokens"),
                (usage or {}).get("completion_tokens"),
                request_id,
                _now(),
                mid,
            ),
        )

    # Idempotency -------------------------------------------------------------------------

    def recall(self, user_id: int, key: str) -> tuple[str, str, str] | None:
        """(conversation, user message, reply) of an earlier send with this Idempotency-Key."""
        row = self.db.execute(
            "SELECT conversation_id, user_message_id, reply_id FROM idempotency_keys"
            " WHERE user_id = ? AND key = ?",
            (user_id, key),
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def remember(
        self,
        conn: sqlite3.Connection,
        user_id: int,
        key: str,
        cid: str,
        user_message_id: str,
        reply_id: str,
    ) -> None:
        conn.execute(
            "INSERT INTO idempotency_keys (user_id, key, conversation_id, user_message_id,"
            " reply_id) VALUES (?, ?, ?, ?, ?)",
            (user_id, key, cid, user_message_id, reply_id),
        )


def _checked(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate patchable fields and turn them into column values; errors name the field."""
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in PATCHABLE:
            raise InvalidRequest(
                f"Unknown field '{name}' (one of {', '.join(PATCHABLE)}).", param=name
            )
        if name in ("title", "system_prompt", "model", "folder"):
            if value is not None and not isinstance(value, str):
                raise InvalidRequest(f"'{name}' must be a string or null.", param=name)
            values[name] = value if name != "title" else (value or "")
        elif name in ("pinned", "archived"):
            if not isinstance(value, bool):
                raise InvalidRequest(f"'{name}' must be true or false.", param=name)
            values[name] = int(value)
        elif name == "tags":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise InvalidRequest("'tags' must be a list of strings.", param="tags")
            values[name] = json.dumps(sorted(set(value)))
        elif name == "tools":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise InvalidRequest("'tools' must be a list of tool names.", param="tools")
            unknown = sorted(set(value) - set(TOOLS))
            if unknown:
                raise InvalidRequest(
                    f"Unknown tool '{unknown[0]}' (built in: {', '.join(TOOLS)}).", param="tools"
                )
            values[name] = json.dumps(sorted(set(value)))
    return values
