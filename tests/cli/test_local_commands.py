"""`chatapp init`, `key`, `migrate` and bad-config handling through typer's runner."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatapp.accounts import Accounts
from chatapp.store import open_database
from cli.main import app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "init", "migrate", "key"):
        assert command in result.output


def test_init_creates_home_db_admin_and_a_0600_credentials_file(home: Path) -> None:
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    credentials = home / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    key = runner.invoke(app, ["key"]).output.strip()
    assert key.startswith("ca-") and key in result.output
    principal = Accounts(open_database(home / "chatapp.db")).authenticate(key)
    assert principal.user_name == "admin" and principal.can("admin")


def test_second_init_changes_nothing(home: Path) -> None:
    runner.invoke(app, ["init"])
    key = runner.invoke(app, ["key"]).output
    again = runner.invoke(app, ["init"])
    assert again.exit_code == 0
    assert "already initialised" in again.output
    assert runner.invoke(app, ["key"]).output == key


def test_admin_key_from_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATAPP_ADMIN_KEY", "ca-automation-key-000000000000")
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert runner.invoke(app, ["key"]).output.strip() == "ca-automation-key-000000000000"


def test_key_without_init_is_a_one_line_error(home: Path) -> None:
    result = runner.invoke(app, ["key"])
    assert result.exit_code == 1
    assert "chatapp init" in result.output


def test_migrate_reports_what_it_applied(home: Path) -> None:
    first = runner.invoke(app, ["migrate"])
    assert first.exit_code == 0 and "0001" in first.output
    assert "up to date" in runner.invoke(app, ["migrate"]).output


def test_serve_with_a_bad_config_is_one_line_naming_file_and_key(
    home: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'x'\n")
    result = runner.invoke(app, ["serve", "--config", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: server.port: must be an integer" in result.output.replace("\n", "")
    assert "Traceback" not in result.output


def test_serve_on_a_busy_port_says_so(home: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert "already in use" in result.output


def test_empty_admin_key_env_does_not_mint_a_key_each_time(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATAPP_ADMIN_KEY", "")
    runner.invoke(app, ["init"])
    key = runner.invoke(app, ["key"]).output
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert runner.invoke(app, ["key"]).output == key


def test_revoked_admin_key_env_is_a_clear_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATAPP_ADMIN_KEY", "ca-automation-key-000000000000")
    runner.invoke(app, ["init"])
    accounts = Accounts(open_database(home / "chatapp.db"))
    accounts.revoke_key(accounts.authenticate("ca-automation-key-000000000000").key_id)
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 1
    assert "CHATAPP_ADMIN_KEY" in result.output and "Traceback" not in result.output


def test_data_dir_that_is_a_file_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CHATAPP_HOME", str(blocker))
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 1
    assert "cannot create the data dir" in result.output
