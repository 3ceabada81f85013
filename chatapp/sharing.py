"""Export, import and read-only share links of conversations.

JSON export carries the whole message tree (every branch) and imports back to an identical
tree under new ids; Markdown export is the current branch, for reading. A share link is a
random token that shows the current branch to anyone who has it, until it expires or is
revoked.
"""

from __future__ import annotations

import html
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chatapp.conversations import PATCHABLE, ConversationStore
from chatapp.errors import InvalidRequest, NotFound
from chatapp.ids import new_id
from chatapp.store import open_database, transaction

__all__ = ["EXPORT_FORMAT", "Sharing", "import_on_own_connection", "to_html", "to_markdown"]

EXPORT_FORMAT = "chatapp.conversation.v1"
_ROLES = ("system", "user", "assistant", "tool")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_markdown(conversation: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    lines = [f"# {conversation['title'] or 'Untitled conversation'}", ""]
    if conversation.get("system_prompt"):
        lines += [f"> System: {conversation['system_prompt']}", ""]
    for message in messages:
        lines += [f"**{message['role'].capitalize()}:**", "", message["content"], ""]
    return "\n".join(lines)


def to_html(conversation: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    title = html.escape(conversation["title"] or "Shared conversation")
    body = "\n".join(
        f'<section class="{html.escape(m["role"])}"><h2>{html.escape(m["role"].capitalize())}'
        f"</h2><pre>{html.escape(m['content'])}</pre></section>"
        for m in messages
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        "<style>body{font-family:sans-serif;max-width:50em;margin:auto}"
        "pre{white-space:pre-wrap}</style></head>"
        f"<body><h1>{title}</h1>{body}</body></html>"
    )


def import_on_own_connection(db_path: Path, user_id: int, data: Any) -> dict[str, Any]:
    """`Sharing.import_` on a connection of its own; blocking, for a worker thread. A long
    conversation is thousands of rows (32 ms for 2,000 messages here, an admin may send 32 MB):
    on the event loop's connection every stream would stop meanwhile."""
    with open_database(db_path, migrate=False) as db:
        return Sharing(ConversationStore(db)).import_(user_id, data)


class Sharing:
    """Export/import and share links over the conversation store."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        self.db = store.db

    def export(self, user_id: int, cid: str) -> dict[str, Any]:
        conversation = self.store.get(user_id, cid)
        messages = self.store.all_messages(cid)
        return {"format": EXPORT_FORMAT, "conversation": conversation, "messages": messages}

    def import_(self, user_id: int, data: Any) -> dict[str, Any]:
        """Recreate an exported conversation under new ids, every branch and the leaf kept.

        Everything is checked before anything is stored, so a bad file leaves nothing behind.
        """
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise InvalidRequest(
                f"Expected a JSON export with format '{EXPORT_FORMAT}'.", param="format"
            )
        source, messages = data.get("conversation"), data.get("messages")
        if not isinstance(source, dict) or not isinstance(messages, list):
            raise InvalidRequest(
                "An export has a 'conversation' and a 'messages' list.", param="messages"
            )
        fields = {k: source[k] for k in PATCHABLE if k in source}
        rows = _checked_messages(messages)
        leaf_ref = source.get("current_leaf")
        ids = {old: new_id("msg") for old, *_ in rows}
        with transaction(self.db):  # the conversation and its messages, or nothing
            cid = self.store.create(user_id, fields)["id"]  # validates fields first
            # role, content, model, status, finish reason, prompt and completion tokens: as
            # checked; `at` is both when it was made and last changed.
            for old, parent, *checked, at, tool_calls, tool_call_id in rows:
                self.db.execute(
                    "INSERT INTO messages (id, conversation_id, parent_id, role, content,"
                    " model, status, finish_reason, prompt_tokens, completion_tokens,"
                    " created_at, updated_at, tool_calls, tool_call_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        ids[old],
                        cid,
                        ids[parent] if parent else None,
                        *checked,
                        at,
                        at,
                        tool_calls,
                        tool_call_id,
                    ),
                )
            self.db.execute(
                "UPDATE conversations SET current_leaf = ? WHERE id = ?",
                (ids.get(leaf_ref) if isinstance(leaf_ref, str) else None, cid),
            )
        return self.store.get(user_id, cid)

    def share(self, user_id: int, cid: str, expires_in: float | None) -> dict[str, Any]:
        self.store.get(user_id, cid)
        token = secrets.token_urlsafe(24)
        expires = (
            _stamp(datetime.now(UTC) + timedelta(seconds=expires_in))
            if expires_in is not None
            else None
        )
        with transaction(self.db):
            self.db.execute(
                "INSERT INTO shares (token, conversation_id, user_id, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (token, cid, user_id, expires),
            )
        return {
            "token": token,
            "conversation_id": cid,
            "expires_at": expires,
            "path": f"/share/{token}",
        }

    def revoke(self, user_id: int, cid: str, token: str) -> None:
        self.store.get(user_id, cid)
        with transaction(self.db):
            changed = self.db.execute(
                "UPDATE shares SET revoked_at = ? WHERE token = ? AND conversation_id = ?"
                " AND user_id = ? AND revoked_at IS NULL",
                (_stamp(datetime.now(UTC)), token, cid, user_id),
            ).rowcount
        if not changed:
            raise NotFound(f"No active share '{token}' of this conversation.")

    def shared(self, token: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The conversation and branch behind a live token; NotFound for anything else."""
        row = self.db.execute(
            "SELECT conversation_id, user_id, expires_at, revoked_at FROM shares WHERE token = ?",
            (token,),
        ).fetchone()
        now = _stamp(datetime.now(UTC))
        if row is None or row[3] is not None or (row[2] is not None and row[2] <= now):
            raise NotFound("This share link does not exist, has expired or was revoked.")
        conversation = self.store.get(row[1], row[0])
        messages = self.store.path(row[0], conversation["current_leaf"])
        shown = {k: conversation[k] for k in ("id", "title", "system_prompt", "model")}
        return shown, [{k: m[k] for k in ("role", "content", "created_at")} for m in messages]


_STATUSES = ("complete", "incomplete", "cancelled", "error", "blocked", "filtered")
ImportRow = tuple[
    str,
    str | None,
    str,
    str,
    str | None,
    str,
    str | None,
    int | None,
    int | None,
    str,
    str | None,
    str | None,
]


def _checked_messages(messages: list[Any]) -> list[ImportRow]:
    """Exported messages as rows to insert; each one checked, parents before children.

    A reply that used tools hangs under the tool results stored after it, so an export's
    order is not always parents first: the rows are put in tree order here.
    """
    rows: list[ImportRow] = []
    seen: set[str] = set()
    ids = {m.get("id") for m in messages if isinstance(m, dict) and isinstance(m.get("id"), str)}

    def fail(i: int, field: str, problem: str) -> InvalidRequest:
        return InvalidRequest(f"messages[{i}].{field}: {problem}", param=f"messages[{i}].{field}")

    def optional(i: int, message: dict[str, Any], field: str) -> str | None:
        value = message.get(field)
        if value is not None and not isinstance(value, str):
            raise fail(i, field, "must be a string or null")
        return value

    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(
                f"messages[{i}] is not an exported message.", param=f"messages[{i}]"
            )
        old = message.get("id")
        if not isinstance(old, str) or old in seen:
            raise fail(i, "id", "must be a string not used by an earlier message")
        parent = optional(i, message, "parent_id")
        if parent is not None and (parent not in ids or parent == old):
            raise fail(i, "parent_id", "must name another message of the export")
        if message.get("role") not in _ROLES:
            raise fail(i, "role", f"must be one of {', '.join(_ROLES)}")
        if not isinstance(message.get("content"), str):
            raise fail(i, "content", "must be a string")
        status = message.get("status", "complete")
        if status not in _STATUSES:
            raise fail(i, "status", f"must be one of {', '.join(_STATUSES)}")
        usage = message.get("usage") or {}
        if not isinstance(usage, dict):
            raise fail(i, "usage", "must be an object or null")
        counts = []
        for name in ("prompt_tokens", "completion_tokens"):
            value = usage.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62
            ):
                raise fail(i, f"usage.{name}", "must be a whole number")
            counts.append(value)
        created = optional(i, message, "created_at") or _stamp(datetime.now(UTC))
        tool_calls = message.get("tool_calls")
        if tool_calls is not None and (
            not isinstance(tool_calls, list)
            or not all(
                isinstance(c, dict)
                and isinstance(c.get("id"), str)
                and isinstance(c.get("function"), dict)
                and isinstance(c["function"].get("name"), str)
                and isinstance(c["function"].get("arguments", ""), str)
                for c in tool_calls
            )
        ):
            raise fail(i, "tool_calls", "must be a list of {id, function: {name, arguments}}")
        rows.append(
            (
                old,
                parent,
                message["role"],
                message["content"],
                optional(i, message, "model"),
                status,
                optional(i, message, "finish_reason"),
                counts[0],
                counts[1],
                created,
                json.dumps(tool_calls) if tool_calls else None,
                optional(i, message, "tool_call_id"),
            )
        )
        seen.add(old)
    return _tree_order(rows)


def _tree_order(rows: list[ImportRow]) -> list[ImportRow]:
    """Parents before children, otherwise in the export's order (a loop of parents is
    refused: it is no tree)."""
    placed: set[str] = set()
    waiting: dict[str, list[ImportRow]] = {}
    ordered: list[ImportRow] = []

    def place(row: ImportRow) -> None:
        stack = [row]
        while stack:
            current = stack.pop()
            ordered.append(current)
            placed.add(current[0])
            stack.extend(reversed(waiting.pop(current[0], [])))

    for row in rows:
        parent = row[1]
        if parent is None or parent in placed:
            place(row)
        else:
            waiting.setdefault(parent, []).append(row)
    if len(ordered) != len(rows):
        raise InvalidRequest("messages: the parent_id links form a loop.", param="messages")
    return ordered
