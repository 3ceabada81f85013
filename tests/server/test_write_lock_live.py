"""A conversation's writes wait for a write lock held elsewhere without stopping the gateway."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from chatapp.paths import DB_NAME
from tests.conftest import LiveServer


def _client(server: LiveServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=10
    )


def _create(server: LiveServer) -> httpx.Response:
    with _client(server) as client:
        return client.post("/v1/conversations", json={"title": "made while locked"})


def test_a_new_chat_waits_for_the_lock_while_the_gateway_answers(server: LiveServer) -> None:
    with _client(server) as client:
        made = client.post("/v1/conversations", json={"title": "renamed while locked"}).json()
        # Another connection holds the write lock (the housekeeper indexing, a purge, an
        # admin's sqlite3 shell). On the loop's connection SQLite's busy handler would sleep
        # the event loop until it is let go, and every request with it.
        holder = sqlite3.connect(server.home / DB_NAME, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                creating = pool.submit(_create, server)
                time.sleep(0.5)  # the new chat's write is waiting for the lock by now
                started = time.perf_counter()
                listed = client.get("/v1/conversations")
                answered_in = time.perf_counter() - started
                waited = not creating.done()
                holder.execute("ROLLBACK")
                created = creating.result(timeout=30)
        finally:
            holder.close()
        renamed = client.patch(f"/v1/conversations/{made['id']}", json={"title": "after"})
    assert listed.status_code == 200 and answered_in < 2.0
    assert waited  # the write really was held up meanwhile
    assert created.status_code == 201, created.text
    assert created.json()["title"] == "made while locked"
    assert renamed.status_code == 200 and renamed.json()["title"] == "after"


def test_a_refused_change_inside_the_shared_commit_is_an_openai_shaped_error(
    server: LiveServer,
) -> None:
    with _client(server) as client:
        made = client.post("/v1/conversations", json={"title": "kept"}).json()
        bad = client.patch(f"/v1/conversations/{made['id']}", json={"title": "x", "pinned": 3})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "pinned"
        assert client.get(f"/v1/conversations/{made['id']}").json()["title"] == "kept"
        gone = client.patch("/v1/conversations/conv_nope", json={"title": "x"})
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "conversation_not_found"
        deleted = client.delete(f"/v1/conversations/{made['id']}")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        assert client.get(f"/v1/conversations/{made['id']}").status_code == 404
