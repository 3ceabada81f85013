"""Fixtures the core's tests share."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chatapp.accounts import Accounts
from chatapp.conversations import ConversationStore
from chatapp.store import open_database


@pytest.fixture
def ann_store(tmp_path: Path) -> tuple[ConversationStore, int]:
    """A conversation store on `tmp_path / "chatapp.db"`, and the id of its one user, ann."""
    db = open_database(tmp_path / "chatapp.db")
    accounts = Accounts(db)
    return ConversationStore(db), accounts.ensure_user("ann", org_id=accounts.ensure_org("o"))


@pytest.fixture
def vllm_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `vllm` program on PATH (never run), so vLLM command lines can be built on CPU."""
    bin_dir = tmp_path / "path-bin"
    bin_dir.mkdir()
    program = bin_dir / "vllm"
    program.write_text("#!/bin/sh\nexit 1\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-venv" / "python"))
    return program
