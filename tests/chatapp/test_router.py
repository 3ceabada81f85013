"""The router: affinity on a hash ring with a load bound, breakers, why a pool is down."""

from __future__ import annotations

import asyncio
import collections

import httpx
import pytest

from chatapp.breaker import BreakerState, CircuitBreaker
from chatapp.completions import Completions
from chatapp.config import ModelConfig
from chatapp.errors import EngineUnavailable
from chatapp.health import EngineLoad, engine_load
from chatapp.router import affinity_key, choose
from chatapp.upstreams import ModelPool, Upstream


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pool(n: int, routing: str = "affinity", clock: Clock | None = None) -> ModelPool:
    model = ModelConfig(name="m", engine=None, model="m", context_window=1024, routing=routing)
    upstreams = [Upstream(name=f"u{i}", url=f"http://u{i}/v1") for i in range(n)]
    for upstream in upstreams:
        upstream.breaker = CircuitBreaker(2, 10.0, clock or Clock())
    return ModelPool(model=model, upstreams=upstreams)


def test_a_conversation_keeps_its_upstream_and_keys_spread_out() -> None:
    pool = _pool(4)
    first = {f"conv-{i}": pool.pick(f"conv-{i}").name for i in range(400)}
    again = {key: pool.pick(key).name for key in first}
    assert again == first
    spread = collections.Counter(first.values())
    assert set(spread) == {"u0", "u1", "u2", "u3"} and min(spread.values()) > 60


def test_only_the_conversations_of_a_lost_upstream_move() -> None:
    pool = _pool(4)
    before = {f"c{i}": pool.pick(f"c{i}").name for i in range(400)}
    pool.upstreams[2].draining = True
    after = {key: pool.pick(key).name for key in before}
    moved = {key for key in before if before[key] != after[key]}
    assert moved == {key for key, name in before.items() if name == "u2"}
    pool.upstreams[2].draining = False
    assert {key: pool.pick(key).name for key in before} == before


@pytest.mark.parametrize("size", [3, 5])
def test_keys_of_one_length_spread_evenly(size: int) -> None:
    pool = _pool(size)
    keys = [f"prompt:{i:016x}" for i in range(6000)]  # what the router's keys look like
    counts = collections.Counter(pool.pick(key).name for key in keys)
    share = 6000 / size
    assert all(abs(n - share) < 0.12 * share for n in counts.values()), counts


def test_weights_shift_affinity_share() -> None:
    pool = _pool(2)
    pool.upstreams[0].weight = 3.0
    counts = collections.Counter(pool.pick(f"prompt:{i:016x}").name for i in range(4000))
    assert 0.70 < counts["u0"] / 4000 < 0.80


def test_an_overloaded_affinity_choice_gives_way_to_the_next_with_room() -> None:
    pool = _pool(4)
    by_name = {u.name: u for u in pool.upstreams}
    home = by_name[pool.pick("hot").name]
    home.outstanding = 20  # far above its share (5 of 20 in all)
    second = by_name[pool.pick("hot").name]
    assert second is not home
    assert all(pool.pick("hot") is second for _ in range(5))  # the same one each time
    second.outstanding = 20  # now both are far over their share: the ring's next again
    third = pool.pick("hot")
    assert third not in (home, second)
    home.outstanding = second.outstanding = 1
    assert pool.pick("hot") is home


def test_affinity_holds_under_load_while_part_of_the_pool_is_down() -> None:
    """The share is that of the upstreams that can take requests: with half the pool down
    and the rest evenly busy, a conversation stays where its cache is."""
    pool = _pool(4)
    by_name = {u.name: u for u in pool.upstreams}
    home = by_name[pool.pick("hot").name]
    down = [u for u in pool.upstreams if u is not home][:2]
    for upstream in down:
        upstream.healthy = False
    for upstream in pool.upstreams:
        upstream.outstanding = 0 if upstream in down else 20
    assert pool.pick("hot") is home


def test_the_ring_walk_finds_the_last_available_upstream_and_none_when_all_are_down() -> None:
    pool = _pool(64)
    for upstream in pool.upstreams[1:]:
        upstream.healthy = False
    assert all(pool.pick(f"c{i}") is pool.upstreams[0] for i in range(50))
    pool.upstreams[0].draining = True
    assert choose(pool.upstreams, policy="affinity", key="c1", ring=pool.ring) is None


def test_round_robin_and_least_outstanding() -> None:
    rr = _pool(3, "round_robin")
    assert [rr.pick("same").name for _ in range(6)] == ["u0", "u1", "u2", "u0", "u1", "u2"]
    least = _pool(3, "least_outstanding")
    least.upstreams[0].outstanding = 2
    least.upstreams[1].outstanding = 1
    least.upstreams[2].outstanding = 3
    assert least.pick("anything").name == "u1"


def test_breaker_opens_after_failures_half_opens_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures_to_open=2, cooldown=10.0, clock=clock)
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allows()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allows()
    assert breaker.retry_in() == 10.0
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN and breaker.allows()
    breaker.on_send()
    assert not breaker.allows()  # one probe at a time
    breaker.record_failure()  # the probe failed: a fresh cooldown
    assert breaker.state is BreakerState.OPEN and breaker.retry_in() == 10.0
    clock.now += 10
    breaker.on_send()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.opened_count == 1


