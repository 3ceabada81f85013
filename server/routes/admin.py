"""/admin/*: tiers, limit overrides, quota explanations and usage reports (admin scope only).

Changes go through the running server, so they apply to the very next request.
"""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatapp.directory import Directory
from chatapp.errors import InvalidRequest, NotFound
from chatapp.limits import LIMIT_KINDS
from chatapp.quotas import LEVELS, Override
from chatapp.report_fields import REPORT_DIMENSIONS, REPORT_MEASURES
from chatapp.store import transaction
from server.auth import authenticate
from server.body import read_json
from server.state import GatewayState, state_of

__all__ = [
    "explain_quota",
    "get_limits",
    "list_tiers",
    "quota",
    "set_limits",
    "set_tier",
    "set_tier_limits",
    "tier",
    "usage_report",
]


def _admin(request: Request) -> GatewayState:
    authenticate(request, "admin")
    return state_of(request)


def _tier_view(state: GatewayState, name: str) -> dict[str, Any]:
    """A tier's limits in force (models.toml plus run-time changes), per model where they
    differ, and which values were changed at run time."""
    quotas = state.meter.quotas
    limits = quotas.tier_limits(name, "").as_dict()
    per_model = {}
    for model in state.config.models:
        values = quotas.tier_limits(name, model).as_dict()
        if values != limits:
            per_model[model] = values
    overrides = {model or "*": dict(v) for model, v in quotas.tier_overrides(name).items() if v}
    return {
        "name": name,
        "default": name == state.config.server.default_tier,
        "limits": limits,
        "models": per_model,
        "overrides": overrides,
    }


async def list_tiers(request: Request) -> JSONResponse:
    state = _admin(request)
    tiers = {name: _tier_view(state, name) for name in state.config.tiers}
    return JSONResponse({"default_tier": state.config.server.default_tier, "tiers": tiers})


def _known_tier(state: GatewayState, name: str) -> str:
    if name not in state.config.tiers:
        known = ", ".join(sorted(state.config.tiers)) or "none"
        raise NotFound(f"No tier '{name}' (defined in models.toml: {known}).", param="tier")
    return name


async def tier(request: Request) -> JSONResponse:
    state = _admin(request)
    return JSONResponse(_tier_view(state, _known_tier(state, request.path_params["name"])))


async def set_tier_limits(request: Request) -> JSONResponse:
    """PUT {"model"?, "limits": {kind: value or null}} changes a tier at run time;
    DELETE ?kind=&model= goes back to models.toml's value."""
    state = _admin(request)
    name = _known_tier(state, request.path_params["name"])
    quotas = state.meter.quotas
    if request.method == "DELETE":
        kind = request.query_params.get("kind", "")
        if kind not in LIMIT_KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(LIMIT_KINDS)}", param="kind")
        quotas.clear_tier_limit(name, request.query_params.get("model", ""), kind)
        return JSONResponse(_tier_view(state, name))
    model, overrides = await _limits_body(request, state, "tier", 0)
    for o in overrides:
        quotas.set_tier_limit(name, model, o.kind, o.value)
    return JSONResponse(_tier_view(state, name))


def _subject(request: Request) -> tuple[str, int]:
    level = request.path_params["level"]
    if level not in LEVELS:
        raise NotFound(f"No such level '{level}' (use one of {', '.join(LEVELS)}).")
    return level, _id(request)


def _id(request: Request) -> int:
    """The {subject_id} of the path, within what SQLite can store (else 404)."""
    subject_id = int(request.path_params["subject_id"])
    if subject_id > 2**63 - 1:
        raise NotFound(f"No subject with id {subject_id}.")
    return subject_id


async def get_limits(request: Request) -> JSONResponse:
    state = _admin(request)
    level, subject_id = _subject(request)
    overrides = state.meter.quotas.overrides_of(level, subject_id)
    return JSONResponse(
        {
            "level": level,
            "id": subject_id,
            "overrides": {model or "*": values for model, values in overrides.items()},
        }
    )


async def set_limits(request: Request) -> JSONResponse:
    """PUT {"model"?: name, "limits": {kind: value or null}}; null means no limit of that kind.

    DELETE with ?kind=...&model=... removes an override so the tier's value applies again.
    """
    state = _admin(request)
    level, subject_id = _subject(request)
    quotas = state.meter.quotas
    if request.method == "DELETE":
        kind = request.query_params.get("kind", "")
        if kind not in LIMIT_KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(LIMIT_KINDS)}", param="kind")
        quotas.clear_override(level, subject_id, request.query_params.get("model", ""), kind)
        return await get_limits(request)
    _, overrides = await _limits_body(request, state, level, subject_id)
    quotas.set_overrides(overrides)
    return await get_limits(request)


async def _limits_body(
    request: Request, state: GatewayState, level: str, subject_id: int
) -> tuple[str, list[Override]]:
    """The model ('' for all) and the limit values of a PUT body."""
    body = await read_json(request, state.config.server.max_body_bytes)
    model = body.get("model") or ""
    limits = body.get("limits")
    if not isinstance(model, str):
        raise InvalidRequest("model must be a model name", param="model")
    if not isinstance(limits, dict) or not limits:
        raise InvalidRequest('send {"limits": {"requests_per_minute": 60, ...}}', param="limits")
    overrides = []
    for kind, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidRequest(
                f"limits.{kind} must be a whole number or null", param=f"limits.{kind}"
            )
        overrides.append(Override(level, subject_id, model, kind, value))
    return model, overrides


