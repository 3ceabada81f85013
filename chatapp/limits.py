"""Rate-limit values: what a tier allows per model, and how overrides replace single values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

__all__ = ["LIMIT_KINDS", "Limits", "Tier"]

# Every limit a tier, org, user or key can set; None (or absent) means no limit of that kind.
LIMIT_KINDS = (
    "requests_per_minute",
    "tokens_per_minute",
    "requests_per_day",
    "tokens_per_day",
    "concurrent_streams",
)


@dataclass(frozen=True)
class Limits:
    """One set of limits; a None field does not limit."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    requests_per_day: int | None = None
    tokens_per_day: int | None = None
    concurrent_streams: int | None = None

    def overlay(self, values: Mapping[str, int | None]) -> Limits:
        """These limits with some values replaced (an override, or a per-model table)."""
        return replace(self, **values) if values else self

    def as_dict(self) -> dict[str, int | None]:
        return {kind: getattr(self, kind) for kind in LIMIT_KINDS}


@dataclass(frozen=True)
class Tier:
    """A named plan: default limits, and per-model values that replace them for one model."""

    name: str
    limits: Limits = field(default_factory=Limits)
    models: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def for_model(self, model: str) -> Limits:
        return self.limits.overlay(self.models.get(model, {}))
