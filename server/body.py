"""Read a request body under the configured size limit, as JSON."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from chatapp.errors import InvalidRequest, PayloadTooLarge
from server.protocol import parse_json

__all__ = ["read_body", "read_json"]


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 413 as soon as it passes `limit` bytes (read no further)."""
    return parse_json(await read_body(request, limit))


async def read_body(request: Request, limit: int) -> bytes:
    """The body's bytes; 413 as soon as it passes `limit` bytes (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Content-Length is not a number.")
        if int(declared) > limit:
            raise PayloadTooLarge(_too_large(limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> str:
    return (
        f"The request body is larger than this server accepts ({limit} bytes; "
        "see server.max_body_bytes in models.toml)."
    )
