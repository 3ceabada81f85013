"""Writes that wait for a lock held elsewhere (a new chat, an import, a purge) leave the gateway
answering: another connection holds SQLite's write lock (the housekeeper indexing, a purge,
an admin's sqlite3 shell), and on the loop's connection SQLite's busy handler would sleep the
event loop until it is let go, and every request with it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from chatapp.paths import DB_NAME
from tests.conftest import LiveServer


def _client(server: LiveServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=10
    )


def _while_locked(
    server: LiveServer, write: Callable[[httpx.Client], httpx.Response]
) -> tuple[httpx.Response, float, bool]:
    """`write`'s answer, made while the lock is held elsewhere; how long a listing took
    meanwhile; and whether `write` was still waiting when it was answered."""

    def send() -> httpx.Response:
        with _client(server) as client:
            return write(client)

    holder = sqlite3.connect(server.home / DB_NAME, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with ThreadPoolExecutor(max_workers=1) as pool, _client(server) as client:
            writing = pool.submit(send)
            time.sleep(0.5)  # the write is waiting for the lock by now
            started = time.perf_counter()
            listed = client.get("/v1/conversations")
            answered_in = time.perf_counter() - started
            waited = not writing.done()
            holder.execute("ROLLBACK")
            answer = writing.result(timeout=30)
    finally:
        holder.close()
    assert listed.status_code == 200
    return answer, answered_in, waited


def test_a_new_chat_waits_for_the_lock_while_the_gateway_answers(server: LiveServer) -> None:
    created, answered_in, waited = _while_locked(
        server, lambda client: client.post("/v1/conversations", json={"title": "made locked"})
    )
    assert answered_in < 2.0
    assert waited  # the write really was held up meanwhile
    assert created.status_code == 201, created.text
    assert created.json()["title"] == "made locked"
    with _client(server) as client:
        renamed = client.patch(f"/v1/conversations/{created.json()['id']}", json={"title": "b"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "b"


def test_an_import_waits_for_the_lock_while_the_gateway_answers(server: LiveServer) -> None:
    with _client(server) as client:
        made = client.post("/v1/conversations", json={"title": "to copy"}).json()
        export = client.get(f"/v1/conversations/{made['id']}/export", params={"format": "json"})
        assert export.status_code == 200
    imported, answered_in, waited = _while_locked(
        server, lambda client: client.post("/v1/conversations/import", json=export.json())
    )
    assert answered_in < 2.0
    assert waited, imported.text
    assert imported.status_code == 201, imported.text
    assert imported.json()["title"] == "to copy" and imported.json()["id"] != made["id"]


def test_a_purge_waiting_for_the_lock_leaves_requests_answered(server: LiveServer) -> None:
    with _client(server) as client:
        made = []
        for _ in range(3):
            created = client.post("/v1/conversations", json={"title": "purge me"})
            assert created.status_code == 201, created.text
            made.append(created.json()["id"])
            assert client.delete(f"/v1/conversations/{made[-1]}").status_code == 200
    purged, answered_in, waited = _while_locked(
        server,
        lambda client: client.post("/admin/conversations/purge", params={"older_than_days": 0}),
    )
    assert answered_in < 2.0
    assert waited, purged.text
    assert purged.status_code == 200, purged.text
    assert purged.json()["purged"] >= 3 and purged.json()["remaining"] == 0
    with sqlite3.connect(server.home / DB_NAME) as db:
        marks = ", ".join("?" * len(made))
        left = db.execute(f"SELECT count(*) FROM conversations WHERE id IN ({marks})", made)
        assert left.fetchone()[0] == 0


def test_a_purge_dry_run_counts_and_deletes_nothing(server: LiveServer) -> None:
    with _client(server) as client:
        cid = client.post("/v1/conversations", json={"title": "count me"}).json()["id"]
        client.delete(f"/v1/conversations/{cid}")
        counted = client.post(
            "/admin/conversations/purge", params={"older_than_days": 0, "dry_run": "true"}
        )
        assert counted.status_code == 200
        assert counted.json()["purged"] == 0 and counted.json()["remaining"] >= 1
        with sqlite3.connect(server.home / DB_NAME) as db:
            row = db.execute("SELECT count(*) FROM conversations WHERE id = ?", (cid,))
            assert row.fetchone()[0] == 1
        purged = client.post("/admin/conversations/purge", params={"older_than_days": 0})
        assert purged.json()["remaining"] == 0


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


def test_an_admin_import_that_is_not_json_is_a_400(server: LiveServer) -> None:
    with _client(server) as client:
        bad = client.post(
            "/admin/conversations/import",
            params={"user": "admin"},
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
