"""`chatapp fleet`: every upstream's health and load, and draining one without a restart."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.client import client_of
from cli.common import console
from cli.output import CsvOption, Format, JsonOption, emit, output_format

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Upstreams: health, load, drain and undrain.")

NameArgument = Annotated[
    str,
    typer.Argument(help="An upstream's name (see `chatapp fleet status`), a model, or a URL."),
]


def _rows(upstreams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"upstream": u["name"], **u} for u in upstreams]


@app.command()
def status(
    ctx: typer.Context, json_output: JsonOption = False, csv_output: CsvOption = False
) -> None:
    """Show every upstream: state, draining, in-flight requests (and a vLLM engine's own queue),
    served requests, failures, latency."""
    fmt = output_format(json_output, csv_output)
    upstreams = client_of(ctx).get("/admin/fleet")["upstreams"]
    columns = [
        "model",
        "upstream",
        "kind",
        "state",
        "draining",
        "outstanding",
        "engine_waiting",
        "served",
        "failures",
        "latency_ms",
        "last_error",
    ]
    emit(_rows(upstreams), columns, fmt, empty="no upstreams configured")


def _set_draining(ctx: typer.Context, name: str, drain: bool, json_output: bool) -> None:
    path = "/admin/fleet/drain" if drain else "/admin/fleet/undrain"
    upstreams = client_of(ctx).post(path, {"upstream": name})["upstreams"]
    if output_format(json_output) is Format.JSON:
        emit(_rows(upstreams), [], Format.JSON)
        return
    for upstream in upstreams:
        if drain:
            console.print(
                f"drained {upstream['name']} ({upstream['model']}): no new requests; "
                f"{upstream['outstanding']} in flight will finish",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(
                f"undrained {upstream['name']} ({upstream['model']}): taking requests again",
                highlight=False,
                soft_wrap=True,
            )


@app.command()
def drain(ctx: typer.Context, name: NameArgument, json_output: JsonOption = False) -> None:
    """Stop sending new requests to an upstream; those in flight finish."""
    _set_draining(ctx, name, True, json_output)


@app.command()
def undrain(ctx: typer.Context, name: NameArgument, json_output: JsonOption = False) -> None:
    """Let a drained upstream take new requests again."""
    _set_draining(ctx, name, False, json_output)
