"""/healthz (the process answers) and /readyz (every model has an engine that can take work)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.state import state_of

__all__ = ["healthz", "readyz"]


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """200 when every model can serve; else 503 with Retry-After and each model's state."""
    pools = state_of(request).pools
    models = {
        name: {
            "ready": pool.ready,
            "upstreams": [
                {
                    "name": u.name,
                    "ready": u.ready,
                    "state": u.supervisor.state.value if u.supervisor else "remote",
                    "restarts": u.supervisor.restarts if u.supervisor else 0,
                }
                for u in pool.upstreams
            ],
        }
        for name, pool in pools.items()
    }
    ready = all(pool.ready for pool in pools.values())
    return JSONResponse(
        {"status": "ready" if ready else "starting", "models": models},
        status_code=200 if ready else 503,
        headers={} if ready else {"Retry-After": "5"},
    )
