"""GET /v1/tools: the built-in tools a conversation can enable (`"tools": [names]`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from chatapp.tools import TOOLS
from server.auth import authenticate

__all__ = ["list_tools"]


async def list_tools(request: Request) -> JSONResponse:
    authenticate(request)
    data = [
        {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
        for tool in TOOLS.values()
    ]
    return JSONResponse({"object": "list", "data": data})
