"""/admin/orgs, /admin/users, /admin/keys: people and their keys, named by id or name.

A key's secret appears once, in the answer to the POST that makes it. An admin cannot suspend
or delete their own user, or revoke the key they are calling with: that would lock them out.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from chatapp.accounts import Principal
from chatapp.directory import Directory
from chatapp.errors import InvalidRequest
from server.auth import authenticate
from server.body import read_json
from server.state import state_of

__all__ = ["key", "keys", "org", "orgs", "user", "users"]


def _admin(request: Request) -> tuple[Principal, Directory]:
    principal = authenticate(request, "admin")
    state = state_of(request)
    config = state.config
    directory = Directory(state.accounts.db, config.tiers, config.server.default_tier)
    return principal, directory


async def _body(request: Request) -> dict[str, Any]:
    return await read_json(request, state_of(request).config.server.max_body_bytes)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


async def orgs(request: Request) -> JSONResponse:
    """GET lists orgs with their member counts; POST {"name", "tier"?} adds one."""
    _, directory = _admin(request)
    if request.method == "POST":
        return JSONResponse(directory.add_org(await _body(request)), status_code=201)
    return JSONResponse({"data": directory.orgs()})


async def org(request: Request) -> JSONResponse:
    """GET an org with its users; PATCH {"tier"?, "name"?}."""
    _, directory = _admin(request)
    ref = request.path_params["ref"]
    if request.method == "PATCH":
        return JSONResponse(directory.update_org(ref, await _body(request)))
    return JSONResponse(directory.org(ref))


async def users(request: Request) -> JSONResponse:
    """GET ?org=&status= lists users; POST {"name", "org"?, "email"?, "tier"?, "admin"?}."""
    _, directory = _admin(request)
    if request.method == "POST":
        return JSONResponse(directory.add_user(await _body(request)), status_code=201)
    found = directory.users(
        org=request.query_params.get("org") or None,
        status=request.query_params.get("status") or None,
    )
    return JSONResponse({"data": found})


async def user(request: Request) -> JSONResponse:
    """GET a user with their keys; PATCH {"tier"?, "status"?, "org"?, "email"?}; DELETE."""
    principal, directory = _admin(request)
    ref = request.path_params["ref"]
    if request.method == "GET":
        return JSONResponse(directory.user(ref))
    own = directory.user_id(ref) == principal.user_id
    if request.method == "DELETE":
        if own:
            raise InvalidRequest("You cannot delete your own user (use another admin's key).")
        return JSONResponse(directory.delete_user(ref))
    fields = await _body(request)
    if own and fields.get("status") == "suspended":
        raise InvalidRequest("You cannot suspend your own user (use another admin's key).")
    return JSONResponse(directory.update_user(ref, fields))


async def keys(request: Request) -> JSONResponse:
    """GET ?user=&prefix=&all=true lists keys (never secrets); POST makes one, secret once."""
    _, directory = _admin(request)
    if request.method == "POST":
        created, record = directory.create_key(await _body(request))
        return JSONResponse({**record, "secret": created.secret}, status_code=201)
    found = directory.keys(
        user=request.query_params.get("user") or None,
        prefix=request.query_params.get("prefix") or None,
        include_revoked=_flag(request, "all"),
    )
    return JSONResponse({"data": found})


async def key(request: Request) -> JSONResponse:
    """GET a key; PATCH {"expires_at"?, "scopes"?, "name"?}; DELETE revokes it."""
    principal, directory = _admin(request)
    ref = request.path_params["ref"]
    if request.method == "GET":
        return JSONResponse(directory.key(ref))
    if request.method == "DELETE":
        if directory.key(ref)["id"] == principal.key_id:
            raise InvalidRequest("You cannot revoke the key you are using (use another key).")
        return JSONResponse(directory.revoke_key(ref))
    fields = await _body(request)
    scopes = fields.get("scopes")
    own = directory.key(ref)["id"] == principal.key_id
    if own and isinstance(scopes, list) and "admin" not in scopes:
        raise InvalidRequest("You cannot take admin scope from the key you are using.")
    if own and fields.get("expires_at") is not None:
        raise InvalidRequest("You cannot set an expiry on the key you are using (use another).")
    return JSONResponse(directory.update_key(ref, fields))
