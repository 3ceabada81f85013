"""`chatapp models`: the models the running server serves, and each one's engines."""

from __future__ import annotations

from typing import Any

import typer

from cli.client import client_of
from cli.output import CsvOption, JsonOption, emit, output_format

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Models: engines, replicas, load and restarts.")


def _models(ctx: typer.Context) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = client_of(ctx).get("/admin/models")["models"]
    return models


@app.command("list")
def list_models(
    ctx: typer.Context, json_output: JsonOption = False, csv_output: CsvOption = False
) -> None:
    """List the models the server serves: engine, model, context window, replicas, state."""
    fmt = output_format(json_output, csv_output)
    columns = ["name", "engine", "model", "context_window", "replicas", "state"]
    emit(_models(ctx), columns, fmt, empty="no models configured")


@app.command()
def status(
    ctx: typer.Context, json_output: JsonOption = False, csv_output: CsvOption = False
) -> None:
    """Show each model's upstreams: engine state, readiness, load, restarts, pid, latency."""
    fmt = output_format(json_output, csv_output)
    rows = [
        {"model": model["name"], "upstream": upstream["name"], **upstream}
        for model in _models(ctx)
        for upstream in model["upstreams"]
    ]
    columns = [
        "model",
        "upstream",
        "state",
        "ready",
        "outstanding",
        "restarts",
        "pid",
        "latency_ms",
    ]
    emit(rows, columns, fmt, empty="no models configured")
