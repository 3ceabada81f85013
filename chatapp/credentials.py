"""The credentials file: the URL and key the CLI and TUI use, readable by its owner only.

Its own module so that reading it does not load the database stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["read_credentials", "write_credentials"]


def write_credentials(path: Path, *, url: str, api_key: str) -> None:
    """Write the credentials file readable by its owner only (created 0600, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump({"url": url, "api_key": api_key}, handle, indent=2)
        handle.write("\n")


def read_credentials(path: Path) -> dict[str, str]:
    """The stored url and api_key; an empty dict when there is no usable file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
