"""The chat client's way to the server: async httpx over the conversations API, typed errors.

Replies stream as SSE; when the connection drops mid-reply the stream is picked up again with
Last-Event-ID, so a caller sees every event once, in order, whatever the network did.

ApiError                  the server answered with an error (its OpenAI-shaped message)
├── ServerUnreachable     no answer at the URL: says how to start the server
└── RateLimited           429: a quota is spent for now; `retry_after` seconds until it fits
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import aconnect_sse

from chatapp.credentials import read_credentials
from chatapp.paths import CREDENTIALS_NAME, default_home
from tui.data import (
    ChatMessage,
    Completed,
    Conversation,
    ModelInfo,
    Page,
    SearchHit,
    Started,
    StreamEvent,
    event_of,
)

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "ChatApi",
    "Endpoint",
    "RateLimited",
    "ServerUnreachable",
    "resolve_endpoint",
]

DEFAULT_URL = "http://127.0.0.1:8000"
# Reconnects of a dropped reply stream before giving up: ~10 s in all, a server restart's worth.
RESUME_DELAYS = (0.2, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0)


@dataclass(frozen=True)
class Endpoint:
    """Which server to talk to, and with which key."""

    url: str
    key: str | None


def resolve_endpoint(url: str | None = None, key: str | None = None) -> Endpoint:
    """Arguments, else CHATAPP_URL / CHATAPP_API_KEY, else the credentials file, else the
    local default (the same order as the admin CLI's)."""
    stored = read_credentials(default_home() / CREDENTIALS_NAME)
    return Endpoint(
        url=(url or os.environ.get("CHATAPP_URL") or stored.get("url") or DEFAULT_URL).rstrip("/"),
        key=key or os.environ.get("CHATAPP_API_KEY") or stored.get("api_key") or None,
    )


class ApiError(Exception):
    """The server refused a request; `message` says why in words a person can act on."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ServerUnreachable(ApiError):
    """Nothing answers at the server URL."""

    def __init__(self, url: str, detail: str = "") -> None:
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"Cannot reach the chatapp server at {url}{why}: start it with `chatapp serve`."
        )
        self.url = url


class RateLimited(ApiError):
    """A 429: the quota is spent for now."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


def _seg(value: str) -> str:
    return quote(value, safe="")


class ChatApi:
    """The conversations, search, models and usage routes of one server, for one key."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        headers = {"Authorization": f"Bearer {endpoint.key}"} if endpoint.key else {}
        self.http = httpx.AsyncClient(
            base_url=endpoint.url, headers=headers, timeout=timeout, transport=transport
        )

    @property
    def url(self) -> str:
        return self.endpoint.url

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- plain JSON routes ------------------------------------------------------------------

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer, or a typed error."""
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.url, type(exc).__name__) from None
        if response.status_code >= 400:
            raise _error_of(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    async def conversations(
        self, *, cursor: str | None = None, limit: int = 50, archived: bool = False
    ) -> Page[Conversation]:
        """A page of the caller's conversations, newest first (the archived ones instead)."""
        params: dict[str, Any] = {"limit": limit}
        if archived:
            params["archived"] = "true"
        if cursor:
            params["cursor"] = cursor
        body = await self.request("GET", "/v1/conversations", params=params)
        return Page([Conversation.of(c) for c in body["data"]], body.get("next_cursor"))

    async def conversation(self, cid: str) -> Conversation:
        return Conversation.of(await self.request("GET", f"/v1/conversations/{_seg(cid)}"))

    async def create(self, **fields: Any) -> Conversation:
        body = {k: v for k, v in fields.items() if v is not None}
        return Conversation.of(await self.request("POST", "/v1/conversations", json=body))

    async def update(self, cid: str, **fields: Any) -> Conversation:
        """PATCH title, pinned, archived, system_prompt or model."""
        path = f"/v1/conversations/{_seg(cid)}"
        return Conversation.of(await self.request("PATCH", path, json=fields))

    async def delete(self, cid: str) -> None:
        await self.request("DELETE", f"/v1/conversations/{_seg(cid)}")

    async def messages(
        self, cid: str, *, before: str | None = None, limit: int = 30
    ) -> Page[ChatMessage]:
        """The current branch, newest last; `cursor` is the `before` of the older page."""
        params: dict[str, Any] = {"limit": limit}
        if before:
            params["before"] = before
        body = await self.request("GET", f"/v1/conversations/{_seg(cid)}/messages", params=params)
        return Page([ChatMessage.of(m) for m in body["data"]], body.get("previous"))

    async def message(self, cid: str, mid: str) -> ChatMessage:
        path = f"/v1/conversations/{_seg(cid)}/messages/{_seg(mid)}"
        return ChatMessage.of(await self.request("GET", path))

    async def cancel(self, cid: str, mid: str) -> ChatMessage:
        path = f"/v1/conversations/{_seg(cid)}/messages/{_seg(mid)}/cancel"
        return ChatMessage.of(await self.request("POST", path))

    async def siblings(self, cid: str, mid: str) -> list[ChatMessage]:
        path = f"/v1/conversations/{_seg(cid)}/messages/{_seg(mid)}/siblings"
        return [ChatMessage.of(m) for m in (await self.request("GET", path))["data"]]

    async def switch(self, cid: str, mid: str) -> Conversation:
        path = f"/v1/conversations/{_seg(cid)}/messages/{_seg(mid)}/switch"
        return Conversation.of(await self.request("POST", path))

    async def search(self, text: str, *, limit: int = 20) -> list[SearchHit]:
        params = {"q": text, "prefix": "true", "limit": limit}
        body = await self.request("GET", "/v1/search", params=params)
        return [
            SearchHit(
                conversation_id=hit["conversation_id"],
                title=hit.get("title"),
                snippet=hit.get("snippet") or "",
                message_id=hit.get("message_id"),
            )
            for hit in body["data"]
        ]

    async def models(self) -> list[ModelInfo]:
        body = await self.request("GET", "/v1/models")
        return [
            ModelInfo(m["id"], m.get("context_window"), bool(m.get("ready", True)))
            for m in body["data"]
        ]

    async def usage(self) -> dict[str, Any]:
        """Own usage today and this month, and what is left of each limit per model."""
        result: dict[str, Any] = await self.request("GET", "/v1/usage")
        return result

    async def export_markdown(self, cid: str) -> str:
        path = f"/v1/conversations/{_seg(cid)}/export"
        return str(await self.request("GET", path, params={"format": "markdown"}))

    # -- replies ------------------------------------------------------------------------------

    def send(
        self,
        cid: str,
        content: str,
        *,
        parent_id: str | None = None,
        branch: bool = False,
        **params: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Send a question and follow its reply. With `branch` (an edit) it goes under
        `parent_id` (None: the start); else after the current branch's last message."""
        body: dict[str, Any] = {"content": content}
        if branch or parent_id is not None:
            body["parent_id"] = parent_id
        body.update({k: v for k, v in params.items() if v is not None})
        return self._follow(cid, "POST", f"/v1/conversations/{_seg(cid)}/messages", body, 0)

    def regenerate(self, cid: str, mid: str, **params: Any) -> AsyncGenerator[StreamEvent, None]:
        """Another answer to the question that `mid` answered, as its sibling."""
        path = f"/v1/conversations/{_seg(cid)}/messages/{_seg(mid)}/regenerate"
        body = {k: v for k, v in params.items() if v is not None}
        return self._follow(cid, "POST", path, body, 0)

    def resume(self, cid: str, mid: str, *, after: int = 0) -> AsyncGenerator[StreamEvent, None]:
        """The events of a reply after event `after` (0: all of them, from the start)."""
        return self._follow(cid, "GET", self._events_path(cid, mid), None, after, mid)

    @staticmethod
    def _events_path(cid: str, mid: str) -> str:
        return f"/v1/conversations/{_seg(cid)}/messages/{_seg(mid)}/events"

    async def _follow(
        self,
        cid: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        after: int,
        reply_id: str | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Events until message.completed; a dropped connection resumes after the last one."""
        seq, failures = after, 0
        while True:
            headers = {"Last-Event-ID": str(seq)} if method == "GET" else {}
            kwargs: dict[str, Any] = {"headers": headers, "timeout": httpx.Timeout(30, read=120)}
            if body is not None:
                kwargs["json"] = body
            try:
                async with aconnect_sse(self.http, method, path, **kwargs) as source:
                    if source.response.status_code >= 400:
                        await source.response.aread()
                        raise _error_of(source.response)
                    async for sse in source.aiter_sse():
                        if not sse.id.isdigit() or int(sse.id) <= seq:
                            continue  # a comment, or an event already seen
                        seq, failures = int(sse.id), 0
                        event = event_of(sse.event, seq, json.loads(sse.data or "{}"))
                        if isinstance(event, Started):
                            reply_id = event.message_id
                        if event is not None:
                            yield event
                        if isinstance(event, Completed):
                            return
                raise httpx.RemoteProtocolError("the reply stream ended before the reply")
            except httpx.TransportError as exc:
                if reply_id is None:
                    # Nothing was admitted that could be resumed; the caller may send again.
                    raise ServerUnreachable(self.url, type(exc).__name__) from None
                if failures >= len(RESUME_DELAYS):
                    raise ServerUnreachable(self.url, "the reply stream broke") from None
                await asyncio.sleep(RESUME_DELAYS[failures])
                failures += 1
                method, path, body = "GET", self._events_path(cid, reply_id), None


def _error_of(response: httpx.Response) -> ApiError:
    """The typed error for an error answer, with the server's own message."""
    try:
        error = response.json().get("error", {})
        message = error.get("message") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        message = None
    text = str(message or f"the server answered {response.status_code} {response.reason_phrase}")
    if response.status_code == 429:
        try:
            retry = float(response.headers.get("retry-after", "1"))
        except ValueError:
            retry = 1.0
        return RateLimited(text, max(retry, 0.0))
    if response.status_code == 401:
        text = f"The server refused the key: {text} (pass --key or set CHATAPP_API_KEY)"
    return ApiError(text, response.status_code)
