"""`chatapp orgs`: add, list, members, add-member, set-tier."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.client import client_of, path_ref
from cli.common import console
from cli.output import CsvOption, JsonOption, emit, emit_record, output_format
from cli.users import USER_COLUMNS

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Orgs group users and carry a tier: add, list.")

ORG_COLUMNS = ("id", "name", "tier", "members", "created_at")
OrgArg = Annotated[str, typer.Argument(help="Org name or id.")]


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Org name (letters, digits, _.@+-).")],
    tier: Annotated[str | None, typer.Option(help="Tier (default: server.default_tier).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Add an org."""
    body = {"name": name, **({"tier": tier} if tier else {})}
    org = client_of(ctx).post("/admin/orgs", body)
    if json_output:
        org.pop("users", None)
        emit_record(org, output_format(True))
        return
    console.print(f"added org [bold]{org['name']}[/] (id {org['id']}, tier {org['tier']})")


@app.command("list")
def list_orgs(
    ctx: typer.Context, json_output: JsonOption = False, csv_output: CsvOption = False
) -> None:
    """List orgs with their tier and member count."""
    orgs = client_of(ctx).get("/admin/orgs")["data"]
    emit(orgs, ORG_COLUMNS, output_format(json_output, csv_output), title="orgs")


@app.command("members")
def members(
    ctx: typer.Context, org: OrgArg, json_output: JsonOption = False, csv_output: CsvOption = False
) -> None:
    """List an org's users."""
    record = client_of(ctx).get(f"/admin/orgs/{path_ref(org)}")
    emit(
        record["users"],
        USER_COLUMNS,
        output_format(json_output, csv_output),
        title=f"members of {record['name']} (tier {record['tier']})",
        empty="no members: chatapp orgs add-member",
    )


@app.command("add-member")
def add_member(
    ctx: typer.Context, org: OrgArg, user: Annotated[str, typer.Argument(help="User name or id.")]
) -> None:
    """Move a user into this org (a user belongs to one org)."""
    record = client_of(ctx).patch(f"/admin/users/{path_ref(user)}", {"org": org})
    console.print(f"{record['name']} is now in org {record['org']}", highlight=False)


@app.command("set-tier")
def set_tier(
    ctx: typer.Context, org: OrgArg, tier: Annotated[str, typer.Argument(help="A tier name.")]
) -> None:
    """Put an org on a tier (its users without a tier of their own follow it)."""
    record = client_of(ctx).patch(f"/admin/orgs/{path_ref(org)}", {"tier": tier})
    console.print(f"{record['name']}: tier {record['tier']}", highlight=False)
