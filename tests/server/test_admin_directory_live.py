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


def test_odd_values_are_400s_or_404s_never_500s(server: LiveServer) -> None:
    name = f"http-odd-{time.time_ns()}"
    with _admin(server) as admin:
        assert admin.post("/admin/users", json={"name": name}).status_code == 201
        for org in (1.5, [1], {}, True, None):
            answer = admin.patch(f"/admin/users/{name}", json={"org": org})
            assert answer.status_code == 400, (org, answer.text)
        huge = admin.post("/admin/users", json={"name": f"{name}-x", "org": 10**30})
        assert huge.status_code == 404
        assert admin.post("/admin/keys", json={"user": ["admin"]}).status_code == 400
        assert admin.post("/admin/keys", json={"user": True}).status_code == 400
        for email in ({"a": 1}, 5, "no-at-sign"):
            answer = admin.patch(f"/admin/users/{name}", json={"email": email})
            assert answer.status_code == 400, (email, answer.text)
        for when in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"):
            answer = admin.post("/admin/keys", json={"user": name, "expires_at": when})
            assert answer.status_code == 400, (when, answer.text)
        far = admin.post("/admin/conversations/purge", params={"older_than_days": 800000})
        assert far.status_code == 400
        report = admin.get("/admin/usage", params={"since": "0001-01-01", "until": "9999-12-31"})
        assert report.status_code == 400


def test_own_key_cannot_be_expired_and_a_deleted_user_stays_deleted(server: LiveServer) -> None:
    name = f"http-gone-{time.time_ns()}"
    with _admin(server) as admin:
        own = admin.patch(f"/admin/keys/{server.key[:11]}", json={"expires_at": "2020-01-01"})
        assert own.status_code == 400 and "key you are using" in own.json()["error"]["message"]
        assert admin.get("/admin/tiers").status_code == 200  # still usable
        admin.post("/admin/users", json={"name": name})
        assert admin.delete(f"/admin/users/{name}").status_code == 200
        resumed = admin.patch(f"/admin/users/{name}", json={"status": "active"})
        assert resumed.status_code == 409
        assert admin.get(f"/admin/users/{name}").json()["status"] == "deleted"
