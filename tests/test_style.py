"""The house rules that a machine can check: ruff, mypy, and chatapp/ staying framework-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_lint_and_format_are_clean() -> None:
    lint = _run("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    formatted = _run("ruff", "format", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_mypy_is_clean() -> None:
    packages = ("chatapp", "server", "cli", "tui", "bench")  # bench/ is a namespace package
    result = _run("mypy", *(arg for package in packages for arg in ("-p", package)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_never_imports_the_frameworks_or_the_outer_packages() -> None:
    banned = {"server", "tui", "cli", "starlette", "textual", "typer", "uvicorn"}
    offenders = []
    for path in (ROOT / "chatapp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in banned]
    assert offenders == []
