"""`chatapp tiers`: list, show, set (and unset) a tier's limit on the running server."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from chatapp.limits import LIMIT_KINDS
from cli.client import client_of, path_ref
from cli.common import console
from cli.output import CsvOption, Format, JsonOption, emit, emit_record, heading, output_format

__all__ = ["KindArg", "ValueArg", "app", "limit_value"]

app = typer.Typer(no_args_is_help=True, help="Tiers of limits from models.toml: list, show, set.")

TierArg = Annotated[str, typer.Argument(help="Tier name (see `chatapp tiers list`).")]
KindArg = Annotated[str, typer.Argument(help=f"One of: {', '.join(LIMIT_KINDS)}.")]
ValueArg = Annotated[str, typer.Argument(help="A whole number, or 'none' for no limit.")]
ModelOption = Annotated[str | None, typer.Option(help="Only for this model (default: all).")]


def limit_value(kind: str, value: str) -> int | None:
    """A limit from the command line: a whole number (1_000 and 1,000 allowed) or none."""
    if kind not in LIMIT_KINDS:
        raise typer.BadParameter(f"'{kind}' is not a limit: use one of {', '.join(LIMIT_KINDS)}")
    if value.lower() in ("none", "unlimited", "null"):
        return None
    digits = value.replace("_", "").replace(",", "")
    if not digits.isdigit():
        raise typer.BadParameter(f"'{value}' is not a whole number or 'none'")
    return int(digits)


def _flat(tier: dict[str, Any]) -> dict[str, Any]:
    changed = tier["overrides"]
    return {
        "name": tier["name"],
        "default": tier["default"],
        **tier["limits"],
        "changed_at_run_time": ", ".join(
            kind + ("" if model == "*" else f"[{model}]")
            for model, values in changed.items()
            for kind in values
        )
        or None,
    }


def _short(changed: str | None) -> str | None:
    if changed is None:
        return None
    for kind in LIMIT_KINDS:
        changed = changed.replace(kind, heading(kind))
    return changed


@app.command("list")
def list_tiers(
    ctx: typer.Context, json_output: JsonOption = False, csv_output: CsvOption = False
) -> None:
    """List tiers and the limits in force (models.toml plus run-time changes)."""
    tiers = client_of(ctx).get("/admin/tiers")["tiers"]
    rows = [_flat(t) for t in tiers.values()]
    fmt = output_format(json_output, csv_output)
    if fmt is Format.TABLE:  # a star marks the default tier, saving a column
        rows = [
            {
                **r,
                "name": r["name"] + ("*" if r["default"] else ""),
                "changed_at_run_time": _short(r["changed_at_run_time"]),
            }
            for r in rows
        ]
        columns: tuple[str, ...] = ("name", *LIMIT_KINDS, "changed_at_run_time")
    else:
        columns = ("name", "default", *LIMIT_KINDS, "changed_at_run_time")
    emit(rows, columns, fmt, title="tiers (* default)")


@app.command("show")
def show(ctx: typer.Context, tier: TierArg, json_output: JsonOption = False) -> None:
    """Show a tier: its limits, per-model differences and run-time changes."""
    record = client_of(ctx).get(f"/admin/tiers/{path_ref(tier)}")
    fmt = output_format(json_output)
    if json_output:
        emit_record(record, fmt)
        return
    emit_record(_flat(record), fmt, title=f"tier {tier}")
    rows = [{"model": m, **values} for m, values in record["models"].items()]
    if rows:
        emit(rows, ("model", *LIMIT_KINDS), fmt, title="per model")


@app.command("set")
def set_limit(
    ctx: typer.Context,
    tier: TierArg,
    kind: KindArg,
    value: ValueArg,
    model: ModelOption = None,
) -> None:
    """Change one limit of a tier now, for everyone on it (kept until `tiers unset`)."""
    body = {"limits": {kind: limit_value(kind, value)}, **({"model": model} if model else {})}
    record = client_of(ctx).put(f"/admin/tiers/{path_ref(tier)}/limits", body)
    shown = record["models"].get(model, record["limits"]) if model else record["limits"]
    console.print(f"{tier}: {kind} = {shown[kind] if shown[kind] is not None else 'no limit'}")


@app.command("unset")
def unset_limit(
    ctx: typer.Context, tier: TierArg, kind: KindArg, model: ModelOption = None
) -> None:
    """Undo `tiers set`: models.toml's value applies again."""
    limit_value(kind, "none")
    record = client_of(ctx).delete(f"/admin/tiers/{path_ref(tier)}/limits", kind=kind, model=model)
    console.print(f"{tier}: {kind} back to {record['limits'][kind]} (models.toml)")
