"""The gateway keeps the server's own `send` in the scope only while a request runs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Message

from server.app import Gateway
from server.sse import SERVER_SEND


async def test_the_server_send_leaves_the_scope_when_the_request_ends() -> None:
    """uvicorn's `send` belongs to an object that holds the scope: kept in it after the
    request, the two would be a reference cycle left for the garbage collector."""
    seen: list[bool] = []

    async def endpoint(request: Request) -> PlainTextResponse:
        seen.append(request.scope.get(SERVER_SEND) is send)
        return PlainTextResponse("ok")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    await Gateway(routes=[Route("/", endpoint)])(scope, receive, send)
    assert seen == [True] and SERVER_SEND not in scope
