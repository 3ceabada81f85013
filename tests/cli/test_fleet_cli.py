"""`chatapp models` and `chatapp fleet` against a live server, through typer's runner."""

from __future__ import annotations

import json

import httpx
from typer.testing import CliRunner

from chatapp.engines.supervisor import free_port
from cli.main import app
from tests.conftest import ADMIN_KEY, LiveServer

runner = CliRunner()


def _run(server: LiveServer, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--url", server.url, "--key", ADMIN_KEY, *args])
    return result.exit_code, result.output


def _scripted_draining(server: LiveServer) -> bool:
    upstreams = httpx.get(
        f"{server.url}/admin/fleet", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ).json()["upstreams"]
    return next(u["draining"] for u in upstreams if u["model"] == "scripted")


def test_help_lists_the_groups_and_their_commands() -> None:
    assert all(g in runner.invoke(app, ["--help"]).output for g in ("models", "fleet"))
    fleet_help = runner.invoke(app, ["fleet", "--help"]).output
    assert all(c in fleet_help for c in ("status", "drain", "undrain"))
    assert "list" in runner.invoke(app, ["models", "--help"]).output


def test_fleet_status_json_has_every_upstream(server: LiveServer) -> None:
    code, output = _run(server, "fleet", "status", "--json")
    assert code == 0, output
    rows = json.loads(output)
    by_model = {row["model"]: row for row in rows}
    assert {"smollm2", "scripted", "dead"} <= set(by_model)
    assert by_model["smollm2"]["upstream"] == "smollm2@local"
    assert by_model["smollm2"]["kind"] == "local"
    assert by_model["scripted"]["state"] in ("ok", "failing")


def test_models_list_and_status_tables_show_the_embedded_model(server: LiveServer) -> None:
    code, output = _run(server, "models", "list")
    assert code == 0, output
    assert "smollm2" in output and "llama.cpp" in output
    code, output = _run(server, "models", "status")
    assert code == 0, output
    assert "smollm2" in output and "ready" in output


def test_models_list_csv_has_a_header(server: LiveServer) -> None:
    code, output = _run(server, "models", "list", "--csv")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0] == "name,engine,model,context_window,replicas,state"
    assert any(line.startswith("smollm2,llama.cpp,") for line in lines)


def test_drain_and_undrain_an_upstream(server: LiveServer) -> None:
    try:
        code, output = _run(server, "fleet", "drain", "scripted")
        assert code == 0, output
        assert "drained scripted@" in output and "in flight will finish" in output
        assert _scripted_draining(server)
    finally:
        code, output = _run(server, "fleet", "undrain", "scripted")
    assert code == 0, output
    assert "undrained scripted@" in output
    assert not _scripted_draining(server)


def test_draining_an_unknown_name_is_a_one_line_error(server: LiveServer) -> None:
    code, output = _run(server, "fleet", "drain", "no-such-node")
    assert code == 1
    assert "no-such-node" in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_a_server_that_is_down_says_to_start_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["--url", url, "--key", ADMIN_KEY, "fleet", "status"])
    assert result.exit_code == 1
    assert "chatapp serve" in result.output and "Traceback" not in result.output