async def set_tier(request: Request) -> JSONResponse:
    """PUT /admin/{orgs|users}/{id}/tier {"tier": name} (null for a user: use the org's)."""
    state = _admin(request)
    table = request.path_params["table"]
    if table not in ("orgs", "users"):
        raise NotFound(f"No tier to set on '{table}' (use orgs or users).")
    subject_id = _id(request)
    body = await read_json(request, state.config.server.max_body_bytes)
    tier = body.get("tier")
    if tier is None and table == "orgs":
        raise InvalidRequest("an org needs a tier", param="tier")
    if tier is not None and tier not in state.config.tiers:
        known = ", ".join(sorted(state.config.tiers))
        raise InvalidRequest(f"unknown tier '{tier}' (defined: {known})", param="tier")
    db = state.accounts.db
    with transaction(db):
        updated = db.execute(
            f"UPDATE {table} SET tier = ? WHERE id = ?",  # table: routed literal
            (tier, subject_id),
        ).rowcount
    if not updated:
        raise NotFound(f"No {table[:-1]} with id {subject_id}.")
    return JSONResponse({"id": subject_id, "tier": tier})


async def explain_quota(request: Request) -> JSONResponse:
    """GET ?key=<id or prefix>&model=<name>&tokens=<n>: would this key be admitted, and why."""
    state = _admin(request)
    ref = request.query_params.get("key", "")
    principal = state.accounts.find_key(ref) if ref else None
    if principal is None:
        raise NotFound(
            f"No single key matches '{ref}' (give its id or display prefix).", param="key"
        )
    model = state.pool(request.query_params.get("model") or next(iter(state.pools))).model
    tokens = request.query_params.get("tokens")
    if tokens is not None and not (tokens.isascii() and tokens.isdigit() and len(tokens) < 16):
        raise InvalidRequest("tokens must be a whole number", param="tokens")
    explained = state.meter.explain(principal, model, int(tokens) if tokens else None)
    return JSONResponse(
        {
            "key": {
                "id": principal.key_id,
                "prefix": principal.key_prefix,
                "user_id": principal.user_id,
                "org_id": principal.org_id,
            },
            **explained,
        }
    )


async def quota(request: Request) -> JSONResponse:
    """GET /admin/quota/{key|user|org}/{ref}?model=: each limit in force and what is left.

    For a key, every level that applies to it (key, user, org); for a user or an org, its own.
    """
    state = _admin(request)
    level = request.path_params["level"]
    directory = Directory(state.accounts.db, state.config.tiers, state.config.server.default_tier)
    principal = directory.principal_of(level, request.path_params["ref"])
    name = request.query_params.get("model")
    pools = [state.pool(name)] if name else list(state.pools.values())
    rows = []
    for pool in pools:
        subjects = state.meter.quotas.subjects(principal, pool.model.name)
        shown = subjects if level == "key" else [s for s in subjects if s.level == level]
        for bucket in state.meter.buckets(shown, pool.model.name, 0):
            rows.append(
                {
                    "model": pool.model.name,
                    "level": bucket["level"],
                    "subject_id": bucket["subject_id"],
                    "kind": bucket["kind"],
                    "limit": bucket["limit"],
                    "remaining": max(0, int(bucket["available"])),
                    "full_in_seconds": bucket["refill_seconds"],
                }
            )
    tiers = {"org": principal.org_tier, "user": principal.user_tier or principal.org_tier}
    return JSONResponse(
        {"level": level, "ref": request.path_params["ref"], "tiers": tiers, "data": rows}
    )


_NAMES = {
    "user": "SELECT id, name FROM users",
    "org": "SELECT id, name FROM orgs",
    "key": "SELECT id, prefix FROM api_keys",
}


def _named(state: GatewayState, by: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Report rows by user, org or key with the name (key prefix) next to the id: the ledger
    keeps ids only, so renaming never rewrites history."""
    sql = _NAMES.get(by)
    if sql is None:
        return rows
    names = dict(state.accounts.db.execute(sql).fetchall())
    return [{by: row[by], "name": names.get(row[by]), **row} for row in rows]


def _time(value: str | None, default: float, param: str, *, end: bool = False) -> float:
    """An ISO date or time (UTC unless it says otherwise); a bare date as `until` means the
    end of that day, so `since=2026-11-01&until=2026-11-30` covers all of November 30."""
    if not value:
        return default
    try:
        parsed = datetime.fromisoformat(value)
        if end and len(value) == 10:  # a date alone
            parsed += timedelta(days=1)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"{param} must be an ISO date or time, e.g. 2026-11-01", param=param
        ) from None


async def usage_report(request: Request) -> Response:
    """GET ?by=user|org|model|key|day&since=&until=&format=json|csv (default: last 30 days)."""
    state = _admin(request)
    by = request.query_params.get("by", "user")
    if by not in REPORT_DIMENSIONS:
        raise InvalidRequest(f"by must be one of {', '.join(REPORT_DIMENSIONS)}", param="by")
    now = time.time()
    since = _time(request.query_params.get("since"), now - 30 * 86400, "since")
    until = _time(request.query_params.get("until"), now + 1, "until", end=True)
    await anyio.to_thread.run_sync(state.ledger.flush)
    rows = await anyio.to_thread.run_sync(state.ledger.report, by, since, until)
    rows = _named(state, by, rows)
    totals: dict[str, Any] = {key: sum(row[key] for row in rows) for key in REPORT_MEASURES}
    if request.query_params.get("format") == "csv":
        out = io.StringIO()
        named = ["name"] if by in _NAMES else []
        writer = csv.DictWriter(out, fieldnames=[by, *named, *REPORT_MEASURES])
        writer.writeheader()
        writer.writerows(rows)
        return Response(out.getvalue(), media_type="text/csv")
    return JSONResponse({"by": by, "since": since, "until": until, "rows": rows, "totals": totals})
