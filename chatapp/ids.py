"""Identifiers that sort by creation time (so ids double as a stable order and cursor)."""

from __future__ import annotations

import secrets
import threading
import time

__all__ = ["new_id"]

_lock = threading.Lock()
_last = 0


def new_id(prefix: str) -> str:
    """`prefix_` + 13 hex digits of microseconds + 8 random hex digits.

    The time part never repeats or goes back within a process, so a reply made in the same
    microsecond as its question still sorts after it.
    """
    global _last
    with _lock:
        _last = max(time.time_ns() // 1000, _last + 1)
        stamp = _last
    return f"{prefix}_{stamp:013x}{secrets.token_hex(4)}"
