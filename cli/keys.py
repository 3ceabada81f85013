"""`chatapp keys`: create (the secret is printed once), list, revoke, set expiry and scopes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from cli.client import client_of, path_ref
from cli.common import console
from cli.output import CsvOption, JsonOption, emit, emit_record, output_format

__all__ = ["app", "parse_expires"]

app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke, expiry, scopes.")

KEY_COLUMNS = ("id", "prefix", "user", "name", "scopes", "expires_at", "revoked_at")
KeyArg = Annotated[str, typer.Argument(help="Key id or display prefix (ca-…).")]
ExpiresOption = Annotated[
    str | None,
    typer.Option(
        "--expires", help="When it stops working: 30d, 12h, 2027-01-31 or an ISO time; 'never'."
    ),
]
ScopesOption = Annotated[
    str | None, typer.Option("--scopes", help="Comma-separated: chat, admin (default: chat).")
]


def parse_expires(value: str) -> str | None:
    """'30d', '12h', '90m', a date or an ISO time as ISO; 'never' as None."""
    if value == "never":
        return None
    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = value[:-1], value[-1:]
    if unit in units and number.isdigit():
        try:
            moment = datetime.now(UTC) + timedelta(**{units[unit]: int(number)})
        except OverflowError:
            raise typer.BadParameter(f"'{value}' is too far away", param_hint="--expires") from None
        return moment.isoformat()
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"'{value}' is not a duration (30d, 12h) or an ISO date", param_hint="--expires"
        ) from None
    return value


def _scopes(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


@app.command("create")
def create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name or id.")],
    name: Annotated[str, typer.Option(help="A label, e.g. the laptop or app it is for.")] = "",
    scopes: ScopesOption = None,
    expires: ExpiresOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make a key for a user and print its secret — the only time it is shown."""
    body: dict[str, object] = {"user": user, "name": name}
    if scopes is not None:
        body["scopes"] = _scopes(scopes)
    if expires is not None:
        body["expires_at"] = parse_expires(expires)
    key = client_of(ctx).post("/admin/keys", body)
    if json_output:
        emit_record(key, output_format(True))
        return
    console.print(
        f"key {key['prefix']}… (id {key['id']}) for {key['user']}, scopes {','.join(key['scopes'])}"
        f", expires {key['expires_at'] or 'never'}. The secret, shown once:",
        highlight=False,
    )
    typer.echo(key["secret"])


@app.command("list")
def list_keys(
    ctx: typer.Context,
    prefix: Annotated[str | None, typer.Option(help="Keys whose display prefix starts so.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's keys.")] = None,
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    json_output: JsonOption = False,
    csv_output: CsvOption = False,
) -> None:
    """List keys (never their secrets)."""
    found = client_of(ctx).get(
        "/admin/keys", prefix=prefix, user=user, all="true" if all_keys else None
    )["data"]
    emit(found, KEY_COLUMNS, output_format(json_output, csv_output), title="keys")


@app.command("revoke")
def revoke(ctx: typer.Context, key: KeyArg) -> None:
    """Revoke a key: the next request that uses it gets 401."""
    record = client_of(ctx).delete(f"/admin/keys/{path_ref(key)}")
    console.print(f"{record['prefix']}… revoked at {record['revoked_at']}", highlight=False)


@app.command("set")
def set_key(
    ctx: typer.Context,
    key: KeyArg,
    expires: ExpiresOption = None,
    scopes: ScopesOption = None,
    json_output: JsonOption = False,
) -> None:
    """Change a key's expiry or scopes."""
    body: dict[str, object] = {}
    if expires is not None:
        body["expires_at"] = parse_expires(expires)
    if scopes is not None:
        body["scopes"] = _scopes(scopes)
    if not body:
        raise typer.BadParameter("give --expires and/or --scopes")
    record = client_of(ctx).patch(f"/admin/keys/{path_ref(key)}", body)
    emit_record(record, output_format(json_output), title=f"key {record['prefix']}…")
