"""What every benchmark here prints: a line of machine facts and a table of results."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

__all__ = ["Row", "console_for", "percentile", "print_facts", "print_table"]


@dataclass(frozen=True)
class Row:
    """One line of the result table; `ok` is None for facts that have no target."""

    what: str
    measured: str
    target: str = "-"
    ok: bool | None = None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; the samples are already sorted once for every q."""
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def console_for(width: int) -> Console:
    # Not a terminal (piped, CI): wide enough that each row stays on one line.
    return Console(width=None if sys.stdout.isatty() else width)


def print_facts(console: Console, *extra: str, quick: bool) -> None:
    facts = [
        f"python {platform.python_version()} ({sys.implementation.name})",
        f"{os.cpu_count()} cpus",
        *extra,
        f"sqlite {sqlite3.sqlite_version}",
        f"{platform.machine()} {platform.system()}",
    ]
    console.print(", ".join(facts) + (" [quick]" if quick else ""), highlight=False)


def print_table(console: Console, title: str, rows: Sequence[Row]) -> None:
    """Verdicts live in the table, not in the exit code."""
    table = Table(title=title)
    for column in ("what", "measured", "target", "verdict"):
        table.add_column(column, justify="right" if column == "measured" else "left")
    for row in rows:
        verdict = "-" if row.ok is None else "[green]pass" if row.ok else "[red]fail"
        table.add_row(row.what, row.measured, row.target, verdict)
    console.print(table)
