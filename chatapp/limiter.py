"""In-memory token buckets per (level, subject, model, limit); admission reserves in one step.

Every limit is a continuous bucket: capacity = the limit, refilled at limit/period per second,
so a client sending exactly at its rate is never refused and nothing resets at a window edge.
A bucket records what has been used (draining at that rate), not the room left, so a limit
raised or lowered by an admin changes the room at the very next request.
Admission checks every bucket of every level (key, user, org) and, only if all have room,
takes from all of them, under one lock and with no await, so concurrent requests cannot
overspend. A reservation is settled when the request ends: the estimated tokens are swapped
for the real ones (a refund or an extra charge; a bucket may go below zero and then refills).
Limit values are read at each admission, never cached in a bucket, so a change applies to the
next request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from chatapp.errors import InvalidRequest, RateLimited
from chatapp.limits import Limits

__all__ = ["BucketState", "Limiter", "Reservation", "Subject"]

Clock = Callable[[], float]
# (limit kind, seconds to refill from empty, whether it counts tokens rather than requests)
_BUCKETS = (
    ("requests_per_minute", 60.0, False),
    ("tokens_per_minute", 60.0, True),
    ("requests_per_day", 86400.0, False),
    ("tokens_per_day", 86400.0, True),
)
_TOKEN_KINDS = tuple(kind for kind, _, tokens in _BUCKETS if tokens)
_PERIOD = {kind: period for kind, period, _ in _BUCKETS}


@dataclass(frozen=True)
class Subject:
    """One level a request is counted at: ('key', 7), ('user', 3) or ('org', 1), with its limits."""

    level: str
    id: int
    limits: Limits


@dataclass(frozen=True)
class BucketState:
    """A bucket as `explain` and the headers see it."""

    level: str
    subject_id: int
    kind: str
    limit: int
    available: float
    refill_seconds: float  # until the bucket is full again

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.available))


@dataclass
class Reservation:
    """What an admitted request took; settle it exactly once when the request ends."""

    model: str
    subjects: Sequence[Subject]
    tokens: int
    streams: list[tuple[str, int, str]] = field(default_factory=list)
    settled: bool = False


class Limiter:
    """The buckets of every active subject; thread-safe, and never awaits while locked."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._buckets: dict[tuple[str, int, str, str], list[float]] = {}
        self._streams: dict[tuple[str, int, str], int] = {}
        self._lock = threading.Lock()

    def _used(self, key: tuple[str, int, str, str], limit: int, period: float, now: float) -> float:
        """What the bucket holds as used now: the recorded use, drained at limit/period per s.

        Buckets keep use rather than room, so a changed limit changes the room at once.
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        elapsed = now - bucket[1]
        if elapsed <= 0:
            return bucket[0]
        return max(0.0, bucket[0] - elapsed * limit / period)

    def admit(self, model: str, subjects: Sequence[Subject], tokens: int) -> Reservation:
        """Reserve one request and `tokens` at every level, or raise without taking anything.

        RateLimited (429) carries the seconds until the request would fit; a request larger
        than a bucket's whole capacity can never fit and is an InvalidRequest (400) instead.
        """
        with self._lock:
            now = self.clock()
            plan: list[tuple[tuple[str, int, str, str], float]] = []
            wait, blocker = 0.0, ""
            streams = []
            for subject in subjects:
                limits = subject.limits
                for kind, period, counts_tokens in _BUCKETS:
                    limit = getattr(limits, kind)
                    if limit is None:
                        continue
                    cost = tokens if counts_tokens else 1
                    if cost > limit:
                        raise InvalidRequest(
                            f"This request needs about {cost} tokens but the {subject.level}'s "
                            f"{kind} limit for '{model}' is {limit}: it can never fit. "
                            "Lower max_tokens or shorten the messages.",
                            param="max_tokens",
                            code="exceeds_rate_limit_capacity",
                        )
                    key = (subject.level, subject.id, model, kind)
                    used = self._used(key, limit, period, now)
                    if used + cost > limit:
                        needed = (used + cost - limit) * period / limit
                        if needed > wait:
                            wait, blocker = needed, f"{subject.level} {kind} ({limit})"
                    plan.append((key, used + cost))
                concurrent = limits.concurrent_streams
                if concurrent is not None:
                    stream_key = (subject.level, subject.id, model)
                    if self._streams.get(stream_key, 0) >= concurrent:
                        wait = max(wait, 1.0)
                        blocker = blocker or f"{subject.level} concurrent_streams ({concurrent})"
                    streams.append(stream_key)
            if blocker:
                retry_after = max(1, math.ceil(wait))
                raise RateLimited(
                    f"Rate limit reached for '{model}': {blocker}. Retry in {retry_after}s.",
                    retry_after=retry_after,
                )
            for key, used in plan:
                self._buckets[key] = [used, now]
            for stream_key in streams:
                self._streams[stream_key] = self._streams.get(stream_key, 0) + 1
            return Reservation(model=model, subjects=subjects, tokens=tokens, streams=streams)

    def settle(self, reservation: Reservation, tokens_used: int) -> None:
        """Swap the reserved token estimate for what was used, and free the stream slots."""
        with self._lock:
            if reservation.settled:
                return
            reservation.settled = True
            now = self.clock()
            delta = tokens_used - reservation.tokens
            if delta:
                for subject in reservation.subjects:
                    for kind in _TOKEN_KINDS:
                        limit = getattr(subject.limits, kind)
                        if limit is None:
                            continue
                        key = (subject.level, subject.id, reservation.model, kind)
                        used = self._used(key, limit, _PERIOD[kind], now)
                        self._buckets[key] = [max(0.0, used + delta), now]
            for stream_key in reservation.streams:
                left = self._streams.get(stream_key, 0) - 1
                if left > 0:
                    self._streams[stream_key] = left
                else:
                    self._streams.pop(stream_key, None)

    def replay(self, events: Iterable[tuple[float, str, Sequence[Subject], int]]) -> None:
        """Charge past requests (time, model, subjects, tokens), oldest first, at their times.

        Used at start-up with the last day of the ledger, so a restart does not reset quotas.
        """
        with self._lock:
            for at, model, subjects, tokens in events:
                for subject in subjects:
                    for kind, period, counts_tokens in _BUCKETS:
                        limit = getattr(subject.limits, kind)
                        if limit is None:
                            continue
                        key = (subject.level, subject.id, model, kind)
                        cost = tokens if counts_tokens else 1
                        self._buckets[key] = [self._used(key, limit, period, at) + cost, at]

    def state(self, model: str, subjects: Sequence[Subject]) -> list[BucketState]:
        """Every bucket of these subjects right now, for headers and `explain`."""
        with self._lock:
            now = self.clock()
            states = []
            for subject in subjects:
                for kind, period, _ in _BUCKETS:
                    limit = getattr(subject.limits, kind)
                    if limit is None:
                        continue
                    key = (subject.level, subject.id, model, kind)
                    used = self._used(key, limit, period, now)
                    states.append(
                        BucketState(
                            subject.level,
                            subject.id,
                            kind,
                            limit,
                            limit - used,
                            used * period / limit,
                        )
                    )
            return states

    def streams_in_use(self, model: str, subject: Subject) -> int:
        with self._lock:
            return self._streams.get((subject.level, subject.id, model), 0)
