"""The chat client's own settings: `tui.toml` in the data dir (or `$CHATAPP_TUI_CONFIG`).

    theme = "gruvbox"              # written back when a theme is picked (F9)
    export_dir = "~/chats"         # where Ctrl+S offers to save (default: the current directory)

    [bindings]                     # action id = key(s); F1 lists the ids
    pin = "ctrl+g"
    newline = "ctrl+j,alt+enter"

A file that cannot be used is reported, key by key, and the defaults stand.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from textual.keys import REPLACED_KEYS, Keys, key_to_character

from chatapp.paths import default_home

__all__ = [
    "SETTINGS_ENV",
    "SETTINGS_NAME",
    "Settings",
    "load_settings",
    "save_theme",
    "settings_path",
    "valid_key",
]

SETTINGS_NAME = "tui.toml"
SETTINGS_ENV = "CHATAPP_TUI_CONFIG"
MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
_NAMED_KEYS = frozenset(key.value.rpartition("+")[2] for key in Keys)
_THEME_LINE = re.compile(r"\s*theme\s*=")


@dataclass(frozen=True)
class Settings:
    """What tui.toml says, checked; empty when there is no file."""

    bindings: dict[str, str] = field(default_factory=dict)
    theme: str | None = None
    export_dir: Path | None = None


def settings_path() -> Path:
    """`$CHATAPP_TUI_CONFIG` when set, else `tui.toml` in the data dir."""
    env = os.environ.get(SETTINGS_ENV)
    return Path(env).expanduser() if env else default_home() / SETTINGS_NAME


def valid_key(keys: str) -> bool:
    """Whether every comma-separated key in `keys` is one a terminal can send (`ctrl+g`, `f5`)."""
    for key in keys.split(","):
        *modifiers, name = key.strip().split("+")
        if not name or any(m not in MODIFIERS for m in modifiers):
            return False
        if len(name) != 1 and name not in _NAMED_KEYS:
            if key_to_character(REPLACED_KEYS.get(name, name)) is None:
                return False
    return True


def load_settings(path: Path, known_ids: frozenset[str]) -> tuple[Settings, list[str]]:
    """The usable settings in `path`, and a warning for each thing that was left out."""
    if not path.is_file():
        return Settings(), []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return Settings(), [f"{path} was not read ({exc}); the defaults are in use."]
    warnings: list[str] = []
    bindings: dict[str, str] = {}
    table = data.get("bindings", {})
    if not isinstance(table, dict):
        warnings.append(f'{path}: [bindings] must be a table of action id = "key".')
        table = {}
    for action, keys in table.items():
        if action not in known_ids:
            warnings.append(f"{path}: bindings.{action} is no action (F1 lists the ids).")
        elif not isinstance(keys, str) or not valid_key(keys):
            warnings.append(f'{path}: bindings.{action} = {keys!r} is not a key like "ctrl+g".')
        else:
            bindings[action] = keys
    theme = data.get("theme")
    if theme is not None and not isinstance(theme, str):
        warnings.append(f"{path}: theme must be a theme's name.")
        theme = None
    export_dir = data.get("export_dir")
    if export_dir is not None and not isinstance(export_dir, str):
        warnings.append(f"{path}: export_dir must be a folder's path.")
        export_dir = None
    folder = Path(export_dir).expanduser() if export_dir else None
    return Settings(bindings, theme, folder), warnings


def save_theme(path: Path, theme: str) -> None:
    """Set `theme = "…"` in the file, leaving the rest of it as it was (OSError if it cannot)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    line = f"theme = {json.dumps(theme)}"  # a JSON string is a TOML basic string
    top = next((i for i, text in enumerate(lines) if text.lstrip().startswith("[")), len(lines))
    found = [i for i in range(top) if _THEME_LINE.match(lines[i])]  # only a top-level key
    if found:
        lines[found[0]] = line
    else:
        lines.insert(0, line)
    new = "\n".join(lines) + "\n"
    if tomllib.loads(new).get("theme") != theme:
        raise OSError(f"{path} has a theme line this client cannot rewrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(new, encoding="utf-8")
    temporary.replace(path)
