"""Which keys a binding is on once tui.toml's [bindings] have remapped it, as people read them."""

from __future__ import annotations

from collections.abc import Mapping

from textual.app import App
from textual.binding import Binding

__all__ = ["keys_of"]


def keys_of(app: App[object], binding: Binding, keymap: Mapping[str, str] | None = None) -> str:
    """`^s`, `F1`, `esc, q`: the binding's keys after `keymap` (the app's, by default)."""
    if keymap is None:
        keymap = getattr(app, "keymap", {})
    keys = keymap.get(binding.id, binding.key) if binding.id else binding.key
    return ", ".join(
        app.get_key_display(Binding(key.strip(), binding.action)) for key in keys.split(",")
    )
