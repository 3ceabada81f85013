"""The `chatapp` typer app: one place that lists every command and group."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import (
    conversations,
    fleet,
    keys,
    local,
    models,
    moderation,
    orgs,
    quota,
    tiers,
    usage,
    users,
)
from cli.bench import bench
from cli.chat import chat
from cli.client import resolve_target
from cli.doctor import doctor
from cli.serve import serve

__all__ = ["app"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="chatapp: a self-hosted, OpenAI-compatible chat service for your GPU box (or laptop).",
)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="CHATAPP_URL",
            help="The server admin commands talk to (default: the credentials file's).",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            envvar="CHATAPP_API_KEY",
            help="An API key with admin scope (default: the credentials file's).",
        ),
    ] = None,
) -> None:
    """Serve models, chat, and run the appliance: users, keys, quotas, usage, fleet."""
    ctx.obj = resolve_target(url, key)


app.command()(serve)
app.command()(local.init)
app.command()(local.migrate)
app.command()(local.key)
app.command()(doctor)
app.command()(chat)
app.command()(bench)
app.add_typer(users.app, name="users")
app.add_typer(orgs.app, name="orgs")
app.add_typer(keys.app, name="keys")
app.add_typer(tiers.app, name="tiers")
app.add_typer(quota.app, name="quota")
app.add_typer(usage.app, name="usage")
app.add_typer(models.app, name="models", help="Models: engines, replicas, load and restarts.")
app.add_typer(fleet.app, name="fleet", help="Upstreams: health, load, drain and undrain.")
app.add_typer(conversations.app, name="conversations")
app.add_typer(moderation.app, name="moderation")


if __name__ == "__main__":
    app()
