"""`chatapp doctor`: check this box can serve, as a table for people or JSON for scripts."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from cli.common import ConfigOption, console

__all__ = ["doctor"]

_STYLE = {"ok": "bold green", "warn": "bold yellow", "fail": "bold red"}


def doctor(
    config: ConfigOption = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help='Print a JSON list of {"check", "status", "detail"}.'),
    ] = False,
) -> None:
    """Check Python, GPUs, engines, config, port, disk and data files; exit 1 if any fails."""
    from chatapp.diagnostics import run_checks

    # Not load_setup: a broken models.toml must not stop the report, it is one of its lines.
    checks = run_checks(config)
    if json_output:
        typer.echo(json.dumps([check.as_json() for check in checks], indent=2))
    else:
        table = Table("check", "status", "detail")
        for check in checks:
            table.add_row(
                Text(check.name), Text(check.status, style=_STYLE[check.status]), Text(check.detail)
            )
        console.print(table, highlight=False)
        failed = sum(check.status == "fail" for check in checks)
        warned = sum(check.status == "warn" for check in checks)
        if failed:
            console.print(f"[bold red]{failed} check(s) failed[/]", highlight=False)
        else:
            console.print(f"[bold green]ready to serve[/] ({warned} warning(s))", highlight=False)
    if any(check.status == "fail" for check in checks):
        raise typer.Exit(1)
