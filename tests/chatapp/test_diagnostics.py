"""The doctor's checks on real files, sockets, processes and a stand-in nvidia-smi."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from chatapp import diagnostics
from chatapp.bootstrap import initialize
from chatapp.config import load_config
from chatapp.diagnostics import (
    NO_GPU,
    Check,
    check_config,
    check_credentials,
    check_database,
    check_disk,
    check_gpus,
    check_ledger,
    check_llama_cpp,
    check_port,
    check_vllm,
    run_checks,
)
from chatapp.engines.supervisor import free_port
from chatapp.ledger import LEDGER_NAME
from chatapp.migrate import apply_migrations
from chatapp.paths import CREDENTIALS_NAME, DB_NAME, migrations_dir, shipped_config_path


def write_config(path: Path, port: int, extra: str = "") -> Path:
    """The shipped models.toml on another port, plus `extra` TOML."""
    text = shipped_config_path().read_text().replace("port = 8000", f"port = {port}")
    path.write_text(text + extra)
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path / "models.toml", free_port())


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_a_fresh_initialised_home_has_no_failure(home: Path, config_path: Path) -> None:
    initialize(home, url="http://127.0.0.1:8000")
    checks = by_name(run_checks(config_path, home=home))
    assert list(checks) == [
        "python",
        "config",
        "gpus",
        "vllm",
        "llama.cpp",
        "port",
        "disk",
        "database",
        "credentials",
        "ledger",
    ]
    assert [c for c in checks.values() if c.status == "fail"] == []
    assert checks["database"].status == "ok" and "intact" in checks["database"].detail
    assert checks["credentials"].status == "ok"
    assert checks["config"].detail.startswith(f"{config_path}: ")
    assert json.loads(json.dumps(checks["port"].as_json())) == {
        "check": "port",
        "status": "ok",
        "detail": checks["port"].detail,
    }


def test_an_empty_home_warns_to_run_init(home: Path, config_path: Path) -> None:
    checks = by_name(run_checks(config_path, home=home))
    assert checks["database"].status == "warn" and "chatapp init" in checks["database"].detail
    assert checks["credentials"].status == "warn"
    assert checks["ledger"].status == "ok"


def test_the_data_dir_comes_from_the_config_unless_chatapp_home_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    initialize(data, url="http://127.0.0.1:8000")
    config = write_config(tmp_path / "models.toml", free_port())
    config.write_text(config.read_text().replace("# data_dir =", f'data_dir = "{data}" #'))
    monkeypatch.delenv("CHATAPP_HOME", raising=False)
    assert by_name(run_checks(config))["database"].detail.startswith(str(data / DB_NAME))
    monkeypatch.setenv("CHATAPP_HOME", str(tmp_path / "elsewhere"))
    assert by_name(run_checks(config))["database"].status == "warn"


def test_garbage_in_the_database_file_fails(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    path.write_bytes(os.urandom(8192))
    check = check_database(path)
    assert check.status == "fail" and "not a database" in check.detail


@pytest.mark.parametrize(
    ("offset", "damage", "said"),
    [
        (36, (7).to_bytes(4, "big"), "damaged: *** in database main *** Main freelist: size is 0"),
        (4096 * 3, os.urandom(4096), "malformed"),
    ],
    ids=["freelist-count", "table-page"],
)
def test_a_damaged_database_fails(tmp_path: Path, offset: int, damage: bytes, said: str) -> None:
    path = tmp_path / DB_NAME
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(200)])
    conn.commit()
    conn.close()
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(damage)
    check = check_database(path)
    assert check.status == "fail" and said in check.detail


def test_pending_migrations_warn_with_their_count(tmp_path: Path) -> None:
    older = tmp_path / "older"
    older.mkdir()
    shipped = sorted(migrations_dir().glob("*.sql"))
    for source in shipped[:2]:
        (older / source.name).write_text(source.read_text())
    conn = sqlite3.connect(tmp_path / DB_NAME)
    apply_migrations(conn, older)
    conn.close()
    check = check_database(tmp_path / DB_NAME)
    assert check == Check(
        "database", "warn", f"{len(shipped) - 2} migration(s) pending: run `chatapp migrate`"
    )


def test_a_broken_config_fails_and_the_other_checks_still_run(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'x'\n")
    checks = by_name(run_checks(bad, home=home))
    assert checks["config"] == Check(
        "config", "fail", f"{bad}: server.port: must be an integer, not str"
    )
    assert checks["port"].status == "warn"
    assert len(checks) == 10


def test_a_missing_gguf_fails_config_and_llama_cpp(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    config = write_config(
        tmp_path / "models.toml",
        free_port(),
        f'\n[models.local]\nengine = "llama.cpp"\nmodel = "{missing}"\n',
    )
    loaded, check = check_config(config)
    assert check.status == "fail" and f"GGUF file not found: {missing}" in check.detail
    llama = check_llama_cpp(loaded)
    if importlib.util.find_spec("llama_cpp") is not None:
        assert llama.status == "fail" and f"local: GGUF file not found: {missing}" in llama.detail


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_is_needed_only_for_vllm_models() -> None:
    assert check_vllm(needed=False).status == "ok"
    assert check_vllm(needed=True).status == "fail"


def test_a_port_held_by_another_program_fails(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        config = load_config(write_config(tmp_path / "models.toml", port))
        check = check_port(config, timeout=0.2)
    assert check.status == "fail"
    assert f"port {port} is in use by another program" in check.detail


@pytest.fixture
def healthz_server() -> Iterator[int]:
    """A loopback server that answers /healthz the way chatapp does."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_port_held_by_a_running_chatapp_is_fine(tmp_path: Path, healthz_server: int) -> None:
    config = load_config(write_config(tmp_path / "models.toml", healthz_server))
    check = check_port(config)
    assert check.status == "ok" and "running chatapp server" in check.detail


