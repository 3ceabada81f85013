"""Which upstream gets a request: affinity for follow-up turns, else the least loaded.

Affinity is consistent hashing on a ring of points per upstream (more for a larger weight):
a conversation's key lands on the ring and goes to the first available upstream after it, so
a conversation keeps its upstream (and vLLM's prefix cache of it) while that upstream is
available, and only the conversations of an upstream that goes away move. A pick is a
binary search, whatever the number of upstreams.
A bound on load keeps one hot conversation mix from piling onto one upstream (consistent
hashing with bounded loads): an upstream carrying much more than its share of the load is
passed over for the next one on the ring with room, the same one each time, so a
conversation that moves keeps its new upstream's cache while the first stays busy.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any, Protocol, TypeVar

__all__ = ["HashRing", "Routable", "affinity_key", "choose", "key_hash"]

_LOAD_FACTOR = 1.25  # affinity may carry this much more than the average load per weight…
_LOAD_SLACK = 2.0  # …plus this many requests, before the ring's next upstream is asked
# The bounds add up to more than the requests in flight, so some candidate always has room:
# the least-loaded fallback only serves pools whose weights are all zero.


class Routable(Protocol):
    """What the router reads of an upstream."""

    name: str
    weight: float
    outstanding: int

    def available(self) -> bool: ...


RoutableT = TypeVar("RoutableT", bound=Routable)


def affinity_key(body: Mapping[str, Any], session: str | None = None) -> str | None:
    """What makes two requests "the same conversation": an explicit session (a conversation
    id, `x-session-id`), else the `user` field, else the opening of the prompt (the system
    message and the first user message), which every later turn repeats."""
    if session:
        return session
    user = body.get("user")
    if isinstance(user, str) and user:
        return "user:" + user
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    opening = []
    for role in ("system", "user"):  # the first of each: what every later turn repeats
        first = next((m for m in messages if isinstance(m, dict) and m.get("role") == role), None)
        if first is not None:
            opening.append(f"{role}\x00{first.get('content')}")
    if not opening:
        return None
    return "prompt:" + hashlib.blake2b("\x01".join(opening).encode(), digest_size=8).hexdigest()


def key_hash(text: str) -> int:
    """A stable 64-bit hash (the same in every process, unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def choose(
    upstreams: Sequence[RoutableT],
    *,
    policy: str,
    key: str | None,
    exclude: frozenset[str] = frozenset(),
    turn: int = 0,
    ring: HashRing | None = None,
) -> RoutableT | None:
    """The upstream for a request, or None when none is available.

    `policy` is affinity, least_outstanding or round_robin (`turn` counts the pool's requests).
    """
    if policy == "affinity" and key is not None:
        return _affine(upstreams, ring or HashRing(upstreams), key_hash(key), exclude)
    if policy == "round_robin":
        candidates = _candidates(upstreams, exclude)
        return candidates[turn % len(candidates)] if candidates else None
    return _least_loaded(upstreams, exclude)


def _candidates(upstreams: Sequence[RoutableT], exclude: frozenset[str]) -> list[RoutableT]:
    """The upstreams that can take the request, in pool order."""
    return [u for u in upstreams if u.name not in exclude and u.available()]


def _affine(
    upstreams: Sequence[RoutableT], ring: HashRing, key: int, exclude: frozenset[str]
) -> RoutableT | None:
    """The first upstream at or after `key` on the ring that can take the request and carries
    no more than its share: the requests in flight per unit of weight of the upstreams that
    can take requests, times the factor, plus the slack; when none has room, the least loaded.

    Mostly the first upstream the walk meets takes it, and the share over the whole pool is
    enough to say so without asking every upstream whether it is available: upstreams that
    cannot take requests carry next to nothing, so the whole pool's share is the lower one.
    Otherwise the candidates are counted exactly and the walk goes on from there.
    """
    owners = ring.owners
    size = len(owners)
    start = bisect.bisect_left(ring.hashes, key)
    share = _share(upstreams)
    first = upstreams[owners[start % size]]
    if (
        first.outstanding <= share * first.weight + _LOAD_SLACK
        and first.name not in exclude
        and first.available()
    ):
        return first
    candidates = _candidates(upstreams, exclude)
    if not candidates:
        return None
    allowed = None  # every upstream is a candidate, and the share is the one above
    if len(candidates) < len(upstreams):
        share = _share(candidates)
        allowed = {id(u) for u in candidates}
    for step in range(size):
        upstream = upstreams[owners[(start + step) % size]]
        if allowed is not None and id(upstream) not in allowed:
            continue
        if upstream.outstanding <= share * upstream.weight + _LOAD_SLACK:
            return upstream
    return _least_loaded(candidates, frozenset())


_weight = attrgetter("weight")
_outstanding = attrgetter("outstanding")


def _share(upstreams: Sequence[Routable]) -> float:
    """What each unit of weight may carry: the requests in flight per unit, times the factor."""
    total_weight = sum(map(_weight, upstreams))
    return _LOAD_FACTOR * sum(map(_outstanding, upstreams)) / (total_weight or 1e-9)


def _least_loaded(upstreams: Sequence[RoutableT], exclude: frozenset[str]) -> RoutableT | None:
    """The available upstream with the fewest requests in flight per unit of weight (the
    first of equals). Only an upstream that would be the new least loaded is asked whether
    it is available: a few of the pool, not all of it."""
    best: RoutableT | None = None
    best_load = math.inf
    for upstream in upstreams:
        load = upstream.outstanding / (upstream.weight or 1e-9)
        if load < best_load and upstream.name not in exclude and upstream.available():
            best, best_load = upstream, load
    return best


class HashRing:
    """Points on a 64-bit ring, `POINTS` per unit of weight, each owned by an upstream."""

    POINTS = 400

    def __init__(self, upstreams: Sequence[Routable]) -> None:
        points = sorted(
            (key_hash(f"{upstream.name}#{n}"), index)
            for index, upstream in enumerate(upstreams)
            for n in range(max(1, round(self.POINTS * upstream.weight)))
        )
        self.hashes = [point for point, _ in points]
        self.owners = [owner for _, owner in points]
        self.signature = tuple((u.name, u.weight) for u in upstreams)
