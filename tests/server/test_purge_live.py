"""An admin's purge of deleted conversations never stops the gateway while it works."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from chatapp.paths import DB_NAME
from tests.conftest import LiveServer


def _admin(server: LiveServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=10
    )


def _purge(server: LiveServer) -> httpx.Response:
    with _admin(server) as admin:
        return admin.post("/admin/conversations/purge", params={"older_than_days": 0})


def test_a_purge_waiting_for_the_write_lock_leaves_requests_answered(server: LiveServer) -> None:
    with _admin(server) as admin:
        made = []
        for _ in range(3):
            created = admin.post("/v1/conversations", json={"title": "purge me"})
            assert created.status_code == 201, created.text
            made.append(created.json()["id"])
            assert admin.delete(f"/v1/conversations/{made[-1]}").status_code in (200, 204)
        # Another writer holds the lock, as a long import or an admin's sqlite3 shell can: a
        # purge on the event loop's connection would wait in SQLite's busy handler, and every
        # request with it.
        holder = sqlite3.connect(server.home / DB_NAME, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                purging = pool.submit(_purge, server)
                time.sleep(0.5)  # the purge is waiting for the lock by now
                started = time.perf_counter()
                listed = admin.get("/v1/conversations")
                answered_in = time.perf_counter() - started
                waited = not purging.done()
                holder.execute("ROLLBACK")
                purged = purging.result(timeout=30)
        finally:
            holder.close()
    assert listed.status_code == 200 and answered_in < 2.0
    assert waited, purged.text  # the purge really was held up meanwhile
    assert purged.status_code == 200, purged.text
    assert purged.json()["purged"] >= 3 and purged.json()["remaining"] == 0
    with sqlite3.connect(server.home / DB_NAME) as db:
        marks = ", ".join("?" * len(made))
        left = db.execute(f"SELECT count(*) FROM conversations WHERE id IN ({marks})", made)
        assert left.fetchone()[0] == 0


def test_a_dry_run_counts_and_deletes_nothing(server: LiveServer) -> None:
    with _admin(server) as admin:
        created = admin.post("/v1/conversations", json={"title": "count me"})
        cid = created.json()["id"]
        admin.delete(f"/v1/conversations/{cid}")
        counted = admin.post(
            "/admin/conversations/purge", params={"older_than_days": 0, "dry_run": "true"}
        )
        assert counted.status_code == 200
        assert counted.json() == {"purged": 0, "remaining": counted.json()["remaining"]}
        assert counted.json()["remaining"] >= 1
        with sqlite3.connect(server.home / DB_NAME) as db:
            row = db.execute("SELECT count(*) FROM conversations WHERE id = ?", (cid,))
            assert row.fetchone()[0] == 1
        assert _purge(server).json()["remaining"] == 0
