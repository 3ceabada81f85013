"""The one exception tree of chatapp; server/ maps each class to an HTTP status in one place.

ChatAppError
├── ConfigError             models.toml is unreadable or invalid (names the file and key)
├── StorageError            the database cannot be opened or migrated
└── RequestError            something a client sent or asked for (each maps to a status)
    ├── InvalidRequest          400: malformed JSON or a bad field (names the field)
    ├── AuthenticationError     401: missing, unknown, expired or revoked key
    ├── PermissionDenied        403: the key lacks the scope for this route
    ├── NotFound                404: unknown model or route
    ├── Conflict                409: a name that must be unique is taken
    ├── PayloadTooLarge         413: body over the configured limit
    ├── RateLimited             429: a quota is spent for now (carries Retry-After)
    ├── EngineUnavailable       503: no engine for the model is ready (carries Retry-After)
    └── UpstreamError           502: the engine failed or answered garbage
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ChatAppError",
    "ConfigError",
    "Conflict",
    "EngineUnavailable",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "RequestError",
    "StorageError",
    "UpstreamError",
]


class ChatAppError(Exception):
    """Base of every error chatapp raises on purpose."""


class ConfigError(ChatAppError):
    """models.toml cannot be used; the message names the file, the key and the problem."""

    def __init__(self, path: str, key: str | None, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class StorageError(ChatAppError):
    """The SQLite database cannot be opened or brought up to date."""


class RequestError(ChatAppError):
    """A request a client made cannot be served; `code` and `param` follow OpenAI's error shape."""

    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: dict[str, str] = {}  # extra response headers (e.g. x-ratelimit-*)
        if code is not None:
            self.code = code


class InvalidRequest(RequestError):
    """The body is not valid JSON or a field has a wrong value."""

    code = "invalid_request"


class AuthenticationError(RequestError):
    """No usable API key was presented."""

    code = "invalid_api_key"


class PermissionDenied(RequestError):
    """The key is valid but lacks the scope the route needs."""

    code = "insufficient_scope"


class NotFound(RequestError):
    """The named model or route does not exist."""

    code = "not_found"


class Conflict(RequestError):
    """The change would clash with what exists (a name already taken)."""

    code = "conflict"


class PayloadTooLarge(RequestError):
    """The request body is larger than the server accepts."""

    code = "request_too_large"


class RateLimited(RequestError):
    """A limit would be exceeded; `retry_after` is the whole seconds until the request fits."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after


class EngineUnavailable(RequestError):
    """No upstream for the model can take the request right now."""

    code = "engine_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotStored(RequestError):
    """What a request must store before it is served (a chat turn's question) could not be
    written: the database is locked, full or failing. Sending it again is the remedy."""

    code = "storage_error"

    def __init__(self, what: str, cause: Exception) -> None:
        super().__init__(
            f"{what} ({cause}). Send it again; if this keeps happening, the server's log says why."
        )


class UpstreamError(RequestError):
    """The engine failed while serving the request."""

    code = "upstream_error"
