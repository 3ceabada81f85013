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
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

__all__ = ["Routable", "affinity_key", "choose", "key_hash"]

_LOAD_FACTOR = 1.25  # affinity may carry this much more than the average load per weight…
_LOAD_SLACK = 2.0  # …plus this many requests, before the least-loaded upstream is used
_SCALE = 2.0**64


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


_MASK = 2**64 - 1


def key_hash(text: str) -> int:
    """A stable 64-bit hash (the same in every process, unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _score(key: int, upstream: Routable) -> float:
    """Weighted rendezvous score: -weight / ln(u), u uniform in (0, 1) from mixing the key's
    and the upstream's 64-bit hashes (splitmix64's finaliser: every bit of both matters)."""
    x = key ^ upstream.seed
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    x ^= x >> 31
    return -upstream.weight / math.log((x + 0.5) / _SCALE)


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
    hashed = key_hash(key)
    preferred = max(candidates, key=lambda u: _score(hashed, u))
    total_weight = sum(u.weight for u in candidates) or 1e-9
    average = sum(u.outstanding for u in candidates) / total_weight
    bound = _LOAD_FACTOR * average * preferred.weight + _LOAD_SLACK
    return preferred if preferred.outstanding <= bound else least
