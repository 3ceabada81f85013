"""Which limits apply to a request: tiers from models.toml, overridden per org, user and key.

A tier's own values can be changed at run time too (`tier_limits`, on top of models.toml).

The org level uses the org's tier; the user and key levels use the user's tier (the org's when
the user has none). Overrides stored in SQLite replace single values at one level, for every
model ('') or for one. Overrides live in memory as well, updated by the same calls that write
them, so a change applies to the next request without a restart or a stale cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlite_utils

from chatapp.accounts import Principal
from chatapp.config import Config
from chatapp.errors import InvalidRequest
from chatapp.limiter import Subject
from chatapp.limits import LIMIT_KINDS, Limits
from chatapp.store import transaction

__all__ = ["LEVELS", "MAX_LIMIT", "Override", "Quotas"]

LEVELS = ("key", "user", "org")
MAX_LIMIT = 2**53  # beyond this a float bucket can no longer count single requests


@dataclass(frozen=True)
class Override:
    level: str
    subject_id: int
    model: str
    kind: str
    value: int | None


class Quotas:
    """Resolves a principal's subjects (key, user, org with their limits) for a model."""

    def __init__(self, config: Config, db: sqlite_utils.Database) -> None:
        self.config = config
        self.db = db
        self._overrides: dict[tuple[str, int], dict[str, dict[str, int | None]]] = {}
        self._cache: dict[tuple[object, ...], tuple[Subject, ...]] = {}
        self._tier_overrides: dict[str, dict[str, dict[str, int | None]]] = {}
        for tier, model, kind, value in db.execute(
            "SELECT tier, model, kind, value FROM tier_limits"
        ):
            self._tier_overrides.setdefault(tier, {}).setdefault(model, {})[kind] = value
        for level, subject_id, model, kind, value in db.execute(
            "SELECT level, subject_id, model, kind, value FROM limit_overrides"
        ):
            self._overrides.setdefault((level, subject_id), {}).setdefault(model, {})[kind] = value

    def subjects(self, principal: Principal, model: str) -> tuple[Subject, ...]:
        """The key, user and org subjects of a request, with the limits in force now."""
        user_tier = principal.user_tier or principal.org_tier
        cache_key = (
            principal.key_id,
            principal.user_id,
            principal.org_id,
            user_tier,
            principal.org_tier,
            model,
        )
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        user_limits = self.tier_limits(user_tier, model)
        org_limits = self.tier_limits(principal.org_tier, model)
        subjects = (
            Subject(
                "key", principal.key_id, self._apply("key", principal.key_id, model, user_limits)
            ),
            Subject(
                "user",
                principal.user_id,
                self._apply("user", principal.user_id, model, user_limits),
            ),
            Subject(
                "org", principal.org_id, self._apply("org", principal.org_id, model, org_limits)
            ),
        )
        self._cache[cache_key] = subjects
        return subjects

    def tier_limits(self, tier_name: str | None, model: str) -> Limits:
        """A tier's limits for a model: models.toml, then values set at run time."""
        tier = self.config.tier(tier_name)
        overrides = self._tier_overrides.get(tier.name)
        limits = tier.for_model(model)
        if not overrides:
            return limits
        return limits.overlay(overrides.get("", {})).overlay(overrides.get(model, {}))

    def tier_overrides(self, tier: str) -> Mapping[str, Mapping[str, int | None]]:
        return self._tier_overrides.get(tier, {})

    def set_tier_limit(self, tier: str, model: str, kind: str, value: int | None) -> None:
        """Change one limit of a tier (for every model, or one) from the next request on."""
        if tier not in self.config.tiers:
            known = ", ".join(sorted(self.config.tiers)) or "none"
            raise InvalidRequest(f"unknown tier '{tier}' (defined: {known})", param="tier")
        _check(Override("tier", 0, model, kind, value), self.config)
        with transaction(self.db):
            self.db.execute(
                "INSERT INTO tier_limits (tier, model, kind, value) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tier, model, kind) DO UPDATE SET value = excluded.value,"
                " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (tier, model, kind, value),
            )
        self._tier_overrides.setdefault(tier, {}).setdefault(model, {})[kind] = value
        self._cache.clear()

    def clear_tier_limit(self, tier: str, model: str, kind: str) -> None:
        """Forget a run-time tier value: models.toml's applies again."""
        with transaction(self.db):
            self.db.execute(
                "DELETE FROM tier_limits WHERE tier = ? AND model = ? AND kind = ?",
                (tier, model, kind),
            )
        self._tier_overrides.get(tier, {}).get(model, {}).pop(kind, None)
        self._cache.clear()

    def _apply(self, level: str, subject_id: int, model: str, limits: Limits) -> Limits:
        overrides = self._overrides.get((level, subject_id))
        if not overrides:
            return limits
        return limits.overlay(overrides.get("", {})).overlay(overrides.get(model, {}))

    def set_overrides(self, overrides: Sequence[Override]) -> None:
        """Store overrides (value None: no limit of that kind), all or none, and apply them."""
        for override in overrides:
            if override.level not in LEVELS:
                raise InvalidRequest(f"level must be one of {', '.join(LEVELS)}", param="level")
            _check(override, self.config)
        with transaction(self.db):
            for o in overrides:
                self.db.execute(
                    "INSERT INTO limit_overrides (level, subject_id, model, kind, value)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (level, subject_id, model, kind)"
                    " DO UPDATE SET value = excluded.value,"
                    " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                    (o.level, o.subject_id, o.model, o.kind, o.value),
                )
        for o in overrides:
            self._overrides.setdefault((o.level, o.subject_id), {}).setdefault(o.model, {})[
                o.kind
            ] = o.value
        self._cache.clear()

    def clear_override(self, level: str, subject_id: int, model: str, kind: str) -> None:
        """Remove an override: the tier's value applies again from the next request."""
        with transaction(self.db):
            self.db.execute(
                "DELETE FROM limit_overrides WHERE level = ? AND subject_id = ? AND model = ?"
                " AND kind = ?",
                (level, subject_id, model, kind),
            )
        self._overrides.get((level, subject_id), {}).get(model, {}).pop(kind, None)
        self._cache.clear()

    def overrides_of(self, level: str, subject_id: int) -> Mapping[str, Mapping[str, int | None]]:
        return self._overrides.get((level, subject_id), {})


def _check(override: Override, config: Config) -> None:
    """A known limit kind, a value SQLite and the buckets can hold, and a known model."""
    if override.kind not in LIMIT_KINDS:
        raise InvalidRequest(
            f"unknown limit '{override.kind}' (one of {', '.join(LIMIT_KINDS)})",
            param=f"limits.{override.kind}",
        )
    if override.value is not None and not 0 <= override.value <= MAX_LIMIT:
        raise InvalidRequest(
            f"limits.{override.kind} must be between 0 and {MAX_LIMIT}, or null",
            param=f"limits.{override.kind}",
        )
    if override.model and override.model not in config.models:
        raise InvalidRequest(f"unknown model '{override.model}'", param="model")