def test_an_open_breaker_takes_an_upstream_out_and_the_503_says_when_to_retry() -> None:
    clock = Clock()
    pool = _pool(2, clock=clock)
    for upstream in pool.upstreams:
        upstream.record_failure("boom")
        upstream.record_failure("boom")
    with pytest.raises(EngineUnavailable) as info:
        pool.pick("k")
    assert "failing or unhealthy" in info.value.message and 1 <= info.value.retry_after <= 11
    clock.now += 10
    assert pool.pick("k").name in ("u0", "u1")  # half-open: a probe may go


def test_unhealthy_and_drained_pools_explain_themselves() -> None:
    pool = _pool(2)
    for upstream in pool.upstreams:  # failed checks count toward the breaker: not here
        upstream.breaker = CircuitBreaker(5, 10.0, Clock())
    for upstream in pool.upstreams:
        upstream.draining = True
    with pytest.raises(EngineUnavailable, match="drained"):
        pool.pick()
    for upstream in pool.upstreams:
        upstream.draining = False
        upstream.record_check(False, "health check: ConnectError")
    assert pool.pick().name in ("u0", "u1")  # one failed check (slow under load?) is not enough
    for upstream in pool.upstreams:
        upstream.record_check(False, "health check: ConnectError")
    with pytest.raises(EngineUnavailable, match="unhealthy"):
        pool.pick()
    pool.upstreams[1].record_check(True)
    assert pool.pick().name == "u1"


def test_exclusion_skips_upstreams_already_tried() -> None:
    pool = _pool(3)
    first = pool.pick("k").name
    second = pool.pick("k", frozenset({first})).name
    third = pool.pick("k", frozenset({first, second})).name
    assert len({first, second, third}) == 3
    with pytest.raises(EngineUnavailable):
        pool.pick("k", frozenset({first, second, third}))
    assert choose(pool.upstreams, policy="affinity", key="k", exclude=frozenset()) is not None


def test_affinity_key_from_session_user_or_prompt_opening() -> None:
    turn1 = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]}
    turn2 = {"messages": [*turn1["messages"], {"role": "assistant", "content": "A"}]}
    assert affinity_key(turn1) == affinity_key(turn2) is not None
    other = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "R"}]}
    assert affinity_key(other) != affinity_key(turn1)
    assert affinity_key({**turn1, "user": "ann"}) == "user:ann"
    assert affinity_key(turn1, "conv_1") == "conv_1"
    assert affinity_key({"messages": []}) is None
    # Without a system prompt the second turn still has the same key as the first.
    bare1 = {"messages": [{"role": "user", "content": "Q"}]}
    bare2 = {"messages": [*bare1["messages"], {"role": "assistant", "content": "A"}]}
    assert affinity_key(bare1) == affinity_key(bare2)


def test_a_vllm_engines_load_and_prefix_cache_hit_rate_from_its_metrics() -> None:
    text = (
        "# HELP vllm:prefix_cache_queries_total x\n"
        'vllm:prefix_cache_queries_total{model_name="m"} 400.0\n'
        'vllm:prefix_cache_hits_total{model_name="m"} 100.0\n'
        'vllm:num_requests_running{engine="0",model_name="m"} 3.0\n'
        'vllm:num_requests_running{engine="1",model_name="m"} 2.0\n'  # summed
        'vllm:num_requests_waiting{engine="0",model_name="m"} 7.0\n'
        'vllm:num_requests_waiting_by_reason{reason="capacity"} 99.0\n'  # another metric
        "vllm:num_requests_waiting broken\n"  # not a number: left out
    )
    assert engine_load(text) == EngineLoad(running=5.0, waiting=7.0, prefix_cache_hit_rate=0.25)
    assert engine_load("vllm:num_requests_running 3\n") == EngineLoad(running=3.0)
    # Not vLLM: nothing known, and so not asked again.
    assert not engine_load("llamacpp:requests_processing 1\n").is_vllm
    assert not engine_load("<html>404</html>").is_vllm


def test_a_passing_health_check_does_not_close_an_open_breaker() -> None:
    clock = Clock()
    pool = _pool(1, clock=clock)
    upstream = pool.upstreams[0]
    upstream.record_check(False, "down")
    upstream.record_check(False, "down")
    assert upstream.breaker.state is BreakerState.OPEN
    upstream.record_check(True)
    assert upstream.healthy and upstream.breaker.state is BreakerState.OPEN
    clock.now += 10
    assert pool.pick().name == "u0"  # half-open: this request is the probe
    assert not upstream.available()
    upstream.breaker.release_probe()  # the probe was cancelled: another may go
    assert upstream.available()


async def test_a_stream_cancelled_before_the_engine_answers_frees_its_slot() -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    pool = _pool(1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(never)) as client:
        task = asyncio.create_task(
            Completions(client).open_stream(
                pool, {"messages": [{"role": "user", "content": "hi"}]}, include_usage=False
            )
        )
        await asyncio.sleep(0.05)
        assert pool.upstreams[0].outstanding == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert pool.upstreams[0].outstanding == 0


async def test_a_node_that_does_not_know_the_model_is_failed_over() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "u0":
            return httpx.Response(404, json={"error": {"message": "model m does not exist"}})
        return httpx.Response(200, json={"choices": [], "usage": {"prompt_tokens": 1}})

    pool = _pool(2, "round_robin")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        completions = Completions(client)
        for _ in range(4):
            done = await completions.create(pool, {"messages": []})
            assert done.upstream.name == "u1"
    assert pool.upstreams[0].failures >= 1
