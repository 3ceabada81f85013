"""GET /admin/moderation: every moderation decision, newest first (admin scope only)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from chatapp.directory import Directory
from chatapp.directory import parse_expiry as parse_time
from chatapp.errors import InvalidRequest
from chatapp.moderation import read_log
from chatapp.moderation_config import ACTIONS
from server.auth import authenticate
from server.state import state_of

__all__ = ["moderation_log"]


async def moderation_log(request: Request) -> JSONResponse:
    """?since=ISO&action=block|flag&user=name-or-id&category=&limit=100"""
    authenticate(request, "admin")
    state = state_of(request)
    query = request.query_params
    action = query.get("action") or None
    if action is not None and action not in ACTIONS:
        raise InvalidRequest(f"action must be one of {', '.join(ACTIONS)}", param="action")
    limit = query.get("limit", "100")
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 10_000):
        raise InvalidRequest("limit must be a whole number from 1 to 10000", param="limit")
    user = query.get("user")
    config = state.config
    directory = Directory(state.accounts.db, config.tiers, config.server.default_tier)
    try:
        since = parse_time(query.get("since")) if query.get("since") else None
    except InvalidRequest:
        raise InvalidRequest("since must be an ISO date or time", param="since") from None
    rows = read_log(
        state.accounts.db,
        since=since,
        action=action,
        user_id=directory.user_id(user) if user else None,
        category=query.get("category") or None,
        limit=int(limit),
    )
    return JSONResponse({"data": rows})
