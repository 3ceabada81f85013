"""`chatapp chat`: the Textual chat client, against the server the options name."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.client import Target, resolve_target

__all__ = ["chat"]


def chat(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option("--url", help="The server (default: the global --url, else credentials)."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="An API key with chat scope (default: as for --url)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model for new chats (default: the server's first)."),
    ] = None,
) -> None:
    """Chat in the terminal (F1 lists the keys); with no options, the local server and key."""
    # Textual loads lazily: `chatapp --help` and the admin commands stay fast.
    from tui.api import ChatApi, Endpoint
    from tui.app import ChatApp

    root = ctx.find_root().obj
    target = root if isinstance(root, Target) else resolve_target(None, None)
    endpoint = Endpoint((url or target.url).rstrip("/"), key or target.key)
    ChatApp(ChatApi(endpoint), model=model).run()
