"""`chatapp quota`: what a key, user or org may still use, why a key is refused, and overrides."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.client import AdminClient, client_of, path_ref
from cli.common import console
from cli.output import CsvOption, JsonOption, emit, emit_record, output_format
from cli.tiers import KindArg, ValueArg, limit_value

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Quotas: what is left, why a request is refused.")

QUOTA_COLUMNS = ("model", "level", "kind", "limit", "remaining", "full_in_seconds")
BUCKET_COLUMNS = ("level", "kind", "limit", "available", "fits", "wait_seconds")

UserOption = Annotated[str | None, typer.Option("--user", help="User name or id.")]
OrgOption = Annotated[str | None, typer.Option("--org", help="Org name or id.")]
KeyOption = Annotated[
    str | None, typer.Option("--key-prefix", help="Key id or display prefix (ca-…).")
]
ModelOption = Annotated[str | None, typer.Option(help="Only this model.")]


def _subject(user: str | None, org: str | None, key: str | None) -> tuple[str, str]:
    given = [(level, ref) for level, ref in (("user", user), ("org", org), ("key", key)) if ref]
    if len(given) != 1:
        raise typer.BadParameter("name exactly one of --user, --org or --key-prefix")
    return given[0]


@app.command("show")
def show(
    ctx: typer.Context,
    user: UserOption = None,
    org: OrgOption = None,
    key: KeyOption = None,
    model: ModelOption = None,
    json_output: JsonOption = False,
    csv_output: CsvOption = False,
) -> None:
    """Each limit in force for a user, org or key, and what is left of it now."""
    level, ref = _subject(user, org, key)
    record = client_of(ctx).get(f"/admin/quota/{level}/{path_ref(ref)}", model=model)
    fmt = output_format(json_output, csv_output)
    tiers = record["tiers"]
    title = f"{level} {ref}: tier {tiers['user'] if level != 'org' else tiers['org']}"
    emit(record["data"], QUOTA_COLUMNS, fmt, title=title, empty="no limits apply")


@app.command("explain")
def explain(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Key id or display prefix (ca-…).")],
    model: ModelOption = None,
    tokens: Annotated[
        int | None, typer.Option(min=0, help="Tokens the request would reserve.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Would a request with this key be admitted now? If not: which level and limit refuse it,
    the bucket levels, and when it fits again."""
    record = client_of(ctx).get("/admin/quota/explain", key=key, model=model, tokens=tokens)
    if json_output:
        emit_record(record, output_format(True))
        return
    who = record["key"]
    head = f"key {who['prefix']}… (user {who['user_id']}, org {who['org_id']}), {record['model']}"
    if record["allowed"]:
        console.print(f"[green]allowed[/]: {head}, {record['tokens']} tokens", highlight=False)
    else:
        console.print(_refusal(record, head), highlight=False)
    emit(record["buckets"], BUCKET_COLUMNS, output_format(False), title="buckets")


def _refusal(record: dict[str, Any], head: str) -> str:
    why = record["refused_by"]
    limit = f"{why['level']} {why['kind']} (limit {why['limit']}, {why['available']} left)"
    if why["never_fits"]:
        when = "never: the request is larger than the limit"
    elif why["kind"] == "concurrent_streams":
        when = "when one of its streams ends"
    else:
        when = f"in {why['wait_seconds']:.1f} s"
    return f"[red]refused[/]: {head}, by {limit}; fits {when}"


def _subject_id(client: AdminClient, level: str, ref: str) -> int:
    if level == "key":
        return int(client.get(f"/admin/keys/{path_ref(ref)}")["id"])
    table = "users" if level == "user" else "orgs"
    return int(client.get(f"/admin/{table}/{path_ref(ref)}")["id"])


@app.command("set")
def set_override(
    ctx: typer.Context,
    kind: KindArg,
    value: ValueArg,
    user: UserOption = None,
    org: OrgOption = None,
    key: KeyOption = None,
    model: ModelOption = None,
) -> None:
    """Override one limit for one user, org or key (on top of its tier), from the next request."""
    level, ref = _subject(user, org, key)
    client = client_of(ctx)
    subject_id = _subject_id(client, level, ref)
    body = {"limits": {kind: limit_value(kind, value)}, **({"model": model} if model else {})}
    client.put(f"/admin/limits/{level}/{subject_id}", body)
    console.print(f"{level} {ref}: {kind} = {value}", highlight=False)


@app.command("unset")
def unset_override(
    ctx: typer.Context,
    kind: KindArg,
    user: UserOption = None,
    org: OrgOption = None,
    key: KeyOption = None,
    model: ModelOption = None,
) -> None:
    """Remove an override: the tier's value applies again."""
    level, ref = _subject(user, org, key)
    limit_value(kind, "none")
    client = client_of(ctx)
    subject_id = _subject_id(client, level, ref)
    record = client.delete(f"/admin/limits/{level}/{subject_id}", kind=kind, model=model)
    console.print(f"{level} {ref}: {kind} follows the tier again", highlight=False)
    others = [m for m, values in record["overrides"].items() if kind in values]
    if others:
        console.print(f"(still overridden for: {', '.join(others)})", highlight=False)
