"""The one place chatapp errors become HTTP statuses and OpenAI-shaped error bodies."""

from __future__ import annotations

import logging
import sqlite3

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from chatapp.errors import (
    AuthenticationError,
    Conflict,
    EngineUnavailable,
    InvalidRequest,
    NotFound,
    NotStored,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RequestError,
    UpstreamError,
)

__all__ = ["error_body", "error_response", "exception_handlers", "status_for"]

log = logging.getLogger("chatapp.server")

_STATUS: dict[type[RequestError], tuple[int, str]] = {
    InvalidRequest: (400, "invalid_request_error"),
    AuthenticationError: (401, "authentication_error"),
    PermissionDenied: (403, "permission_error"),
    NotFound: (404, "invalid_request_error"),
    Conflict: (409, "invalid_request_error"),
    PayloadTooLarge: (413, "invalid_request_error"),
    RateLimited: (429, "rate_limit_error"),
    EngineUnavailable: (503, "server_error"),
    NotStored: (503, "server_error"),
    UpstreamError: (502, "server_error"),
}


def status_for(exc: RequestError) -> tuple[int, str]:
    """HTTP status and OpenAI error type for an error class (the nearest mapped base wins)."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 400, "invalid_request_error"


def error_body(exc: RequestError) -> dict[str, object]:
    _, kind = status_for(exc)
    return {"error": {"message": exc.message, "type": kind, "param": exc.param, "code": exc.code}}


def error_response(exc: RequestError) -> JSONResponse:
    status, _ = status_for(exc)
    headers = dict(exc.headers)
    if isinstance(exc, EngineUnavailable | RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(exc), status_code=status, headers=headers)


async def _request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404/405 and friends, in OpenAI's shape too."""
    assert isinstance(exc, HTTPException)
    body = {
        "error": {
            "message": f"{exc.detail}: {request.method} {request.url.path}",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found" if exc.status_code == 404 else None,
        }
    }
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """SQLite could not do its part (locked past its timeout, disk full, an I/O error): the
    request's transaction was rolled back, and sending it again is the remedy."""
    log.error("database error on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        NotStored("The database could not serve this request; nothing changed", exc)
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not a client error: logged with its traceback, answered without one."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    body = {
        "error": {
            "message": "Internal error; the server log has the details.",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    return JSONResponse(body, status_code=500)


exception_handlers = {
    RequestError: _request_error,
    HTTPException: _http_error,
    sqlite3.OperationalError: _database_unavailable,
    Exception: _unexpected,
}
