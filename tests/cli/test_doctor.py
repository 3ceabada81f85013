"""`chatapp doctor` through typer's runner: exit codes, the table, and --json's shape."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from chatapp.bootstrap import initialize
from chatapp.engines.supervisor import free_port
from chatapp.paths import CONFIG_NAME, DB_NAME, shipped_config_path
from cli.doctor import doctor

runner = CliRunner()
app = typer.Typer(pretty_exceptions_enable=False)
app.command()(doctor)


@pytest.fixture
def ready_home(home: Path) -> Path:
    """An initialised data dir whose models.toml listens on a free port."""
    initialize(home, url="http://127.0.0.1:8000")
    text = shipped_config_path().read_text().replace("port = 8000", f"port = {free_port()}")
    (home / CONFIG_NAME).write_text(text)
    return home


def as_json(output: str) -> dict[str, dict[str, str]]:
    return {row["check"]: row for row in json.loads(output)}


def test_a_ready_home_exits_0_with_a_table(ready_home: Path) -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 0, result.output
    for word in ("check", "status", "detail", "database", "credentials", "ready to serve"):
        assert word in result.output
    assert "fail" not in result.output


def test_json_is_a_list_with_stable_keys(ready_home: Path) -> None:
    result = runner.invoke(app, ["--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert isinstance(rows, list) and len(rows) == 10
    for row in rows:
        assert set(row) == {"check", "status", "detail"}
        assert row["status"] in ("ok", "warn", "fail")
    assert as_json(result.output)["config"]["detail"].startswith(str(ready_home / CONFIG_NAME))


def test_a_corrupted_database_fails_with_exit_1(ready_home: Path) -> None:
    (ready_home / DB_NAME).write_bytes(os.urandom(8192))
    result = runner.invoke(app, ["--json"])
    assert result.exit_code == 1
    assert as_json(result.output)["database"]["status"] == "fail"
    table = runner.invoke(app, [])
    assert table.exit_code == 1
    assert "1 check(s) failed" in table.output
    assert "Traceback" not in table.output


def test_a_broken_config_is_reported_not_raised(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[models.x]\nengine = 'ollama'\n")
    result = runner.invoke(app, ["--config", str(bad), "--json"])
    assert result.exit_code == 1
    config = as_json(result.output)["config"]
    assert config["status"] == "fail"
    assert config["detail"].startswith(f"{bad}: models.x.engine: must be one of llama.cpp, vllm")
    table = runner.invoke(app, ["--config", str(bad)])
    assert table.exit_code == 1 and "models.x.engine" in table.output.replace("\n", "")
    assert "Traceback" not in table.output


def test_warnings_alone_exit_0(home: Path, tmp_path: Path) -> None:
    config = tmp_path / CONFIG_NAME
    config.write_text(
        shipped_config_path().read_text().replace("port = 8000", f"port = {free_port()}")
    )
    result = runner.invoke(app, ["--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert as_json(result.output)["database"]["status"] == "warn"
