"""Apply migrations/NNNN_name.sql in order, each with its version record in one transaction."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from chatapp.errors import StorageError

__all__ = ["Migration", "applied_versions", "apply_migrations", "discover_migrations"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)"""


@dataclass(frozen=True)
class Migration:
    """One numbered .sql file."""

    version: int
    name: str
    path: Path

    def statements(self) -> list[str]:
        """Split the script into complete statements (triggers with BEGIN…END stay whole).

        Statements run one by one because `executescript` would COMMIT our transaction first.
        """
        statements, buffer = [], ""
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            buffer += line
            if sqlite3.complete_statement(buffer):
                statements.append(buffer.strip())
                buffer = ""
        rest = "\n".join(x for x in buffer.splitlines() if not x.strip().startswith("--"))
        if rest.strip():
            raise StorageError(f"{self.path.name}: unterminated statement at the end: {rest!r}")
        return statements


def discover_migrations(directory: Path) -> list[Migration]:
    """Every NNNN_name.sql in the directory, in version order; duplicates are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise StorageError(f"{path}: migration names must look like 0001_what.sql")
        version = int(match.group(1))
        if version in found:
            raise StorageError(f"{path}: version {version} is used twice")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def applied_versions(conn: sqlite3.Connection) -> set[int]:
    """Versions recorded as applied (empty for a new database)."""
    conn.execute(_LEDGER)
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def apply_migrations(conn: sqlite3.Connection, directory: Path) -> list[int]:
    """Apply each pending migration in its own IMMEDIATE transaction; returns what was applied.

    Re-running is a no-op. A failing migration is rolled back whole and raises StorageError,
    leaving earlier ones in place. The version check is repeated inside the transaction so two
    processes starting at once cannot apply the same file twice.
    """
    saved = conn.isolation_level
    conn.isolation_level = None
    # Off while migrating (the pragma is a no-op inside a transaction), so a table rebuild
    # (create new, copy, drop old, rename) does not cascade-delete child rows; the
    # foreign_key_check before each COMMIT keeps integrity all the same.
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys = OFF")
    applied: list[int] = []
    try:
        done = applied_versions(conn)
        for migration in discover_migrations(directory):
            if migration.version in done:
                continue
            statements = migration.statements()
            conn.execute("BEGIN IMMEDIATE")
            try:
                already = conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
                ).fetchone()
                if already is None:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                        (migration.version, migration.name),
                    )
                    applied.append(migration.version)
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise sqlite3.IntegrityError(f"foreign keys broken by it: {broken[:5]}")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise StorageError(f"migration {migration.path.name} failed: {exc}") from exc
    finally:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        conn.isolation_level = saved
    return applied
