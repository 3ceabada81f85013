"""`chatapp users`: add, list, show, set-tier, suspend, resume, delete."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.client import client_of, path_ref
from cli.common import console
from cli.output import CsvOption, JsonOption, emit, emit_record, output_format

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="People who chat: add, list, suspend, delete.")

USER_COLUMNS = ("id", "name", "org", "effective_tier", "status", "admin", "keys", "created_at")
KEY_COLUMNS = ("id", "prefix", "name", "scopes", "expires_at", "revoked_at", "last_used_at")

UserArg = Annotated[str, typer.Argument(help="User name or id.")]


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Login name (letters, digits, _.@+-).")],
    org: Annotated[str, typer.Option(help="Org name or id.")] = "default",
    email: Annotated[str | None, typer.Option(help="Contact address.")] = None,
    tier: Annotated[str | None, typer.Option(help="Tier (default: the org's).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Mark as an administrator.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Add a user to an org; then `chatapp keys create NAME` gives them a key."""
    body = {"name": name, "org": org, "email": email, "tier": tier, "admin": admin}
    user = client_of(ctx).post("/admin/users", {k: v for k, v in body.items() if v is not None})
    if json_output:
        emit_record(user, output_format(True))
        return
    console.print(f"added user [bold]{user['name']}[/] (id {user['id']}) to org {user['org']}")
    console.print(f"next: chatapp keys create {user['name']}", highlight=False)


@app.command("list")
def list_users(
    ctx: typer.Context,
    org: Annotated[str | None, typer.Option(help="Only this org's users.")] = None,
    status: Annotated[
        str | None, typer.Option(help="active, suspended or deleted (default: not deleted).")
    ] = None,
    json_output: JsonOption = False,
    csv_output: CsvOption = False,
) -> None:
    """List users with their org, tier in force, status and live key count."""
    users = client_of(ctx).get("/admin/users", org=org, status=status)["data"]
    emit(users, USER_COLUMNS, output_format(json_output, csv_output), title="users")


@app.command("show")
def show(ctx: typer.Context, user: UserArg, json_output: JsonOption = False) -> None:
    """Show one user and every key they have had."""
    record = client_of(ctx).get(f"/admin/users/{path_ref(user)}")
    fmt = output_format(json_output)
    if json_output:
        emit_record(record, fmt)
        return
    keys = record.pop("api_keys")
    emit_record(record, fmt, title=f"user {record['name']}")
    emit(keys, KEY_COLUMNS, fmt, title="keys", empty="no keys: chatapp keys create " + user)


@app.command("set-tier")
def set_tier(
    ctx: typer.Context,
    user: UserArg,
    tier: Annotated[str, typer.Argument(help="A tier from models.toml, or 'org' for the org's.")],
) -> None:
    """Put a user on a tier; the next request they make is limited by it."""
    value = None if tier == "org" else tier
    record = client_of(ctx).patch(f"/admin/users/{path_ref(user)}", {"tier": value})
    console.print(f"{record['name']}: tier {record['effective_tier']}", highlight=False)


@app.command("suspend")
def suspend(ctx: typer.Context, user: UserArg) -> None:
    """Refuse every request of this user's keys until `resume` (nothing is deleted)."""
    record = client_of(ctx).patch(f"/admin/users/{path_ref(user)}", {"status": "suspended"})
    console.print(f"{record['name']}: suspended", highlight=False)


@app.command("resume")
def resume(ctx: typer.Context, user: UserArg) -> None:
    """Let a suspended user's keys work again."""
    record = client_of(ctx).patch(f"/admin/users/{path_ref(user)}", {"status": "active"})
    console.print(f"{record['name']}: active", highlight=False)


@app.command("delete")
def delete(
    ctx: typer.Context,
    user: UserArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a user: their keys are revoked; conversations and usage stay on record."""
    if not yes:
        typer.confirm(f"Delete user {user} and revoke all their keys?", abort=True)
    record = client_of(ctx).delete(f"/admin/users/{path_ref(user)}")
    console.print(f"{record['name']}: deleted, keys revoked", highlight=False)
