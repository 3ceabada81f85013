"""Token-bucket arithmetic with an injected clock: refill, burst, reservation, refund, levels."""

from __future__ import annotations

import threading

import pytest

from chatapp.errors import InvalidRequest, RateLimited
from chatapp.limiter import Limiter, Subject
from chatapp.limits import Limits


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _key(**limits: int) -> list[Subject]:
    return [Subject("key", 1, Limits(**limits))]


def test_burst_up_to_capacity_then_refused_with_the_wait_until_it_fits() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    subjects = _key(requests_per_minute=6)
    for _ in range(6):
        limiter.admit("m", subjects, 0)
    with pytest.raises(RateLimited) as info:
        limiter.admit("m", subjects, 0)
    assert info.value.retry_after == 10  # one request refills in 60/6 s
    assert "key requests_per_minute (6)" in info.value.message


def test_continuous_refill_never_refuses_a_client_sending_exactly_at_its_rate() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    subjects = _key(requests_per_minute=60, tokens_per_minute=6000)
    admitted = []
    for _ in range(600):  # ten minutes at exactly 1 request and 100 tokens a second
        admitted.append(limiter.admit("m", subjects, 100))
        clock.now += 1.0
    assert len(admitted) == 600


def test_refill_is_proportional_to_time_and_capped_at_capacity() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    subjects = _key(tokens_per_minute=600)
    limiter.admit("m", subjects, 600)
    clock.now += 30
    [state] = limiter.state("m", subjects)
    assert state.available == pytest.approx(300)
    assert state.refill_seconds == pytest.approx(30)
    clock.now += 3600
    assert limiter.state("m", subjects)[0].available == 600


def test_reservation_is_refunded_or_charged_on_settle() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    subjects = _key(tokens_per_minute=1000)
    reservation = limiter.admit("m", subjects, 800)
    assert limiter.state("m", subjects)[0].available == pytest.approx(200)
    limiter.settle(reservation, 300)
    assert limiter.state("m", subjects)[0].available == pytest.approx(700)
    overrun = limiter.admit("m", subjects, 100)
    limiter.settle(overrun, 900)  # the engine used more than reserved: charged, may go negative
    assert limiter.state("m", subjects)[0].available == pytest.approx(-200)
    limiter.settle(overrun, 0)  # settling twice changes nothing
    assert limiter.state("m", subjects)[0].available == pytest.approx(-200)
    with pytest.raises(RateLimited) as info:
        limiter.admit("m", subjects, 1)
    assert info.value.retry_after == 13  # 201 tokens at 1000/60 per second


def test_every_level_applies_and_the_strictest_decides() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    org = Subject("org", 1, Limits(requests_per_minute=3))
    alice = [Subject("key", 1, Limits(requests_per_minute=10)), org]
    bob = [Subject("key", 2, Limits(requests_per_minute=10)), org]
    limiter.admit("m", alice, 0)
    limiter.admit("m", bob, 0)
    limiter.admit("m", alice, 0)
    with pytest.raises(RateLimited, match="org requests_per_minute"):
        limiter.admit("m", bob, 0)
    # A refusal takes nothing: bob's key bucket still has 9 of 10.
    assert limiter.state("m", bob[:1])[0].available == pytest.approx(9)


def test_models_have_separate_buckets() -> None:
    limiter = Limiter(Clock())
    subjects = _key(requests_per_minute=1)
    limiter.admit("a", subjects, 0)
    limiter.admit("b", subjects, 0)
    with pytest.raises(RateLimited):
        limiter.admit("a", subjects, 0)


def test_request_larger_than_a_bucket_can_never_fit() -> None:
    limiter = Limiter(Clock())
    with pytest.raises(InvalidRequest, match="can never fit") as info:
        limiter.admit("m", _key(tokens_per_minute=1000), 1001)
    assert info.value.code == "exceeds_rate_limit_capacity"


def test_concurrent_streams_are_held_until_settled() -> None:
    limiter = Limiter(Clock())
    subjects = _key(concurrent_streams=2)
    first = limiter.admit("m", subjects, 0)
    limiter.admit("m", subjects, 0)
    with pytest.raises(RateLimited, match="concurrent_streams"):
        limiter.admit("m", subjects, 0)
    limiter.settle(first, 0)
    limiter.admit("m", subjects, 0)


def test_a_changed_limit_applies_to_the_next_admission() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    limiter.admit("m", _key(requests_per_minute=2), 0)
    limiter.admit("m", _key(requests_per_minute=2), 0)
    with pytest.raises(RateLimited):
        limiter.admit("m", _key(requests_per_minute=2), 0)
    limiter.admit("m", _key(requests_per_minute=100), 0)  # raised: room at once, 98 left
    assert limiter.state("m", _key(requests_per_minute=100))[0].available == pytest.approx(97)


def test_threads_cannot_overspend_a_budget() -> None:
    limiter = Limiter(Clock())  # the clock stands still: no refill during the race
    subjects = _key(tokens_per_minute=10_000)
    admitted = []

    def worker() -> None:
        for _ in range(50):
            try:
                admitted.append(limiter.admit("m", subjects, 70))
            except RateLimited:
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 10_000 // 70
    assert limiter.state("m", subjects)[0].available == pytest.approx(10_000 - 70 * len(admitted))


def test_replay_rebuilds_daily_buckets_from_past_usage() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    subjects = _key(tokens_per_day=86_400)
    limiter.replay(
        [(clock.now - 3600, "m", subjects, 50_000), (clock.now - 600, "m", subjects, 30_000)]
    )
    # 86400 - 50000 + 3000 (refilled 3000 s at 1/s) capped? no: 39400 - 30000 + 600 = 10000
    assert limiter.state("m", subjects)[0].available == pytest.approx(10_000)
    with pytest.raises(RateLimited):
        limiter.admit("m", subjects, 10_001)


@pytest.mark.parametrize("rpm", [1, 7, 13, 60, 199])
def test_sending_exactly_at_the_rate_after_a_burst_is_never_refused(rpm: int) -> None:
    clock = Clock()
    limiter = Limiter(clock)
    subjects = _key(requests_per_minute=rpm)
    for _ in range(rpm):
        limiter.admit("m", subjects, 0)
    paced = []
    for _ in range(3 * rpm):
        clock.now += 60 / rpm
        paced.append(limiter.admit("m", subjects, 0))  # float drift must not make it a 429
    assert len(paced) == 3 * rpm
    with pytest.raises(RateLimited):  # and the bucket really is full: one more is refused
        limiter.admit("m", subjects, 0)


@pytest.mark.parametrize("kind", ["requests_per_minute", "tokens_per_day", "concurrent_streams"])
def test_a_limit_of_zero_is_a_clear_refusal_not_a_crash(kind: str) -> None:
    limiter = Limiter(Clock())
    subjects = _key(**{kind: 0, "requests_per_day": 10})
    with pytest.raises(InvalidRequest, match="is 0: no request can be admitted"):
        limiter.admit("m", subjects, 5)
    assert [s.kind for s in limiter.state("m", subjects)] == ["requests_per_day"]
