"""TUI fixtures: a fresh user and key per test (an empty sidebar), apps against the live server."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot

from chatapp.accounts import Accounts
from chatapp.paths import DB_NAME
from chatapp.store import open_database
from tests.conftest import LiveServer
from tui.api import ChatApi, Endpoint
from tui.app import ChatApp
from tui.screens.main import MainScreen
from tui.settings import SETTINGS_ENV

_names = itertools.count()


@dataclass
class Account:
    """A user of the live server with one chat key, and an httpx client that uses it."""

    key_id: int
    secret: str
    http: httpx.Client

    def new_conversation(self, **fields: Any) -> dict[str, Any]:
        response = self.http.post("/v1/conversations", json={"model": "scripted", **fields})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def message(self, cid: str, mid: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/conversations/{cid}/messages/{mid}")
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture(autouse=True)
def tui_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own tui.toml (absent until written), never the user's."""
    path = tmp_path / "tui.toml"
    monkeypatch.setenv(SETTINGS_ENV, str(path))
    return path


@pytest.fixture
def account(server: LiveServer) -> Iterator[Account]:
    """A new user in a new org (pro tier) with a chat key: no conversations, full buckets."""
    accounts = Accounts(open_database(server.home / DB_NAME))
    n = next(_names)
    org = accounts.ensure_org(f"tui-org-{n}-{time.time_ns()}", tier="pro")
    user = accounts.ensure_user(f"tui-user-{n}-{time.time_ns()}", org_id=org)
    created = accounts.create_key(user)
    accounts.db.conn.close()
    headers = {"Authorization": f"Bearer {created.secret}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        yield Account(created.id, created.secret, http)


@pytest.fixture
def make_app(server: LiveServer, account: Account) -> Callable[..., ChatApp]:
    """A ChatApp for the test's user; the scripted model unless told otherwise."""

    def make(model: str = "scripted", max_tokens: int | None = None) -> ChatApp:
        api = ChatApi(Endpoint(server.url, account.secret))
        return ChatApp(api, model=model, max_tokens=max_tokens)

    return make


async def until(
    pilot: Pilot[Any], check: Callable[[], object], what: str, timeout: float = 15
) -> None:
    """Let the app run until `check()` is true; fail saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def main_screen(app: ChatApp) -> MainScreen:
    screen = app.screen_stack[0]
    assert isinstance(screen, MainScreen)
    return screen
