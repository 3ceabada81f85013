"""`chatapp bench` against a live gateway over the engine emulator, and against nothing."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from chatapp.engines.supervisor import free_port
from cli.main import app
from tests.conftest import ADMIN_KEY, LiveServer

runner = CliRunner()


def test_bench_reports_every_request_as_json(gateway: LiveServer) -> None:
    args = ["--url", gateway.url, "--key", ADMIN_KEY, "bench", "--requests", "20"]
    args += ["--concurrency", "4", "--max-tokens", "16", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["model"] == "emu"
    assert record["requests"] == 20
    assert record["errors"] == 0
    assert record["tokens"] == 20 * 16  # one content chunk a token, none lost
    assert record["tokens_per_second"] > 0
    assert 0 < record["ttft_p50_ms"] <= record["ttft_p99_ms"]
    assert record["itl_p50_ms"] is not None


def test_bench_unstreamed_counts_the_usage(gateway: LiveServer) -> None:
    args = ["--url", gateway.url, "--key", ADMIN_KEY, "bench", "-n", "4", "-c", "2"]
    result = runner.invoke(app, [*args, "--max-tokens", "8", "--no-stream", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["requests"], record["errors"], record["tokens"]) == (4, 0, 32)
    assert record["itl_p50_ms"] is None


def test_bench_table_and_an_unknown_model(gateway: LiveServer) -> None:
    base = ["--url", gateway.url, "--key", ADMIN_KEY, "bench", "-n", "2", "--max-tokens", "4"]
    table = runner.invoke(app, base)
    assert table.exit_code == 0, table.output
    assert "tokens per second" in table.stdout
    unknown = runner.invoke(app, [*base, "--model", "nope"])
    assert unknown.exit_code == 1
    assert "no model 'nope'" in unknown.output and "emu" in unknown.output


def test_bench_against_a_server_that_is_down(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["--url", url, "--key", ADMIN_KEY, "bench", "-n", "2"])
    assert result.exit_code == 1
    assert "chatapp serve" in result.output
    assert "Traceback" not in result.output
