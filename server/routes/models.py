"""GET /v1/models: the models this gateway serves, in OpenAI's list shape."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.auth import authenticate
from server.state import state_of

__all__ = ["list_models"]


async def list_models(request: Request) -> JSONResponse:
    state = state_of(request)
    authenticate(request)
    data = [
        {
            "id": name,
            "object": "model",
            "created": state.started_at,
            "owned_by": "chatapp",
            "context_window": pool.model.context_window,
            "ready": pool.ready,
        }
        for name, pool in state.pools.items()
    ]
    return JSONResponse({"object": "list", "data": data})
