"""A request id on every log line and response, an access log, and JSON Lines logs.

The id is the client's `x-request-id` when it sent a sane one, else a new one; it is returned
as `x-request-id` and carried by every log line the request causes (a conversation reply's
background task inherits it). The access log says method, route, status, model, tokens,
time to first token and duration — never prompt text.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatapp.usage import UsageEvent
from server.metrics import GatewayMetrics

__all__ = [
    "AccessLines",
    "JsonLines",
    "RequestContext",
    "RequestIdFilter",
    "WithRequestId",
    "made_request_id",
    "note_usage",
    "request_id",
]

access_log = logging.getLogger("chatapp.access")

request_id: ContextVar[str] = ContextVar("request_id", default="-")
# The id again when the gateway made it (so it is unique), for the records filed under it.
_made_id: ContextVar[str | None] = ContextVar("made_request_id", default=None)
_details: ContextVar[dict[str, Any] | None] = ContextVar("request_details", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
_RECORD_FIELDS = set(vars(logging.makeLogRecord({})))


def made_request_id() -> str | None:
    """The request's id if the gateway made it, else None (a client's own id may repeat).

    The request's usage row is filed under it, so an id from the logs or the `x-request-id`
    header finds the row; a client's id cannot be its key.
    """
    return _made_id.get()


def note_usage(event: UsageEvent) -> None:
    """A meter observer: what the request used goes into its access-log line.

    Only its first usage event: a conversation's title, asked for in a task that inherits the
    request's context, may finish before the reply's request is logged.
    """
    details = _details.get()
    if details is not None and "usage_id" not in details:
        details.update(
            usage_id=event.request_id,
            model=event.model,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
            ttft_ms=None if event.ttft_ms is None else round(event.ttft_ms, 1),
            outcome=event.status,
        )


class RequestContext:
    """Pure ASGI middleware (so streams pass through untouched)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        made = None if _SANE_ID.match(sent) else f"req_{uuid.uuid4().hex[:20]}"
        rid = made or sent
        id_token = request_id.set(rid)
        made_token = _made_id.set(made)
        details: dict[str, Any] = {}
        details_token = _details.set(details)
        started = time.monotonic()
        sender = _SendWithId(send, rid, self.metrics)
        try:
            await self.app(scope, receive, sender)
        finally:
            if sender.streaming:
                self.metrics.active_streams.dec()
            status = sender.status
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            seconds = time.monotonic() - started
            self.metrics.requests.labels(route, details.get("model") or "", str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(seconds)
            access_log.info(
                "%s %s %s %.1fms",
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                    **details,
                },
            )
            _details.reset(details_token)
            _made_id.reset(made_token)
            request_id.reset(id_token)


class _SendWithId:
    """The request's `send`: adds `x-request-id` to the start and notes the status and whether
    the answer streams. An object rather than a closure: fewer objects that every open stream
    holds for the garbage collector to walk."""

    __slots__ = ("metrics", "rid", "send", "status", "streaming")

    def __init__(self, send: Send, rid: str, metrics: GatewayMetrics) -> None:
        self.send = send
        self.rid = rid
        self.metrics = metrics
        self.status = 500  # until a response starts
        self.streaming = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = list(message.get("headers", []))
            headers.append((b"x-request-id", self.rid.encode("latin-1")))
            self.streaming = any(
                k == b"content-type" and v.startswith(b"text/event-stream") for k, v in headers
            )
            if self.streaming:
                self.metrics.active_streams.inc()
            message = {**message, "headers": headers}
        await self.send(message)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request it belongs to ('-' outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class WithRequestId(logging.Formatter):
    """For people: the message, then the request id when the line belongs to a request."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = getattr(record, "request_id", "-")
        return text if rid == "-" else f"{text}  ({rid})"


class AccessLines(logging.Formatter):
    """The access log for people, one plain line a request (rich's layout costs a millisecond
    a line, more than the rest of a short request): time, request, status, what it used."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [self.formatTime(record, "%Y-%m-%d %H:%M:%S"), record.getMessage()]
        model = getattr(record, "model", None)
        if model:
            parts.append(f"model={model}")
        prompt, completion = (
            getattr(record, "prompt_tokens", None),
            getattr(record, "completion_tokens", None),
        )
        if prompt is not None or completion is not None:
            parts.append(f"tokens={prompt or 0}+{completion or 0}")
        ttft = getattr(record, "ttft_ms", None)
        if ttft is not None:
            parts.append(f"ttft={ttft}ms")
        outcome = getattr(record, "outcome", None)
        if outcome and outcome != "ok":
            parts.append(f"outcome={outcome}")
        rid = getattr(record, "request_id", "-")
        usage_id = getattr(record, "usage_id", None)
        if usage_id and usage_id != rid:  # the client named the request: its row has our id
            parts.append(f"usage={usage_id}")
        parts.append(rid)
        return " ".join(parts)


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id.get()),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in line and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
