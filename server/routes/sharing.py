"""Export (Markdown, JSON), import, and share links (the public page needs no key)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from chatapp.errors import InvalidRequest
from chatapp.sharing import Sharing, import_on_own_connection, to_html, to_markdown
from server.auth import authenticate
from server.body import read_body, read_json
from server.protocol import parse_json
from server.state import state_of

__all__ = ["create_share", "export", "import_conversation", "public_share", "revoke_share"]


def _sharing(request: Request) -> Sharing:
    return Sharing(state_of(request).conversations)


async def export(request: Request) -> Response:
    """GET ?format=markdown|json (JSON has every branch and imports back)."""
    principal = authenticate(request)
    cid = request.path_params["cid"]
    fmt = request.query_params.get("format", "json")
    sharing = _sharing(request)
    if fmt == "json":
        return JSONResponse(sharing.export(principal.user_id, cid))
    if fmt in ("markdown", "md"):
        store = sharing.store
        conversation = store.get(principal.user_id, cid)
        text = to_markdown(conversation, store.path(cid, conversation["current_leaf"]))
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")
    raise InvalidRequest("format must be markdown or json", param="format")


async def import_conversation(request: Request) -> JSONResponse:
    principal = authenticate(request)
    state = state_of(request)
    raw = await read_body(request, state.config.server.max_body_bytes)
    created = await anyio.to_thread.run_sync(
        _parse_and_import, state.db_path, principal.user_id, raw
    )
    return JSONResponse(created, status_code=201)


def _parse_and_import(db_path: Path, user_id: int, raw: bytes) -> dict[str, Any]:
    """A long conversation's JSON and rows both take the loop's time: neither runs there."""
    return import_on_own_connection(db_path, user_id, parse_json(raw))


async def create_share(request: Request) -> JSONResponse:
    """POST {expires_in?: seconds}: a read-only link to the current branch."""
    principal = authenticate(request)
    body = await read_json(request, state_of(request).config.server.max_body_bytes)
    expires_in = body.get("expires_in")
    if expires_in is not None and (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not math.isfinite(expires_in)
        or not 0 < expires_in <= 10 * 365 * 86400
    ):
        raise InvalidRequest("expires_in must be seconds, up to ten years", param="expires_in")
    share = _sharing(request).share(principal.user_id, request.path_params["cid"], expires_in)
    return JSONResponse(share, status_code=201)


async def revoke_share(request: Request) -> JSONResponse:
    principal = authenticate(request)
    params = request.path_params
    _sharing(request).revoke(principal.user_id, params["cid"], params["token"])
    return JSONResponse({"token": params["token"], "revoked": True})


async def public_share(request: Request) -> Response:
    """GET /share/{token}: HTML for people, JSON with ?format=json or Accept: application/json."""
    conversation, messages = _sharing(request).shared(request.path_params["token"])
    wants_json = request.query_params.get("format") == "json" or (
        "application/json" in request.headers.get("accept", "")
    )
    if wants_json:
        return JSONResponse({"conversation": conversation, "messages": messages})
    return HTMLResponse(to_html(conversation, messages))
