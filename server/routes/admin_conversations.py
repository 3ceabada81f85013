"""/admin/conversations: export every conversation (JSON Lines), import them, purge deleted ones.

An export line is the same JSON as a user's own export plus the owner's name, so the file
moves conversations between servers; importing re-creates them under new ids.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from chatapp.conversations import ConversationStore
from chatapp.directory import Directory
from chatapp.errors import InvalidRequest, NotFound
from chatapp.sharing import Sharing, import_on_own_connection
from chatapp.store import open_database
from server.auth import authenticate
from server.body import read_body
from server.protocol import parse_json
from server.state import GatewayState, state_of

__all__ = ["export_all", "import_one", "purge_deleted"]

# A single conversation can be far larger than a chat request; admins may import it whole.
_IMPORT_LIMIT = 32 * 1024 * 1024
_BATCH = 50


def _admin(request: Request) -> tuple[GatewayState, Directory]:
    authenticate(request, "admin")
    state = state_of(request)
    config = state.config
    return state, Directory(state.accounts.db, config.tiers, config.server.default_tier)


async def export_all(request: Request) -> StreamingResponse:
    """GET ?user=: every live conversation (or one user's), one JSON object per line.

    x-total-count says how many lines will come, for a progress bar. Conversations are read
    in small batches with a yield between them, so a big export never stalls other requests.
    """
    state, directory = _admin(request)
    ref = request.query_params.get("user")
    owners = {u["id"]: u["name"] for u in directory.users(status=None)} | {
        u["id"]: u["name"] for u in directory.users(status="deleted")
    }
    ids = state.conversations.ids_of(directory.user_id(ref) if ref else None)
    sharing = Sharing(state.conversations)

    async def lines() -> AsyncIterator[bytes]:
        for start in range(0, len(ids), _BATCH):
            chunk = []
            for cid, owner in ids[start : start + _BATCH]:
                try:
                    exported = sharing.export(owner, cid)
                except NotFound:
                    continue  # deleted since the export began: not part of it any more
                record = {**exported, "user": owners.get(owner)}
                chunk.append(json.dumps(record, ensure_ascii=False) + "\n")
            yield "".join(chunk).encode("utf-8")
            await asyncio.sleep(0)

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"x-total-count": str(len(ids))},
    )


async def import_one(request: Request) -> JSONResponse:
    """POST ?user=: one exported conversation (a line of an export) for that user, or for the
    user the line names."""
    state, directory = _admin(request)
    raw = await read_body(request, max(_IMPORT_LIMIT, state.config.server.max_body_bytes))
    data = await anyio.to_thread.run_sync(parse_json, raw)  # up to 32 MB: ~0.3 s of parsing
    ref = request.query_params.get("user") or data.get("user")
    if not isinstance(ref, str | int) or ref == "":
        raise InvalidRequest("say whose conversation this is: ?user=<name or id>", param="user")
    user_id = directory.user_id(ref)
    created = await anyio.to_thread.run_sync(import_on_own_connection, state.db_path, user_id, data)
    return JSONResponse(created, status_code=201)


async def purge_deleted(request: Request) -> JSONResponse:
    """POST ?older_than_days=0&limit=500&dry_run=false: delete for good what users deleted.

    Answers how many went and how many are left, so a client can purge in short batches.
    """
    state, _ = _admin(request)
    days = _number(request, "older_than_days", 0.0, most=36500)
    limit = int(_number(request, "limit", 500, most=100_000))
    if limit < 1:
        raise InvalidRequest("limit must be at least 1", param="limit")
    older_than = timedelta(days=days)
    dry_run = request.query_params.get("dry_run", "").lower() in ("1", "true", "yes")
    purged, remaining = await anyio.to_thread.run_sync(
        _purge_on_own_connection, state.db_path, older_than, 0 if dry_run else limit
    )
    return JSONResponse({"purged": purged, "remaining": remaining})


def _purge_on_own_connection(path: Path, older_than: timedelta, limit: int) -> tuple[int, int]:
    """(purged, remaining) after purging at most `limit` (0: only counting); blocking, for a
    worker thread. A purge deletes thousands of messages and their search entries (0.7 s for
    200 conversations of 20 messages here): on the loop's connection every stream would stop
    meanwhile. Here the loop goes on, and its commits get the write lock between the purge's
    short transactions."""
    with open_database(path, migrate=False) as db:
        store = ConversationStore(db)
        purged = store.purge(older_than, limit=limit) if limit else 0
        return purged, store.purgeable(older_than)


def _number(request: Request, name: str, default: float, *, most: float) -> float:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number", param=name) from None
    if not 0 <= number <= most:
        raise InvalidRequest(f"{name} must be between 0 and {most:g}", param=name)
    return number
