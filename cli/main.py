"""The `chatapp` typer app: one place that lists every command and group."""

from __future__ import annotations

import typer

from cli import local
from cli.serve import serve

__all__ = ["app"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="chatapp: a self-hosted, OpenAI-compatible chat service for your GPU box (or laptop).",
)
app.command()(serve)
app.command()(local.init)
app.command()(local.migrate)
app.command()(local.key)


if __name__ == "__main__":
    app()
