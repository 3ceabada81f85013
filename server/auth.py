"""Bearer-key authentication: every request is looked up afresh, so revocation applies at once."""

from __future__ import annotations

from starlette.requests import Request

from chatapp.accounts import Principal
from chatapp.errors import AuthenticationError, PermissionDenied
from server.state import state_of

__all__ = ["authenticate"]


def authenticate(request: Request, scope: str = "chat") -> Principal:
    """The caller's principal, or 401 (no/bad key) / 403 (key lacks `scope`)."""
    header = request.headers.get("authorization", "")
    kind, _, secret = header.partition(" ")
    secret = secret.strip()
    if kind.lower() != "bearer" or not secret:
        raise AuthenticationError(
            "Missing API key: send 'Authorization: Bearer <key>' (see `chatapp key`)."
        )
    principal = state_of(request).accounts.authenticate(secret)
    if not principal.can(scope):
        raise PermissionDenied(f"The API key {principal.key_prefix}… lacks the '{scope}' scope.")
    return principal
