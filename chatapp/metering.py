"""Quota admission, reconciliation and the usage event of each request, in one place.

`admit` estimates the request's tokens (prompt text plus max_tokens or the model's output
reserve), reserves them at every level, and records a `rate_limited` event when it refuses.
`finish` runs exactly once when the request ends however it ended: it settles the reservation
with the real token count and writes the usage event to the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from chatapp.accounts import Principal
from chatapp.config import Config, ModelConfig
from chatapp.errors import RateLimited
from chatapp.group_commit import GroupCommit
from chatapp.ledger import Ledger
from chatapp.limiter import BucketState, Limiter, Reservation, Subject
from chatapp.quotas import Quotas
from chatapp.store import transaction
from chatapp.token_count import message_text
from chatapp.usage import UsageEvent, write_outbox

__all__ = ["Meter", "Ticket", "estimate_tokens", "format_reset", "ratelimit_headers"]

log = logging.getLogger("chatapp.metering")

_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4


def estimate_tokens(body: Mapping[str, Any], model: ModelConfig) -> int:
    """An upper-leaning guess of what a request may use, for the reservation only."""
    messages: Sequence[Mapping[str, Any]] = body.get("messages", [])
    chars = sum(len(message_text(m)) for m in messages)
    prompt = math.ceil(chars / _CHARS_PER_TOKEN) + _PER_MESSAGE * len(messages) + 3
    output = body.get("max_tokens") or model.output_reserve
    return int(prompt + output)


@dataclass
class Ticket:
    """One admitted request on its way: who, which model, what it reserved, when it began."""

    request_id: str
    principal: Principal
    model: ModelConfig
    subjects: Sequence[Subject]
    reservation: Reservation
    started: float = field(default_factory=time.monotonic)
    finished: bool = False


class Meter:
    """Admission and accounting for every request, over the limiter, quotas and outbox."""

    def __init__(
        self,
        config: Config,
        db: sqlite_utils.Database,
        limiter: Limiter,
        quotas: Quotas,
        group_commit: GroupCommit | None = None,
    ) -> None:
        self.config = config
        self.db = db
        # Shared with the other writers of `db`'s connection on the loop (the conversations),
        # so that whatever ends in the same loop turn shares one commit.
        self.group_commit = group_commit or GroupCommit(db.conn)
        self.limiter = limiter
        self.quotas = quotas
        # Called with every usage event once it is written (metrics, the access log).
        self.observers: list[Callable[[UsageEvent], None]] = []

    def admit(
        self,
        principal: Principal,
        model: ModelConfig,
        body: Mapping[str, Any],
        *,
        request_id: str | None = None,
    ) -> Ticket:
        """Reserve the request's estimate at every level, or raise RateLimited (recorded).

        The usage event is filed under `request_id` (the request's own id, so the logs find
        it), which must be unique: the outbox keeps the first event of an id. Without one,
        a new id.
        """
        subjects = self.quotas.subjects(principal, model.name)
        request_id = request_id or f"req_{uuid.uuid4().hex}"
        try:
            reservation = self.limiter.admit(model.name, subjects, estimate_tokens(body, model))
        except RateLimited as refused:
            event = self._event(
                request_id,
                principal,
                model,
                status="rate_limited",
                usage=None,
                upstream=None,
                ttft=None,
                latency=None,
                conversation_id=None,
            )
            self._write_alone(event, None)
            self._observe(event)
            refused.headers = ratelimit_headers(self.limiter.state(model.name, subjects))
            raise
        return Ticket(request_id, principal, model, subjects, reservation)

    def rebuild(self, ledger: Ledger, *, window: float = 86400.0) -> int:
        """Charge the last day of the ledger into the buckets, so a restart keeps quotas.

        Run after the outbox has been flushed into the ledger; returns the events replayed.
        """
        orgs = dict(self.db.execute("SELECT id, tier FROM orgs").fetchall())
        users = {
            uid: (org_id, tier)
            for uid, org_id, tier in self.db.execute("SELECT id, org_id, tier FROM users")
        }
        events = []
        for ts, key_id, user_id, org_id, model, tokens in ledger.since(time.time() - window):
            if key_id is None or user_id is None or org_id is None or user_id not in users:
                continue
            principal = Principal(
                key_id=key_id,
                key_prefix="",
                user_id=user_id,
                user_name="",
                org_id=org_id,
                scopes=frozenset(),
                org_tier=orgs.get(org_id),
                user_tier=users[user_id][1],
            )
            events.append((ts, model, self.quotas.subjects(principal, model), tokens))
        self.limiter.replay(events)
        return len(events)

    def explain(
        self, principal: Principal, model: ModelConfig, tokens: int | None = None
    ) -> dict[str, Any]:
        """Whether a request of `tokens` would be admitted now, and if not, what refuses it.

        Reads the buckets without taking from them. Lists every bucket of every level with
        its limit, what is available and the seconds until it is full again.
        """
        subjects = self.quotas.subjects(principal, model.name)
        tokens = tokens if tokens is not None else model.output_reserve
        buckets = self.buckets(subjects, model.name, tokens)
        refusals = [row for row in buckets if not row["fits"]]
        refused_by = max(refusals, key=lambda r: (r["never_fits"], r["wait_seconds"]), default=None)
        return {
            "model": model.name,
            "tokens": tokens,
            "allowed": refused_by is None,
            "refused_by": refused_by,
            "tiers": {"org": principal.org_tier, "user": principal.user_tier or principal.org_tier},
            "limits": {s.level: s.limits.as_dict() for s in subjects},
            "buckets": buckets,
        }

    def buckets(self, subjects: Sequence[Subject], model: str, tokens: int) -> list[dict[str, Any]]:
        """Every bucket of these subjects now: limit, what is available, refill, and whether
        a request of `tokens` fits (read only: nothing is taken)."""
        rows = []
        for state in self.limiter.state(model, subjects):
            cost = tokens if state.kind.startswith("tokens") else 1
            fits = cost <= state.available
            wait = (
                0.0
                if fits
                else (cost - state.available)
                * state.refill_seconds
                / max(1e-9, state.limit - state.available)
            )
            rows.append(
                {
                    "level": state.level,
                    "subject_id": state.subject_id,
                    "kind": state.kind,
                    "limit": state.limit,
                    "available": round(state.available, 3),
                    "refill_seconds": round(state.refill_seconds, 3),
                    "fits": fits,
                    "never_fits": cost > state.limit,
                    "wait_seconds": round(wait, 3),
                }
            )
        for subject in subjects:
            limit = subject.limits.concurrent_streams
            if limit is None:
                continue
            in_use = self.limiter.streams_in_use(model, subject)
            rows.append(
                {
                    "level": subject.level,
                    "subject_id": subject.id,
                    "kind": "concurrent_streams",
                    "limit": limit,
                    "available": limit - in_use,
                    "refill_seconds": 0.0,
                    "fits": in_use < limit,
                    "never_fits": False,
                    "wait_seconds": 0.0,
                }
            )
        return rows

    def remaining(self, principal: Principal, model: ModelConfig) -> dict[str, Any]:
        """For each limit kind, the strictest level's limit and what is left of it now."""
        subjects = self.quotas.subjects(principal, model.name)
        left: dict[str, Any] = {}
        for state in self.limiter.state(model.name, subjects):
            best = left.get(state.kind)
            if best is None or state.available < best["remaining"]:
                left[state.kind] = {
                    "limit": state.limit,
                    "remaining": state.remaining,
                    "level": state.level,
                    "resets_in": format_reset(state.refill_seconds),
                }
        return left

    def headers(self, ticket: Ticket) -> dict[str, str]:
        return ratelimit_headers(self.limiter.state(ticket.model.name, ticket.subjects))

    def finish(
        self,
        ticket: Ticket,
        *,
        status: str,
        usage: Mapping[str, Any] | None,
        upstream: str | None,
        first_token_at: float | None = None,
        conversation_id: str | None = None,
        also: Callable[[sqlite3.Connection], None] | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> None:
        """Settle the reservation with the real tokens and write the usage event, once.

        `also` runs in the same SQLite transaction as the usage row (the assistant message of a
        conversation), so the two are stored together or not at all. With `conn`, they are
        written in the transaction its caller holds open (chatapp.group_commit), and a failed
        write raises to that caller; without, in one of their own, and a failure is logged.

        The settle comes first and cannot be skipped: a failed write must never leave a
        reservation (and its concurrent-stream slot) held forever.
        """
        event = self._settle(ticket, status, usage, upstream, first_token_at, conversation_id)
        if event is None:
            return
        if conn is not None:
            self._write(conn, event, also)
        else:
            self._write_alone(event, also)
        self._observe(event)

    async def finish_shared(
        self,
        ticket: Ticket,
        *,
        status: str,
        usage: Mapping[str, Any] | None,
        upstream: str | None,
        first_token_at: float | None = None,
    ) -> None:
        """`finish` for a request ending on the event loop: its usage row shares a commit with
        the other writes of that loop turn (streams that end together), and a write lock held
        elsewhere is waited for on the loop's timers, not in SQLite's busy handler, which
        would stop every stream of the process meanwhile. A failed write is logged."""
        event = self._settle(ticket, status, usage, upstream, first_token_at, None)
        if event is None:
            return
        written = False

        def write(conn: sqlite3.Connection) -> None:
            nonlocal written
            self._write(conn, event, None)
            written = True

        try:
            await self.group_commit.run(write)
        except sqlite3.Error:
            log.exception("usage event %s could not be written: %s", event.request_id, event)
        except asyncio.CancelledError:
            if not written:  # cancelled before its batch ran (a shutdown): written alone
                self._write_alone(event, None)
            raise
        self._observe(event)

    def _settle(
        self,
        ticket: Ticket,
        status: str,
        usage: Mapping[str, Any] | None,
        upstream: str | None,
        first_token_at: float | None,
        conversation_id: str | None,
    ) -> UsageEvent | None:
        """The reservation settled and the request's usage event; None if it was already."""
        if ticket.finished:
            return None
        ticket.finished = True
        prompt, completion, _ = _usage_numbers(usage)
        self.limiter.settle(ticket.reservation, prompt + completion)
        return self._event(
            ticket.request_id,
            ticket.principal,
            ticket.model,
            status=status,
            usage=usage,
            upstream=upstream,
            ttft=(first_token_at - ticket.started) * 1000 if first_token_at else None,
            latency=(time.monotonic() - ticket.started) * 1000,
            conversation_id=conversation_id,
        )

    def _event(
        self,
        request_id: str,
        principal: Principal,
        model: ModelConfig,
        *,
        status: str,
        usage: Mapping[str, Any] | None,
        upstream: str | None,
        ttft: float | None,
        latency: float | None,
        conversation_id: str | None,
    ) -> UsageEvent:
        prompt, completion, cached = _usage_numbers(usage)
        return UsageEvent(
            request_id=request_id,
            ts=time.time(),
            key_id=principal.key_id,
            user_id=principal.user_id,
            org_id=principal.org_id,
            conversation_id=conversation_id,
            model=model.name,
            upstream=upstream,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            ttft_ms=ttft,
            latency_ms=latency,
            status=status,
            cost=UsageEvent.price(model.pricing, prompt, completion),
        )

    def _write_alone(
        self, event: UsageEvent, also: Callable[[sqlite3.Connection], None] | None
    ) -> None:
        try:
            with transaction(self.db):
                self._write(self.db.conn, event, also)
        except sqlite3.Error:
            # The answer has been served; losing its usage row is bad, failing the client
            # for it would be worse. Loud, so an operator sees it.
            log.exception("usage event %s could not be written: %s", event.request_id, event)

    def _observe(self, event: UsageEvent) -> None:
        for observe in self.observers:
            try:
                observe(event)
            except Exception:  # noqa: BLE001 - an observer's bug must not fail the request
                log.exception("usage observer failed")

    def _write(
        self,
        conn: sqlite3.Connection,
        event: UsageEvent,
        also: Callable[[sqlite3.Connection], None] | None,
    ) -> None:
        if also is not None:
            also(conn)
        if self.config.server.record_usage:
            write_outbox(conn, event)


def _usage_numbers(usage: Mapping[str, Any] | None) -> tuple[int, int, int]:
    """(prompt, completion, cached) tokens from an engine's usage; 0 for what is missing or
    not a number, so a malformed usage object can never break accounting."""

    def number(source: Any, key: str) -> int:
        value = source.get(key) if isinstance(source, Mapping) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    usage = usage or {}
    details = usage.get("prompt_tokens_details")
    return (
        number(usage, "prompt_tokens"),
        number(usage, "completion_tokens"),
        number(details, "cached_tokens"),
    )


def format_reset(seconds: float) -> str:
    """Durations as OpenAI writes them in x-ratelimit-reset-*: 20ms, 6s, 1m30s, 2h0m5s."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _tightest(states: Sequence[BucketState], kinds: tuple[str, str]) -> BucketState | None:
    """The bucket with the least left of these kinds (so a spent daily limit is what a client
    is told about, not a per-minute bucket with room); ties go to the per-minute one."""
    candidates = [s for s in states if s.kind in kinds]
    if not candidates:
        return None
    return min(candidates, key=lambda s: (s.remaining, kinds.index(s.kind), s.limit))


def ratelimit_headers(states: Sequence[BucketState]) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers from the strictest bucket, per minute or per day."""
    headers: dict[str, str] = {}
    for name, kinds in (
        ("requests", ("requests_per_minute", "requests_per_day")),
        ("tokens", ("tokens_per_minute", "tokens_per_day")),
    ):
        state = _tightest(states, kinds)
        if state is None:
            continue
        headers[f"x-ratelimit-limit-{name}"] = str(state.limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(state.remaining)
        headers[f"x-ratelimit-reset-{name}"] = format_reset(state.refill_seconds)
    return headers
