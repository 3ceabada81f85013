"""Commands that work on the local files, no server needed: init, migrate, key."""

from __future__ import annotations

import os

import typer

from chatapp.credentials import read_credentials
from chatapp.errors import ChatAppError
from chatapp.paths import CREDENTIALS_NAME, DB_NAME, migrations_dir
from cli.common import ConfigOption, console, fail, load_setup

__all__ = ["init", "key", "migrate"]


def init(config: ConfigOption = None) -> None:
    """Create the data dir, the database, an admin user and a first API key (shown once).

    Set CHATAPP_ADMIN_KEY to choose the admin key yourself (for automation).
    """
    from chatapp.bootstrap import initialize  # the database stack loads only when used

    setup = load_setup(config)
    url = f"http://{setup.config.server.host}:{setup.config.server.port}"
    try:
        result = initialize(setup.home, url=url, admin_key=os.environ.get("CHATAPP_ADMIN_KEY"))
    except ChatAppError as exc:
        raise fail(str(exc)) from None
    console.print(f"data dir: {result.home}", highlight=False)
    console.print(f"database: {result.db_path}", highlight=False)
    if result.new_key:
        console.print(
            f"admin API key (shown once; also saved, 0600, in {result.credentials_path}):",
            highlight=False,
        )
        console.print(f"  [bold]{result.new_key}[/]", highlight=False)
    else:
        console.print(
            f"already initialised: an admin key exists (see {result.credentials_path})",
            highlight=False,
        )


def migrate(config: ConfigOption = None) -> None:
    """Apply pending database migrations (serve does this itself at start-up)."""
    from chatapp.migrate import apply_migrations
    from chatapp.store import open_database

    setup = load_setup(config)
    try:
        db = open_database(setup.home / DB_NAME, migrate=False)
        applied = apply_migrations(db.conn, migrations_dir())
        db.conn.close()
    except ChatAppError as exc:
        raise fail(str(exc)) from None
    if applied:
        console.print(f"applied migrations: {', '.join(f'{v:04d}' for v in applied)}")
    else:
        console.print("database is up to date")


def key(config: ConfigOption = None) -> None:
    """Print the API key saved in the local credentials file, for scripts and `export`."""
    setup = load_setup(config)
    path = setup.home / CREDENTIALS_NAME
    secret = read_credentials(path).get("api_key")
    if not secret:
        raise fail(f"no API key in {path}: run `chatapp init` (or `chatapp serve`) first")
    typer.echo(secret)
