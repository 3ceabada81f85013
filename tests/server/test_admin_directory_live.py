"""/admin/orgs, /admin/users, /admin/keys over HTTP: OpenAI-shaped errors, secrets shown once."""

from __future__ import annotations

import time

import httpx

from tests.conftest import LiveServer


def _admin(server: LiveServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=10
    )


def test_clashes_and_bad_fields_are_openai_shaped(server: LiveServer) -> None:
    name = f"http-user-{time.time_ns()}"
    with _admin(server) as admin:
        assert admin.post("/admin/users", json={"name": name}).status_code == 201
        clash = admin.post("/admin/users", json={"name": name})
        assert clash.status_code == 409
        error = clash.json()["error"]
        assert error["code"] == "conflict" and error["param"] == "name"
        unknown = admin.post("/admin/users", json={"name": f"{name}-2", "role": "boss"})
        assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "role"
        not_json = admin.post(
            "/admin/users", content=b"{", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400
        missing = admin.patch("/admin/users/nobody-here", json={"tier": "pro"})
        assert missing.status_code == 404 and missing.json()["error"]["param"] == "user"
        bad_status = admin.patch(f"/admin/users/{name}", json={"status": "asleep"})
        assert bad_status.status_code == 400 and bad_status.json()["error"]["param"] == "status"


def test_a_key_secret_appears_only_in_the_answer_that_makes_it(server: LiveServer) -> None:
    name = f"http-keys-{time.time_ns()}"
    with _admin(server) as admin:
        admin.post("/admin/users", json={"name": name})
        made = admin.post("/admin/keys", json={"user": name, "expires_at": "2099-01-01"})
        assert made.status_code == 201
        secret = made.json()["secret"]
        for path in ("/admin/keys", f"/admin/users/{name}", f"/admin/keys/{secret[:11]}"):
            assert secret not in admin.get(path).text
        chat_key = {"Authorization": f"Bearer {secret}"}
        forbidden = httpx.get(f"{server.url}/admin/users", headers=chat_key, timeout=10)
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["type"] == "permission_error"
        bad_expiry = admin.post("/admin/keys", json={"user": name, "expires_at": "soon"})
        assert bad_expiry.status_code == 400
        assert bad_expiry.json()["error"]["param"] == "expires_at"
