"""A circuit breaker per upstream: stop sending to one that keeps failing, probe it later.

closed ──(N failures in a row)──▶ open ──(cooldown passed)──▶ half-open
   ▲                                 ▲                          │ one probe at a time
   └──────────(probe succeeds)───────┼──────────────────────────┤
                                     └─────(probe fails)────────┘
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures; while open, `allows()` is False until the cooldown ends."""

    def __init__(
        self,
        failures_to_open: int = 3,
        cooldown: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_open = failures_to_open
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allows(self) -> bool:
        """Whether a request may go now (in half-open, only while no probe is out)."""
        state = self.state
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and not self.probing
        )

    def on_send(self) -> None:
        """A request was sent: in half-open it is the probe, and no other goes until it ends."""
        if self.state is BreakerState.HALF_OPEN:
            self.probing = True

    def release_probe(self) -> None:
        """The probe ended without a verdict (cancelled, refused as busy): let another go."""
        self.probing = False

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def record_failure(self) -> None:
        self.failures += 1
        self.probing = False
        if self.opened_at is not None or self.failures >= self.failures_to_open:
            if self.opened_at is None:
                self.opened_count += 1
            self.opened_at = self.clock()  # a failed probe starts a new cooldown

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self.clock() - self.opened_at))
