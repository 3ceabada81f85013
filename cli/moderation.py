"""`chatapp moderation log`: the moderation decisions (blocked questions, cut answers, flags)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.client import client_of
from cli.output import CsvOption, Format, JsonOption, emit, output_format

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Content moderation: what was blocked or flagged.")

LOG_COLUMNS = ("ts", "direction", "action", "category", "user", "excerpt")
DETAIL_COLUMNS = ("id", "score", "source", "policy", "model", "conversation_id", "request_id")


@app.command("log")
def log(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="From this ISO date or time (UTC).")] = None,
    action: Annotated[str | None, typer.Option(help="Only block or only flag.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's (name or id).")] = None,
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 50,
    json_output: JsonOption = False,
    csv_output: CsvOption = False,
) -> None:
    """Moderation decisions, newest first: when, whose, which category, score and action."""
    rows = client_of(ctx).get(
        "/admin/moderation",
        since=since,
        action=action,
        user=user,
        category=category,
        limit=limit,
    )["data"]
    fmt = output_format(json_output, csv_output)
    columns = LOG_COLUMNS if fmt is Format.TABLE else (*LOG_COLUMNS, *DETAIL_COLUMNS)
    emit(rows, columns, fmt, title="moderation log", empty="no moderation decisions")
