"""/admin/models and /admin/fleet on a live server: state, passive health, drain and undrain.

The server is shared by the session, so every drain here is undone in a `finally`, and the
embedded `smollm2` is never drained.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chatapp.accounts import Accounts
from chatapp.paths import DB_NAME
from chatapp.store import open_database
from tests.conftest import LiveServer
from tests.scripted_upstream import ScriptedUpstream


def _admin(server: LiveServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method,
        f"{server.url}{path}",
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=30,
        **kwargs,
    )


def _chat(server: LiveServer, model: str, content: str = "hello") -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {server.key}"},
        json={"model": model, "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )


def _upstream(server: LiveServer, model: str) -> dict[str, Any]:
    response = _admin(server, "GET", "/admin/fleet")
    assert response.status_code == 200, response.text
    found = [u for u in response.json()["upstreams"] if u["model"] == model]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def undrain_all(server: LiveServer) -> Iterator[None]:
    """Whatever a test drains is taken back, even when it fails half-way."""
    yield
    for model in ("scripted", "tiny", "dead"):
        _admin(server, "POST", "/admin/fleet/undrain", json={"upstream": model})


def test_models_lists_the_embedded_engine_ready_with_a_live_pid(server: LiveServer) -> None:
    response = _admin(server, "GET", "/admin/models")
    assert response.status_code == 200, response.text
    models = {m["name"]: m for m in response.json()["models"]}
    smol = models["smollm2"]
    assert smol["engine"] == "llama.cpp" and smol["state"] == "ready" and smol["ready"]
    assert smol["replicas"] == 1 and smol["gpus"] == []
    (local,) = smol["upstreams"]
    assert local["kind"] == "local" and local["state"] == "ready"
    assert local["pid"] in [p.pid for p in server.engine_processes()]
    scripted = models["scripted"]
    assert scripted["engine"] == "remote"
    assert scripted["upstreams"][0]["kind"] == "remote"
    assert scripted["upstreams"][0]["pid"] is None


def test_a_refused_connection_shows_as_failures_and_last_error(server: LiveServer) -> None:
    response = _chat(server, "dead")
    assert response.status_code == 503, response.text
    dead = _upstream(server, "dead")
    assert dead["failures"] >= 1 and dead["state"] in ("failing", "unhealthy")
    assert dead["last_error"] and "Connect" in dead["last_error"]
    assert dead["last_error_at"] > time.time() - 60
    # "degraded" after one failure; "failing" once two health checks (5 s apart) failed too,
    # which a session server that has just started has not yet made.
    deadline = time.monotonic() + 20
    while (state := _model_state(server, "dead")) != "failing" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state == "failing"


def _model_state(server: LiveServer, name: str) -> str:
    models = {m["name"]: m for m in _admin(server, "GET", "/admin/models").json()["models"]}
    return str(models[name]["state"])


def test_a_success_counts_as_served_with_a_latency(server: LiveServer) -> None:
    before = _upstream(server, "scripted")["served"]
    assert _chat(server, "scripted").status_code == 200
    after = _upstream(server, "scripted")
    assert after["served"] == before + 1 and after["failures"] == 0
    assert after["latency_ms"] is not None and after["latency_ms"] >= 0


def test_drain_refuses_new_requests_and_undrain_takes_them_again(
    server: LiveServer, undrain_all: None
) -> None:
    drained = _admin(server, "POST", "/admin/fleet/drain", json={"upstream": "scripted"})
    assert drained.status_code == 200, drained.text
    (upstream,) = drained.json()["upstreams"]
    assert upstream["model"] == "scripted" and upstream["draining"] is True
    assert _upstream(server, "scripted")["draining"] is True

    refused = _chat(server, "scripted")
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) > 0
    assert "drained" in refused.json()["error"]["message"]
    models = {m["name"]: m for m in _admin(server, "GET", "/admin/models").json()["models"]}
    assert models["scripted"]["state"] == "drained"
    assert models["tiny"]["state"] == "ready"  # same node, another model: untouched

    undrained = _admin(server, "POST", "/admin/fleet/undrain", json={"upstream": upstream["name"]})
    assert undrained.status_code == 200, undrained.text
    assert undrained.json()["upstreams"][0]["draining"] is False
    assert _chat(server, "scripted").status_code == 200


def test_drain_by_url_takes_every_model_on_that_node(
    server: LiveServer, scripted: ScriptedUpstream, undrain_all: None
) -> None:
    response = _admin(server, "POST", "/admin/fleet/drain", json={"upstream": scripted.url})
    assert response.status_code == 200, response.text
    assert {u["model"] for u in response.json()["upstreams"]} == {"scripted", "tiny"}
    response = _admin(server, "POST", "/admin/fleet/undrain", json={"upstream": scripted.url})
    assert not any(u["draining"] for u in response.json()["upstreams"])


def test_a_stream_in_flight_finishes_after_a_drain(server: LiveServer, undrain_all: None) -> None:
    frames: list[str] = []
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            with httpx.stream(
                "POST",
                f"{server.base_url}/chat/completions",
                headers={"Authorization": f"Bearer {server.key}"},
                json={
                    "model": "scripted",
                    "stream": True,
                    "messages": [{"role": "user", "content": "script:slow"}],
                },
                timeout=30,
            ) as response:
                assert response.status_code == 200
                frames.extend(line for line in response.iter_lines() if line.startswith("data:"))
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)

    worker = threading.Thread(target=stream)
    worker.start()
    deadline = time.monotonic() + 10
    while _upstream(server, "scripted")["outstanding"] < 1:
        assert time.monotonic() < deadline, "the stream never reached the upstream"
        time.sleep(0.02)
    try:
        drained = _admin(server, "POST", "/admin/fleet/drain", json={"upstream": "scripted"})
        assert drained.json()["upstreams"][0]["outstanding"] == 1
        assert _chat(server, "scripted").status_code == 503
    finally:
        worker.join(timeout=20)
    assert not errors, errors
    assert frames[-1] == "data: [DONE]"
    assert not any('"error"' in frame for frame in frames)
    assert _upstream(server, "scripted")["outstanding"] == 0


def test_unknown_upstream_is_404_and_a_missing_name_is_400(server: LiveServer) -> None:
    response = _admin(server, "POST", "/admin/fleet/drain", json={"upstream": "nope@nowhere"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found" and error["param"] == "upstream"
    assert "smollm2@local" in error["message"]
    assert _admin(server, "POST", "/admin/fleet/drain", json={}).status_code == 400


def test_a_chat_scope_key_is_refused(server: LiveServer) -> None:
    accounts = Accounts(open_database(server.home / DB_NAME))
    user = accounts.ensure_user("fleet-viewer", org_id=accounts.ensure_org("default"))
    secret = accounts.create_key(user).secret
    accounts.db.conn.close()
    headers = {"Authorization": f"Bearer {secret}"}
    for method, path in (
        ("GET", "/admin/models"),
        ("GET", "/admin/fleet"),
        ("POST", "/admin/fleet/drain"),
    ):
        response = httpx.request(
            method, f"{server.url}{path}", headers=headers, json={"upstream": "scripted"}
        )
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["type"] == "permission_error"
    assert _upstream(server, "scripted")["draining"] is False
