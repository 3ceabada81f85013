"""Readiness without a live engine: /readyz and chat answer 503 with Retry-After while loading."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from chatapp.bootstrap import initialize
from chatapp.config import load_config
from chatapp.paths import DB_NAME, shipped_config_path
from server.app import create_app
from tests.conftest import ADMIN_KEY


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run by hand, engines not started (ASGITransport skips it)."""
    initialize(tmp_path, url="http://test", admin_key=ADMIN_KEY)
    app = create_app(load_config(shipped_config_path()), tmp_path)
    async with app.router.lifespan_context(app):
        for pool in app.state.chatapp.pools.values():
            for upstream in pool.upstreams:
                await upstream.supervisor.stop()  # keep the engine "loading"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_readyz_is_503_until_the_engine_is_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["models"]["smollm2"]["ready"] is False
    assert (await client.get("/healthz")).status_code == 200


async def test_chat_is_503_with_retry_after_while_no_engine_is_ready(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["error"]["code"] == "engine_unavailable"


async def test_requests_refused_while_no_engine_is_ready_each_leave_a_usage_row(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Refused all at once (an engine down): every one of them is metered, none lost."""
    answers = await asyncio.gather(
        *(
            client.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]},
            )
            for _ in range(20)
        )
    )
    assert {answer.status_code for answer in answers} == {503}
    db = sqlite3.connect(tmp_path / DB_NAME)
    rows = db.execute("SELECT request_id, status FROM usage_outbox").fetchall()
    db.close()
    assert sorted(rows) == sorted((a.headers["x-request-id"], "error") for a in answers)


async def test_admin_key_from_init_is_accepted_and_bad_bearer_refused(
    client: httpx.AsyncClient,
) -> None:
    ok = await client.get("/v1/models", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert ok.status_code == 200
    bad = await client.get("/v1/models", headers={"Authorization": "Basic abc"})
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"] == "Bearer"


async def test_on_stopped_comes_last_even_when_a_shutdown_step_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve flushes its log threads there: lines explaining a failed shutdown included."""
    initialize(tmp_path, url="http://test", admin_key=ADMIN_KEY)
    stopped: list[bool] = []
    app = create_app(
        load_config(shipped_config_path()), tmp_path, on_stopped=lambda: stopped.append(True)
    )

    def broken() -> int:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        async with app.router.lifespan_context(app):
            monkeypatch.setattr(app.state.chatapp.ledger, "flush", broken)
    assert stopped == [True]
