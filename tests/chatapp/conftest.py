"""Fixtures the core's tests share."""

from __future__ import annotations

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
