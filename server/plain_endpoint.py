"""Streaming routes as plain ASGI apps rather than Starlette function endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["PlainEndpoint"]


class PlainEndpoint:
    """An endpoint function as a plain ASGI app: Starlette wraps a function endpoint in its
    request/response adapter and a second exception wrapper, layers that every open stream
    holds to its end (and the garbage collector walks at every collection), and that each
    request pays to go through. Errors still get their answers from the exception wrapper
    around the router; Route still checks the method and fills in the path parameters."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[ASGIApp]]) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive))
        await response(scope, receive, send)
