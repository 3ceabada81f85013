"""The admin commands' way to the running server: httpx, a key with admin scope, clear errors.

The URL and key come from `--url`/`--key`, else CHATAPP_URL/CHATAPP_API_KEY, else the local
credentials file that `chatapp init` wrote, else http://127.0.0.1:8000.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import typer

from chatapp.credentials import read_credentials
from chatapp.paths import CREDENTIALS_NAME, default_home
from cli.common import fail

__all__ = ["AdminClient", "Target", "client_of", "path_ref", "resolve_target"]

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Target:
    """Which server to talk to, and with which key."""

    url: str
    key: str | None


def resolve_target(url: str | None, key: str | None) -> Target:
    """Flags and environment (typer fills both into the options) win over the credentials file."""
    stored = read_credentials(default_home() / CREDENTIALS_NAME)
    return Target(
        url=(url or stored.get("url") or DEFAULT_URL).rstrip("/"),
        key=key or stored.get("api_key") or None,
    )


class AdminClient:
    """Calls /admin/* and turns every failure into one line that says what to do."""

    def __init__(self, target: Target, *, timeout: float = 30.0) -> None:
        self.target = target
        headers = {"Authorization": f"Bearer {target.key}"} if target.key else {}
        try:
            self.http = httpx.Client(base_url=target.url, headers=headers, timeout=timeout)
        except httpx.InvalidURL:
            raise fail(f"'{target.url}' is not a URL: pass --url http://HOST:PORT") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Mapping[str, Any] | None = None, **params: Any) -> Any:
        return self.request("POST", path, json=body or {}, params=params)

    def put(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("PUT", path, json=body)

    def patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """The JSON answer (or text, for CSV), or a one-line error and exit status 1."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if self.target.key is None:
            raise fail(
                "no API key: run `chatapp init`, or pass --key / set CHATAPP_API_KEY "
                "to a key with admin scope"
            )
        try:
            response = self.http.request(method, path, json=json, content=content, params=query)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        except httpx.InvalidURL:
            url = self.target.url
            raise fail(f"'{url}' is not a usable URL: pass --url http://HOST:PORT") from None
        self._check(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    @contextmanager
    def stream(self, path: str, **params: Any) -> Iterator[httpx.Response]:
        """A streamed GET (JSON Lines exports): the response, its body not yet read."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            with self.http.stream("GET", path, params=query, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: httpx.TransportError) -> typer.Exit:
        url = self.target.url
        if isinstance(exc, httpx.ConnectError):
            return fail(
                f"cannot reach the chatapp server at {url}: start it with `chatapp serve` "
                "(or pass --url / set CHATAPP_URL)"
            )
        return fail(f"the chatapp server at {url} did not answer ({type(exc).__name__})")

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        message = _error_message(response)
        if response.status_code == 401:
            raise fail(f"the server refused the key: {message} (pass --key or set CHATAPP_API_KEY)")
        if response.status_code == 403:
            raise fail(
                f"{message} — admin commands need a key with admin scope "
                "(`chatapp key` prints the admin key made by `chatapp init`)"
            )
        raise fail(message)

    def close(self) -> None:
        self.http.close()


def _error_message(response: httpx.Response) -> str:
    """The `error.message` of an OpenAI-shaped error, else the status line."""
    try:
        error = response.json().get("error", {})
        message = error.get("message") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        message = None
    return str(message or f"the server answered {response.status_code} {response.reason_phrase}")


def client_of(ctx: typer.Context) -> AdminClient:
    """The client for the target that the top-level callback resolved."""
    target = ctx.find_root().obj
    if not isinstance(target, Target):
        target = resolve_target(None, None)
    client = AdminClient(target)
    ctx.call_on_close(client.close)
    return client


def path_ref(ref: str) -> str:
    """A name, id or prefix as one URL path segment."""
    return quote(ref, safe="")
