"""`chatapp usage`: reports from the usage ledger, and the top consumers."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from chatapp.report_fields import REPORT_DIMENSIONS, REPORT_MEASURES
from cli.client import client_of
from cli.output import CsvOption, JsonOption, emit, emit_record, output_format

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Usage reports: by user, org, model, key or day.")

ByOption = Annotated[
    str, typer.Option("--by", help=f"Group by one of: {', '.join(REPORT_DIMENSIONS)}.")
]
SinceOption = Annotated[
    str | None, typer.Option(help="From this ISO date or time, UTC (default: 30 days ago).")
]
UntilOption = Annotated[
    str | None, typer.Option(help="Up to this ISO date (the whole day) or time (default: now).")
]


def _by(value: str) -> str:
    if value not in REPORT_DIMENSIONS:
        raise typer.BadParameter(f"use one of {', '.join(REPORT_DIMENSIONS)}", param_hint="--by")
    return value


def _columns(by: str, rows: list[dict[str, Any]]) -> tuple[str, ...]:
    named = ("name",) if rows and "name" in rows[0] else ()
    return (by, *named, *REPORT_MEASURES)


@app.command("report")
def report(
    ctx: typer.Context,
    by: ByOption = "user",
    since: SinceOption = None,
    until: UntilOption = None,
    json_output: JsonOption = False,
    csv_output: CsvOption = False,
) -> None:
    """Requests, tokens, cost and failures per user, org, model, key or day, with totals."""
    record = client_of(ctx).get("/admin/usage", by=_by(by), since=since, until=until)
    rows = record["rows"]
    fmt = output_format(json_output, csv_output)
    if json_output:
        emit_record(record, fmt)  # the whole answer: rows, totals and the period
        return
    totals = {by: "total", **record["totals"]} if rows else None
    emit(
        rows + ([totals] if totals and fmt.value == "table" else []),
        _columns(by, rows),
        fmt,
        title=f"usage by {by}",
        empty="no usage in this period",
    )


@app.command("top")
def top(
    ctx: typer.Context,
    by: ByOption = "user",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many to show.")] = 10,
    since: SinceOption = None,
    until: UntilOption = None,
    json_output: JsonOption = False,
    csv_output: CsvOption = False,
) -> None:
    """The heaviest users (or orgs, models, keys) by tokens used, heaviest first."""
    rows = client_of(ctx).get("/admin/usage", by=_by(by), since=since, until=until)["rows"]
    for row in rows:
        row["total_tokens"] = row["prompt_tokens"] + row["completion_tokens"]
    rows.sort(key=lambda r: (-r["total_tokens"], -r["requests"]))
    emit(
        rows[:limit],
        (*_columns(by, rows), "total_tokens"),
        output_format(json_output, csv_output),
        title=f"top {limit} by tokens ({by})",
        empty="no usage in this period",
    )
