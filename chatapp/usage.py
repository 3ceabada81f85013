"""One usage event per request, written to the SQLite outbox on the request's own path."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from operator import attrgetter

from chatapp.config import Pricing

__all__ = ["OUTBOX_COLUMNS", "STATUSES", "UsageEvent", "write_outbox"]

STATUSES = ("ok", "error", "cancelled", "filtered", "rate_limited")


@dataclass(frozen=True)
class UsageEvent:
    """What one request used; `request_id` makes it land in the ledger exactly once."""

    request_id: str
    ts: float
    key_id: int | None
    user_id: int | None
    org_id: int | None
    conversation_id: str | None
    model: str
    upstream: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ttft_ms: float | None
    latency_ms: float | None
    status: str
    cost: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @staticmethod
    def price(pricing: Pricing, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * pricing.input_per_1m + completion_tokens * pricing.output_per_1m
        ) / 1_000_000


OUTBOX_COLUMNS = tuple(f.name for f in fields(UsageEvent))
# The row's values, read straight off the event: dataclasses.astuple deep-copies every field,
# 190 us a request on the event loop.
_values = attrgetter(*OUTBOX_COLUMNS)
_INSERT = (
    f"INSERT OR IGNORE INTO usage_outbox ({', '.join(OUTBOX_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in OUTBOX_COLUMNS)})"
)


def write_outbox(conn: sqlite3.Connection, event: UsageEvent) -> None:
    """Add the event to the outbox; inside a caller's transaction when it has one open."""
    conn.execute(_INSERT, _values(event))
