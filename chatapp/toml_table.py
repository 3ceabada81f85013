"""A TOML table that remembers its dotted key, so every config error can say where it is."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NoReturn

from chatapp.errors import ConfigError

__all__ = ["Table"]


class Table:
    """A TOML table that remembers its dotted key, so every error can say where it is."""

    def __init__(self, raw: Mapping[str, Any], path: str, prefix: str) -> None:
        self.raw = raw
        self.path = path
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str) -> NoReturn:
        raise ConfigError(self.path, self.key(name), problem)

    def keys(self) -> list[str]:
        return list(self.raw)

    def only(self, *allowed: str) -> None:
        for name in self.raw:
            if name not in allowed:
                self.fail(name, f"unknown key (expected one of: {', '.join(allowed)})")

    def table(self, name: str) -> Table:
        value = self.raw.get(name, {})
        if not isinstance(value, Mapping):
            self.fail(name, f"must be a table, not {type(value).__name__}")
        return Table(value, self.path, self.key(name))

    def tables(self, name: str) -> list[Table]:
        value = self.raw.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            self.fail(name, "must be an array of tables ([[...]])")
        return [Table(v, self.path, f"{self.key(name)}[{i}]") for i, v in enumerate(value)]

    def string(self, name: str, default: str | None) -> str | None:
        value = self.raw.get(name, default)
        if value is not None and not isinstance(value, str):
            self.fail(name, f"must be a string, not {type(value).__name__}")
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.string(name, default) or default
        if value not in allowed:
            self.fail(name, f"must be one of {', '.join(allowed)} (got {value!r})")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            self.fail(name, f"must be true or false, not {type(value).__name__}")
        return value

    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"must be an integer, not {type(value).__name__}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.fail(name, f"must be {bound} (got {value})")
        return int(value)

    def number(self, name: str, default: float, *, low: float) -> float:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(name, f"must be a number, not {type(value).__name__}")
        if not math.isfinite(value):
            self.fail(name, f"must be a finite number (got {value})")
        if value < low:
            self.fail(name, f"must be at least {low} (got {value})")
        return float(value)
