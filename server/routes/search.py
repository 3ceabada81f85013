"""GET /v1/search?q=: the caller's messages and titles, best match first, with snippets."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from chatapp.errors import InvalidRequest
from chatapp.search import MARK
from server.auth import authenticate
from server.state import state_of

__all__ = ["search_conversations"]


async def search_conversations(request: Request) -> JSONResponse:
    principal = authenticate(request)
    state = state_of(request)
    limit = request.query_params.get("limit", "20")
    if not (limit.isascii() and limit.isdigit() and len(limit) < 5) or not 1 <= int(limit) <= 100:
        raise InvalidRequest("limit must be a whole number from 1 to 100", param="limit")
    prefix = request.query_params.get("prefix", "false")
    if prefix not in ("true", "false"):
        raise InvalidRequest("prefix must be true or false", param="prefix")
    hits = await state.searcher.find(
        principal.user_id,
        request.query_params.get("q", ""),
        limit=int(limit),
        prefix=prefix == "true",
    )
    return JSONResponse({"object": "list", "data": hits, "mark": list(MARK)})
