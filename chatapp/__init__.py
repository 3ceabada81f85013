"""chatapp core: configuration, storage, keys and engines, free of any web, TUI or CLI framework."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
