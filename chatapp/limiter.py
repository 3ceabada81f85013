"""In-memory token buckets per (level, subject, model); admission reserves in one step.

Every limit is a continuous bucket: capacity = the limit, refilled at limit/period per second,
so a client sending exactly at its rate is never refused and nothing resets at a window edge.
A bucket records what has been used (draining at that rate), not the room left, so a limit
raised or lowered by an admin changes the room at the very next request.

Admission checks every bucket of every level (key, user, org) and, only if all have room,
takes from all of them, under one lock and with no await, so concurrent requests cannot
overspend. A reservation is settled when the request ends: the estimated tokens are swapped
for the real ones (a refund or an extra charge; use may exceed the limit and then drains).
Limit values are read at each admission, never stored in a bucket. The four buckets of one
subject and model share one list `[time, used x4, streams in flight]`, so admitting costs three
dict lookups and settling none (the reservation keeps the lists).
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from chatapp.errors import InvalidRequest, RateLimited
from chatapp.limits import Limits

__all__ = ["BucketState", "Limiter", "Reservation", "Subject"]

Clock = Callable[[], float]
# (limit kind, seconds to refill from empty, whether it counts tokens rather than requests);
# a kind's slot in a subject's state list is its index here plus one.
_STREAMS = 5  # the slot counting requests in flight, for concurrent_streams
_BUCKETS = (
    ("requests_per_minute", 60.0, False),
    ("tokens_per_minute", 60.0, True),
    ("requests_per_day", 86400.0, False),
    ("tokens_per_day", 86400.0, True),
)
Rate = tuple[int, str, int, float, bool]  # slot, kind, limit, drain per second, counts tokens


@dataclass(frozen=True)
class Subject:
    """One level a request is counted at: ('key', 7), ('user', 3) or ('org', 1), with its limits."""

    level: str
    id: int
    limits: Limits
    rates: tuple[Rate, ...] = field(init=False, repr=False, compare=False)
    concurrent: int | None = field(init=False, repr=False, compare=False)
    closed: str | None = field(init=False, repr=False, compare=False)  # a kind limited to 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rates", _rates(self.limits))
        object.__setattr__(self, "concurrent", self.limits.concurrent_streams)
        zero = [kind for kind, value in self.limits.as_dict().items() if value == 0]
        object.__setattr__(self, "closed", zero[0] if zero else None)


_RATES: dict[Limits, tuple[Rate, ...]] = {}


def _rates(limits: Limits) -> tuple[Rate, ...]:
    """The bucket rates of a set of limits, shared by every subject with the same limits
    (fewer objects to chase through memory when 100,000 keys are active)."""
    rates = _RATES.get(limits)
    if rates is None:
        rates = tuple(
            (index + 1, kind, limit, limit / period, counts_tokens)
            for index, (kind, period, counts_tokens) in enumerate(_BUCKETS)
            if (limit := getattr(limits, kind)) is not None and limit > 0
        )
        if len(_RATES) < 10_000:  # distinct limit sets are few; never grow without bound
            _RATES[limits] = rates
    return rates


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


@dataclass(slots=True)
class Reservation:
    """What an admitted request took; settle it exactly once when the request ends."""

    model: str
    subjects: Sequence[Subject]
    tokens: int
    states: list[array[float]] = field(default_factory=list, repr=False)
    settled: bool = False


class Limiter:
    """The buckets of every active subject; thread-safe, and never awaits while locked."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._buckets: dict[tuple[str, int, str], array[float]] = {}
        self._lock = threading.Lock()

    def _drained(self, subject: Subject, model: str, now: float) -> array[float]:
        """The subject's [time, used..., streams] array, drained to `now` (new: empty)."""
        key = (subject.level, subject.id, model)
        state = self._buckets.get(key)
        if state is None:
            state = self._buckets[key] = array("d", (now, 0.0, 0.0, 0.0, 0.0, 0.0))
            return state
        elapsed = now - state[0]
        if elapsed > 0:
            for slot, _, _, drain, _ in subject.rates:
                used = state[slot] - elapsed * drain
                state[slot] = used if used > 0 else 0.0
            state[0] = now
        return state

    def admit(self, model: str, subjects: Sequence[Subject], tokens: int) -> Reservation:
        """Reserve one request and `tokens` at every level, or raise without taking anything.

        RateLimited (429) carries the seconds until the request would fit; a request larger
        than a bucket's whole capacity can never fit and is an InvalidRequest (400) instead.
        This is the hot path of every request: one pass, no helper calls per bucket.
        """
        with self._lock:
            now = self.clock()
            buckets = self._buckets
            states = []
            wait, blocker = 0.0, ""
            for subject in subjects:
                key = (subject.level, subject.id, model)
                state = buckets.get(key)
                if state is None:
                    state = buckets[key] = array("d", (now, 0.0, 0.0, 0.0, 0.0, 0.0))
                elapsed = now - state[0]
                for slot, kind, limit, drain, counts_tokens in subject.rates:
                    used = state[slot]
                    if elapsed > 0:
                        used -= elapsed * drain
                        if used < 0:
                            used = 0.0
                        state[slot] = used
                    cost = tokens if counts_tokens else 1
                    over = used + cost - limit
                    # The tolerance absorbs float drift: a client sending exactly at its rate
                    # must find exactly one request's room, not one minus 1e-16.
                    if over > limit * 1e-9:
                        if cost > limit:
                            raise self._never_fits(subject, kind, limit, cost, model)
                        if over / drain > wait:
                            wait, blocker = over / drain, f"{subject.level} {kind} ({limit})"
                if elapsed > 0:
                    state[0] = now
                if subject.closed is not None:
                    raise self._never_fits(subject, subject.closed, 0, 1, model)
                concurrent = subject.concurrent
                if concurrent is not None and state[_STREAMS] >= concurrent:
                    wait = max(wait, 1.0)
                    blocker = blocker or f"{subject.level} concurrent_streams ({concurrent})"
                states.append(state)
            if blocker:
                retry_after = max(1, math.ceil(wait))
                raise RateLimited(
                    f"Rate limit reached for '{model}': {blocker}. Retry in {retry_after}s.",
                    retry_after=retry_after,
                )
            for subject, state in zip(subjects, states):  # noqa: B905 (same length by build)
                for slot, _, _, _, counts_tokens in subject.rates:
                    state[slot] += tokens if counts_tokens else 1
                state[_STREAMS] += 1
            return Reservation(model, subjects, tokens, states)

    @staticmethod
    def _never_fits(subject: Subject, kind: str, limit: int, cost: int, model: str) -> Exception:
        tokens_kind = kind.startswith("tokens") and limit > 0
        if tokens_kind:
            message = (
                f"This request needs about {cost} tokens but the {subject.level}'s {kind} "
                f"limit for '{model}' is {limit}: it can never fit. Lower max_tokens or "
                "shorten the messages."
            )
        else:
            message = (
                f"The {subject.level}'s {kind} limit for '{model}' is 0: no request can be "
                "admitted until an admin raises it."
            )
        return InvalidRequest(
            message,
            param="max_tokens" if tokens_kind else None,
            code="exceeds_rate_limit_capacity",
        )

    def settle(self, reservation: Reservation, tokens_used: int) -> None:
        """Swap the reserved token estimate for what was used, and free the stream slots."""
        with self._lock:
            if reservation.settled:
                return
            reservation.settled = True
            delta = tokens_used - reservation.tokens
            now = self.clock()
            for subject, state in zip(reservation.subjects, reservation.states):  # noqa: B905
                state[_STREAMS] -= 1
                if not delta:
                    continue
                elapsed = now - state[0]
                for slot, _, _, drain, counts_tokens in subject.rates:
                    used = state[slot] - (elapsed * drain if elapsed > 0 else 0.0)
                    if counts_tokens:
                        used += delta
                    state[slot] = used if used > 0 else 0.0
                if elapsed > 0:
                    state[0] = now

    def replay(self, events: Iterable[tuple[float, str, Sequence[Subject], int]]) -> None:
        """Charge past requests (time, model, subjects, tokens), oldest first, at their times.

        Used at start-up with the last day of the ledger, so a restart does not reset quotas.
        """
        with self._lock:
            for at, model, subjects, tokens in events:
                for subject in subjects:
                    state = self._drained(subject, model, at)
                    for slot, _, _, _, counts_tokens in subject.rates:
                        state[slot] += tokens if counts_tokens else 1

    def state(self, model: str, subjects: Sequence[Subject]) -> list[BucketState]:
        """Every bucket of these subjects right now, for headers and `explain`."""
        with self._lock:
            now = self.clock()
            states = []
            for subject in subjects:
                state = self._drained(subject, model, now)
                for slot, kind, limit, drain, _ in subject.rates:
                    used = state[slot]
                    states.append(
                        BucketState(
                            subject.level, subject.id, kind, limit, limit - used, used / drain
                        )
                    )
            return states

    def streams_in_use(self, model: str, subject: Subject) -> int:
        with self._lock:
            state = self._buckets.get((subject.level, subject.id, model))
            return int(state[_STREAMS]) if state else 0
