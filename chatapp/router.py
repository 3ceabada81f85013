"""Which upstream gets a request: affinity for follow-up turns, else the least loaded.

Affinity is weighted rendezvous hashing: every upstream scores the conversation's key and the
highest score wins, so a conversation keeps its upstream (and vLLM's prefix cache of it) while
that upstream is available, and only the conversations of an upstream that goes away move.
A bound on load keeps one hot conversation mix from piling onto one upstream: when the
affinity choice carries much more than the average load, the least-loaded one is taken.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

__all__ = ["Routable", "affinity_key", "choose"]

_LOAD_FACTOR = 1.25  # affinity may carry this much more than the average load per weight…
_LOAD_SLACK = 2.0  # …plus this many requests, before the least-loaded upstream is used
_SCALE = 2.0**32


class Routable(Protocol):
    """What the router reads of an upstream."""

    name: str
    weight: float
    outstanding: int
    seed: int

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
    if not isinstance(messages, list) or not messages:
        return None
    opening = []
    for message in messages[:2]:
        if isinstance(message, dict):
            opening.append(f"{message.get('role')}\x00{message.get('content')}")
    return "prompt:" + hashlib.blake2b("\x01".join(opening).encode(), digest_size=8).hexdigest()


def _score(key: bytes, upstream: Routable) -> float:
    """Weighted rendezvous score: -weight / ln(u) for a uniform u in (0, 1) from the hash."""
    unit = (zlib.crc32(key, upstream.seed) + 0.5) / _SCALE
    return -upstream.weight / math.log(unit)


def choose(
    upstreams: Sequence[RoutableT],
    *,
    policy: str,
    key: str | None,
    exclude: frozenset[str] = frozenset(),
    turn: int = 0,
) -> RoutableT | None:
    """The upstream for a request, or None when none is available.

    `policy` is affinity, least_outstanding or round_robin (`turn` counts the pool's requests).
    """
    candidates = [u for u in upstreams if u.name not in exclude and u.available()]
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if policy == "round_robin":
        return candidates[turn % len(candidates)]
    least = min(candidates, key=lambda u: u.outstanding / (u.weight or 1e-9))
    if policy != "affinity" or key is None:
        return least
    data = key.encode()
    preferred = max(candidates, key=lambda u: _score(data, u))
    total_weight = sum(u.weight for u in candidates) or 1e-9
    average = sum(u.outstanding for u in candidates) / total_weight
    bound = _LOAD_FACTOR * average * preferred.weight + _LOAD_SLACK
    return preferred if preferred.outstanding <= bound else least
