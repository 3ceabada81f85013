"""What every command needs: the data dir, the config, and one-line errors instead of tracebacks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from chatapp.config import Config, load_config
from chatapp.errors import ChatAppError
from chatapp.paths import default_home, find_config

__all__ = ["ConfigOption", "Setup", "console", "err_console", "fail", "load_setup"]

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="models.toml (default: the data dir's, else shipped)."),
]

console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print a one-line error on stderr; `raise fail(...)` exits with status 1."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


@dataclass(frozen=True)
class Setup:
    home: Path
    config: Config


def load_setup(config_path: Path | None) -> Setup:
    """Resolve the data dir and load models.toml, turning a bad file into a one-line error.

    The data dir is CHATAPP_HOME when set, else `server.data_dir` from the config, else the
    platform's user data dir; the config is `--config`, else the data dir's, else the shipped one.
    """
    home = default_home()
    try:
        config = load_config(find_config(config_path, home))
    except ChatAppError as exc:
        raise fail(str(exc)) from None
    if config.server.data_dir is not None and not os.environ.get("CHATAPP_HOME"):
        home = config.server.data_dir
    return Setup(home=home, config=config)
