"""Which upstream gets a request: affinity for follow-up turns, else the least loaded.

Affinity is consistent hashing on a ring of points per upstream (more for a larger weight):
a conversation's key lands on the ring and goes to the first available upstream after it, so
a conversation keeps its upstream (and vLLM's prefix cache of it) while that upstream is
available, and only the conversations of an upstream that goes away move. A pick is a
binary search, whatever the number of upstreams.
A bound on load keeps one hot conversation mix from piling onto one upstream: when the
affinity choice carries much more than the average load, the least-loaded one is taken.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

__all__ = ["HashRing", "Routable", "affinity_key", "choose", "key_hash"]

_LOAD_FACTOR = 1.25  # affinity may carry this much more than the average load per weight…
_LOAD_SLACK = 2.0  # …plus this many requests, before the least-loaded upstream is used


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
    if exclude:
        candidates = [u for u in upstreams if u.name not in exclude and u.available()]
    else:
        candidates = [u for u in upstreams if u.available()]
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if policy == "round_robin":
        return candidates[turn % len(candidates)]
    if policy != "affinity" or key is None:
        return min(candidates, key=_load)
    preferred = _on_ring(ring or HashRing(upstreams), upstreams, candidates, key_hash(key))
    total_weight = 0.0
    total_load = 0
    for upstream in candidates:
        total_weight += upstream.weight
        total_load += upstream.outstanding
    bound = _LOAD_FACTOR * total_load / (total_weight or 1e-9) * preferred.weight + _LOAD_SLACK
    return preferred if preferred.outstanding <= bound else min(candidates, key=_load)


def _load(upstream: Routable) -> float:
    return upstream.outstanding / (upstream.weight or 1e-9)


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


def _on_ring(
    ring: HashRing,
    upstreams: Sequence[RoutableT],
    candidates: Sequence[RoutableT],
    key: int,
) -> RoutableT:
    """The first candidate at or after `key` on the ring."""
    allowed = {id(u) for u in candidates}
    start = bisect.bisect_left(ring.hashes, key)
    size = len(ring.owners)
    for step in range(size):
        upstream = upstreams[ring.owners[(start + step) % size]]
        if id(upstream) in allowed:
            return upstream
    return candidates[0]  # unreachable while candidates come from upstreams
