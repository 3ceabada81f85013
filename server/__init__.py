"""The Starlette gateway: OpenAI-compatible routes, auth and SSE, thin over chatapp/."""

from __future__ import annotations

from server.app import create_app

__all__ = ["create_app"]