def fake_nvidia_smi(directory: Path, output: str, status: int = 0) -> None:
    directory.mkdir(exist_ok=True)
    script = directory / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '{output}'\nexit {status}\n")
    script.chmod(0o755)


def test_gpus_are_summarised_from_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = "{}, NVIDIA H100 80GB HBM3, 81559, 550.54.15\\n"
    fake_nvidia_smi(tmp_path / "bin", row.format(0) + row.format(1))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    check = check_gpus(needed=True)
    assert check == Check("gpus", "ok", "2 × NVIDIA H100 80GB HBM3 (80 GiB), driver 550.54.15")


def test_a_broken_driver_warns_or_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(tmp_path / "bin", "NVIDIA-SMI has failed: no driver\\n", status=9)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert check_gpus(needed=False) == Check(
        "gpus", "warn", "nvidia-smi failed: NVIDIA-SMI has failed: no driver"
    )
    assert check_gpus(needed=True).status == "fail"


def test_no_gpu_is_fine_unless_a_vllm_model_needs_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert check_gpus(needed=False) == Check("gpus", "ok", NO_GPU)
    assert check_gpus(needed=True).status == "fail"


def test_disk_thresholds(tmp_path: Path) -> None:
    not_yet = tmp_path / "not" / "yet"
    assert check_disk(not_yet, warn_below=0, fail_below=0).status == "ok"
    assert str(tmp_path) in check_disk(not_yet, warn_below=0, fail_below=0).detail
    assert check_disk(tmp_path, warn_below=2**62, fail_below=0).status == "warn"
    assert check_disk(tmp_path, warn_below=2**62, fail_below=2**62).status == "fail"


def test_credentials_readable_by_others_warn(tmp_path: Path) -> None:
    path = tmp_path / CREDENTIALS_NAME
    assert check_credentials(path).status == "warn"
    path.write_text("{}")
    path.chmod(0o644)
    check = check_credentials(path)
    assert check.status == "warn" and "chmod 600" in check.detail
    path.chmod(0o600)
    assert check_credentials(path).status == "ok"


def test_a_closed_ledger_opens_read_only(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_NAME
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE usage (request_id VARCHAR)")
    conn.execute("INSERT INTO usage VALUES ('a'), ('b')")
    conn.close()
    assert check_ledger(path) == Check("ledger", "ok", f"{path}, 2 usage row(s)")


def test_a_ledger_held_by_the_server_is_reported_in_use(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_NAME
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert check_ledger(path) == Check("ledger", "ok", f"{path}: in use by the running server")
    finally:
        holder.communicate("")
    assert holder.returncode == 0


def test_a_garbage_ledger_fails(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_NAME
    path.write_bytes(os.urandom(8192))
    assert check_ledger(path).status == "fail"


def test_a_check_that_crashes_becomes_a_failed_line(
    home: Path, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(home: Path) -> Check:
        raise PermissionError("no access")

    monkeypatch.setattr(diagnostics, "check_disk", broken)
    checks = by_name(run_checks(config_path, home=home))
    assert checks["disk"].status == "fail" and "no access" in checks["disk"].detail
    assert "ledger" in checks
