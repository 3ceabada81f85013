"""One way to print results: a rich table for people, `--json` or `--csv` for scripts.

Field names in JSON and CSV are the API's own, so scripts do not break when a table's
columns are relabelled for people.
"""

from __future__ import annotations

import csv
import enum
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from cli.common import console

__all__ = [
    "CsvOption",
    "Format",
    "JsonOption",
    "emit",
    "emit_record",
    "heading",
    "output_format",
]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (stable field names).")]
CsvOption = Annotated[bool, typer.Option("--csv", help="Print CSV with a header row.")]


class Format(enum.Enum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def output_format(json_output: bool, csv_output: bool = False) -> Format:
    if json_output and csv_output:
        raise typer.BadParameter("choose one of --json and --csv")
    return Format.JSON if json_output else Format.CSV if csv_output else Format.TABLE


_GAP = 3  # what a column costs besides its text: padding either side and the divider

# Short headings where a limit's API name would not fit an 80-column terminal.
_HEADINGS = {
    "requests_per_minute": "req/min",
    "tokens_per_minute": "tok/min",
    "requests_per_day": "req/day",
    "tokens_per_day": "tok/day",
    "concurrent_streams": "streams",
    "changed_at_run_time": "changed",
}
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(:\d\d(\.\d+)?)?Z?$")


def heading(column: str) -> str:
    return _HEADINGS.get(column, column.replace("_", " "))


# Identifiers read better without thousands separators.
_PLAIN_NUMBERS = frozenset({"id", "pid", "subject_id", "user", "org", "key", "port"})


def _cell(value: Any, column: str = "") -> str:
    if isinstance(value, str) and (stamp := _TIMESTAMP.match(value)):
        return f"{stamp[1]} {stamp[2]}"  # UTC to the minute: what a person reads in a table
    if isinstance(value, str) and value in _HEADINGS:
        return _HEADINGS[value]
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return str(value) if column in _PLAIN_NUMBERS else f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    return str(value)


def emit(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: Format,
    *,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    """Print rows: `columns` picks and orders the table's (and the CSV's) fields."""
    if fmt is Format.JSON:
        typer.echo(json.dumps(list(rows), indent=2, default=str))
        return
    if fmt is Format.CSV:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
        return
    if not rows:
        console.print(f"[dim]{empty}[/]")
        return
    table = Table(
        title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False
    )
    cells = [[_cell(row.get(c), c) for c in columns] for row in rows]
    widths = [
        max(max(len(line[i]) for line in cells), *(len(w) for w in heading(c).split()))
        for i, c in enumerate(columns)
    ]
    # When the table fits, nothing wraps; else names (the first two columns) and numbers
    # keep their width and free text folds onto more lines. Nothing is cut off.
    numeric = [any(isinstance(r.get(c), int | float) for r in rows) for c in columns]
    keep = [True] * len(columns)
    # Keep whole as much as fits: everything; else numbers, the first column and short
    # columns; else numbers and the first column; else the first column. The rest folds.
    for candidate in (
        [True] * len(columns),
        [number or i == 0 or widths[i] <= 12 for i, number in enumerate(numeric)],
        [number or i == 0 for i, number in enumerate(numeric)],
        [i == 0 for i in range(len(columns))],
        [False] * len(columns),
    ):
        kept = sum(w + _GAP for w, k in zip(widths, candidate, strict=True) if k)
        if kept + (4 + _GAP) * candidate.count(False) <= console.width:
            keep = candidate
            break
    else:
        keep = [False] * len(columns)
    # Rich will not break a word to fit, so what folds gets a share of the room left, in
    # proportion to its content.
    kept_width = sum(w + _GAP for w, k in zip(widths, keep, strict=True) if k)
    loose = [i for i, k in enumerate(keep) if not k]
    room = console.width - kept_width - _GAP * len(loose)
    loose_total = sum(widths[i] for i in loose) or 1
    share = {i: max(3, room * widths[i] // loose_total) for i in loose}
    while share and sum(share.values()) > room and max(share.values()) > 3:
        widest = max(share, key=lambda i: share[i])
        share[widest] -= 1
    for index, column in enumerate(columns):
        table.add_column(
            heading(column),
            justify="right" if numeric[index] else "left",
            min_width=widths[index] if keep[index] else None,
            max_width=share.get(index, widths[index]),
            overflow="fold",
        )
    for line in cells:
        table.add_row(*(Text(cell) for cell in line))  # values are text, never markup
    console.print(table)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def emit_record(record: Mapping[str, Any], fmt: Format, *, title: str | None = None) -> None:
    """Print one object: JSON as is, else a two-column table of its fields."""
    if fmt is Format.JSON:
        typer.echo(json.dumps(record, indent=2, default=str))
        return
    if fmt is Format.CSV:
        emit([record], list(record), fmt)
        return
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in record.items():
        table.add_row(heading(key), Text(_cell(value, key)))
    console.print(table)
