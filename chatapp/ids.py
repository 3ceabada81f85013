"""Identifiers that sort by creation time (so ids double as a stable order and cursor)."""

from __future__ import annotations

import secrets
import time

__all__ = ["new_id"]


def new_id(prefix: str) -> str:
    """`prefix_` + 13 hex digits of microseconds since the epoch + 8 random hex digits."""
    return f"{prefix}_{time.time_ns() // 1000:013x}{secrets.token_hex(4)}"
