"""GET /v1/usage: the caller's own usage today and this month, per model, and what is left."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse

from server.auth import authenticate
from server.state import state_of

__all__ = ["own_usage"]

_SUMS = (
    "SELECT model, count(*), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens),"
    " sum(cost) FROM usage WHERE user_id = ? AND ts >= ? GROUP BY model ORDER BY model"
)


async def own_usage(request: Request) -> JSONResponse:
    principal = authenticate(request)
    state = state_of(request)
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    await anyio.to_thread.run_sync(state.ledger.flush)
    periods = {}
    for name, since in (("today", day), ("this_month", month)):
        rows = await anyio.to_thread.run_sync(state.ledger.query, _SUMS, (principal.user_id, since))
        periods[name] = {
            model: {
                "requests": n,
                "prompt_tokens": p,
                "completion_tokens": c,
                "cached_tokens": cached,
                "cost": cost,
            }
            for model, n, p, c, cached, cost in rows
        }
    remaining = {
        name: state.meter.remaining(principal, pool.model) for name, pool in state.pools.items()
    }
    return JSONResponse(
        {"user": principal.user_name, "as_of": time.time(), **periods, "remaining": remaining}
    )
