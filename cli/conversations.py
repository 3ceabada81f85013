"""`chatapp conversations`: export all (JSON Lines), import them, purge deleted ones."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cli.client import client_of
from cli.common import console, err_console, fail

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Conversations: export, import, purge deleted.")


def _progress() -> Progress:
    """A bar on stderr, so a export written to stdout stays clean."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


@app.command("export")
def export(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's (name or id).")] = None,
) -> None:
    """Write every conversation (all branches) as JSON Lines, one conversation per line.

    A file is written beside its final name and renamed only when the export is whole, so a
    failed export never replaces (or empties) an earlier one.
    """
    client = client_of(ctx)
    partial = output.with_name(output.name + ".part") if output else None
    try:
        with (
            client.stream("/admin/conversations/export", user=user) as response,
            open(partial, "w", encoding="utf-8") if partial else nullcontext(sys.stdout) as target,
            _progress() as progress,
        ):
            total = int(response.headers.get("x-total-count", "0"))
            task = progress.add_task("exporting", total=total)
            written = _copy_lines(response.iter_lines(), target, lambda: progress.advance(task))
        if output and partial:
            os.replace(partial, output)
    except OSError as exc:
        raise fail(f"cannot write {exc.filename or output}: {exc.strerror}") from None
    finally:
        if partial is not None and partial.exists():
            partial.unlink()
    if output:
        console.print(f"exported {written} conversation(s) to {output}", highlight=False)


def _copy_lines(lines: Iterator[str], target: IO[str], advance: Callable[[], None]) -> int:
    written = 0
    for line in lines:
        if line:
            target.write(line + "\n")
            written += 1
            advance()
    return written


@app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="A file from `conversations export`.")],
    user: Annotated[
        str | None, typer.Option(help="Give them all to this user (default: each line's own).")
    ] = None,
) -> None:
    """Import an export: each conversation is re-created under new ids, every branch kept."""
    try:
        lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise fail(f"cannot read {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise fail(f"{source} is not a JSON Lines export (not UTF-8 text)") from None
    client = client_of(ctx)
    done = 0
    with _progress() as progress:
        task = progress.add_task("importing", total=len(lines))
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                raise fail(
                    f"{source}:{number}: not JSON; {done} conversation(s) were imported before it"
                ) from None
            try:
                client.post("/admin/conversations/import", record, user=user)
            except typer.Exit:
                err_console.print(
                    f"stopped at {source}:{number}; {done} conversation(s) were imported before it",
                    highlight=False,
                )
                raise
            done += 1
            progress.advance(task)
    console.print(f"imported {done} conversation(s)", highlight=False)


@app.command("purge")
def purge(
    ctx: typer.Context,
    older_than: Annotated[
        float, typer.Option(min=0, help="Only those deleted more than this many days ago.")
    ] = 0,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete for good the conversations users have deleted (they cannot be brought back)."""
    client = client_of(ctx)
    total = client.post("/admin/conversations/purge", dry_run="true", older_than_days=older_than)[
        "remaining"
    ]
    if total == 0:
        console.print("nothing to purge")
        return
    if not yes:
        typer.confirm(f"Purge {total} deleted conversation(s) for good?", abort=True)
    purged = 0
    with _progress() as progress:
        task = progress.add_task("purging", total=total)
        while True:
            answer = client.post(
                "/admin/conversations/purge", limit=200, older_than_days=older_than
            )
            purged += answer["purged"]
            progress.update(task, completed=min(purged, total))
            if answer["purged"] == 0 or answer["remaining"] == 0:
                break
    console.print(f"purged {purged} conversation(s)", highlight=False)
