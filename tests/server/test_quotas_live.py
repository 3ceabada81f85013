"""Quotas and the ledger through a live server: 429s with headers, admin changes, exactly-once."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from chatapp.accounts import Accounts
from chatapp.paths import DB_NAME
from chatapp.store import open_database
from tests.conftest import LiveServer
from tests.scripted_upstream import ScriptedUpstream

_names = itertools.count()


def _new_key(server: LiveServer) -> tuple[int, str]:
    """A fresh user (in a fresh org) with a chat key: its buckets start empty."""
    accounts = Accounts(open_database(server.home / DB_NAME))
    n = next(_names)
    org = accounts.ensure_org(f"quota-org-{n}-{time.time_ns()}", tier="pro")
    user = accounts.ensure_user(f"quota-user-{n}-{time.time_ns()}", org_id=org)
    created = accounts.create_key(user)
    accounts.db.conn.close()
    return created.id, created.secret


def _admin(server: LiveServer, method: str, path: str, **kwargs: object) -> httpx.Response:
    response = httpx.request(
        method,
        f"{server.url}{path}",
        timeout=30,
        headers={"Authorization": f"Bearer {server.key}"},
        **kwargs,
    )
    assert response.status_code == 200, response.text
    return response


_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def _client(server: LiveServer, secret: str) -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.base_url, api_key=secret, max_retries=0)
    _clients.append(client)
    return client


def _ask(client: openai.OpenAI, content: str = "hello", **kwargs: object) -> object:
    return client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": content}], **kwargs
    )


def test_429_with_retry_after_and_ratelimit_headers(server: LiveServer) -> None:
    key_id, secret = _new_key(server)
    _admin(
        server, "PUT", f"/admin/limits/key/{key_id}", json={"limits": {"requests_per_minute": 2}}
    )
    client = _client(server, secret)
    raw = client.chat.completions.with_raw_response.create(
        model="scripted", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-ratelimit-limit-requests"] == "2"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    assert "x-ratelimit-limit-tokens" in raw.headers
    _ask(client)
    with pytest.raises(openai.RateLimitError) as info:
        _ask(client)
    headers = info.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 30
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert info.value.body["code"] == "rate_limit_exceeded"
    assert "key requests_per_minute (2)" in info.value.body["message"]


def test_streamed_responses_carry_the_headers_too(server: LiveServer) -> None:
    _, secret = _new_key(server)
    with httpx.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    ) as response:
        assert response.headers["x-ratelimit-limit-requests"] == "120"  # the pro tier
        response.read()


def test_a_limit_changed_through_the_admin_api_applies_to_the_next_request(
    server: LiveServer,
) -> None:
    key_id, secret = _new_key(server)
    client = _client(server, secret)
    _admin(
        server, "PUT", f"/admin/limits/key/{key_id}", json={"limits": {"requests_per_minute": 1}}
    )
    _ask(client)
    with pytest.raises(openai.RateLimitError):
        _ask(client)
    _admin(
        server, "PUT", f"/admin/limits/key/{key_id}", json={"limits": {"requests_per_minute": 50}}
    )
    _ask(client)  # at once: no cached old value, no waiting for a window
    _admin(server, "DELETE", f"/admin/limits/key/{key_id}?kind=requests_per_minute")
    limits = _admin(server, "GET", f"/admin/limits/key/{key_id}").json()
    assert limits["overrides"]["*"] == {}


def test_tier_change_applies_to_the_next_request(server: LiveServer) -> None:
    key_id, secret = _new_key(server)
    client = _client(server, secret)
    explained = _admin(server, "GET", f"/admin/quota/explain?key={key_id}&model=scripted").json()
    org_id = explained["key"]["org_id"]
    assert explained["tiers"]["org"] == "pro"
    _admin(server, "PUT", f"/admin/orgs/{org_id}/tier", json={"tier": "free"})
    raw = client.chat.completions.with_raw_response.create(
        model="scripted", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-ratelimit-limit-requests"] == "20"  # the free tier


def test_a_request_that_can_never_fit_says_so_instead_of_429(server: LiveServer) -> None:
    key_id, secret = _new_key(server)
    _admin(
        server, "PUT", f"/admin/limits/key/{key_id}", json={"limits": {"tokens_per_minute": 100}}
    )
    with pytest.raises(openai.BadRequestError) as info:
        _ask(_client(server, secret), max_tokens=500)
    assert info.value.body["code"] == "exceeds_rate_limit_capacity"
    assert "never fit" in info.value.body["message"]


def test_explain_names_the_refusing_bucket(server: LiveServer) -> None:
    key_id, secret = _new_key(server)
    _admin(
        server,
        "PUT",
        f"/admin/limits/user/{_user_of(server, key_id)}",
        json={"limits": {"requests_per_minute": 1}},
    )
    _ask(_client(server, secret))
    explained = _admin(
        server, "GET", f"/admin/quota/explain?key={key_id}&model=scripted&tokens=10"
    ).json()
    assert explained["allowed"] is False
    refused = explained["refused_by"]
    assert (refused["level"], refused["kind"], refused["limit"]) == (
        "user",
        "requests_per_minute",
        1,
    )
    assert 0 < refused["wait_seconds"] <= 60


def _user_of(server: LiveServer, key_id: int) -> int:
    explained = _admin(server, "GET", f"/admin/quota/explain?key={key_id}&model=scripted").json()
    return int(explained["key"]["user_id"])


def test_ledger_has_one_row_per_request_with_the_engine_usage(server: LiveServer) -> None:
    """Concurrent streams, some cancelled mid-answer, a failed and a refused one: all counted."""
    key_id, secret = _new_key(server)
    done: list[str] = []

    def complete() -> None:
        _ask(_client(server, secret), stream=True, stream_options={"include_usage": True})
        done.append("ok")

    def cancel() -> None:
        with httpx.stream(
            "POST",
            f"{server.base_url}/chat/completions",
            timeout=30,
            headers={"Authorization": f"Bearer {secret}"},
            json={
                "model": "scripted",
                "stream": True,
                "messages": [{"role": "user", "content": "script:endless"}],
            },
        ) as response:
            lines = response.iter_lines()
            for _ in range(4):
                next(lines)
        done.append("cancelled")

    threads = [threading.Thread(target=complete) for _ in range(4)]
    threads += [threading.Thread(target=cancel) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(done) == ["cancelled"] * 2 + ["ok"] * 4
    with pytest.raises(openai.InternalServerError):
        _ask(_client(server, secret), content="script:reject")
    time.sleep(0.5)  # cancelled streams are settled as their connections close
    report = _admin(server, "GET", "/admin/usage?by=key").json()
    [row] = [r for r in report["rows"] if r["key"] == key_id]
    assert row["requests"] == 7
    assert row["failed"] == 3  # two cancelled, one engine error
    # The stand-in reports 3 prompt + 3 completion tokens per finished answer (1 cached);
    # cancelled answers are counted by the gateway: at least one "tick" each.
    assert row["prompt_tokens"] >= 4 * 3
    assert row["completion_tokens"] >= 4 * 3 + 2
    assert row["cached_tokens"] == 4
    csv_text = httpx.get(
        f"{server.url}/admin/usage?by=key&format=csv",
        timeout=30,
        headers={"Authorization": f"Bearer {server.key}"},
    ).text
    assert csv_text.splitlines()[0].startswith("key,name,requests,prompt_tokens")


def test_own_usage_shows_today_and_what_is_left(server: LiveServer) -> None:
    _, secret = _new_key(server)
    _ask(_client(server, secret))
    usage = httpx.get(
        f"{server.base_url}/usage", timeout=30, headers={"Authorization": f"Bearer {secret}"}
    ).json()
    assert usage["today"]["scripted"]["requests"] == 1
    assert usage["this_month"]["scripted"]["completion_tokens"] == 1
    left = usage["remaining"]["scripted"]["requests_per_minute"]
    assert (left["limit"], left["remaining"]) == (120, 119)


def test_admin_routes_need_the_admin_scope(server: LiveServer) -> None:
    _, secret = _new_key(server)
    response = httpx.get(
        f"{server.url}/admin/tiers", timeout=30, headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    tiers = _admin(server, "GET", "/admin/tiers").json()
    assert set(tiers["tiers"]) == {"free", "pro", "enterprise", "trial", "moderated"}


def test_reports_by_every_dimension_and_clear_errors(server: LiveServer) -> None:
    _, secret = _new_key(server)
    _ask(_client(server, secret))
    for by in ("user", "org", "model", "key", "day"):
        report = _admin(server, "GET", f"/admin/usage?by={by}&since=2000-01-01").json()
        assert report["rows"] and by in report["rows"][0]
        assert report["totals"]["requests"] == sum(r["requests"] for r in report["rows"])
    models = _admin(server, "GET", "/admin/usage?by=model").json()["rows"]
    assert "scripted" in {r["model"] for r in models}
    for query, param in (("by=colour", "by"), ("since=yesterday", "since")):
        response = httpx.get(
            f"{server.url}/admin/usage?{query}",
            timeout=30,
            headers={"Authorization": f"Bearer {server.key}"},
        )
        assert response.status_code == 400
        assert response.json()["error"]["param"] == param


def test_bad_admin_input_is_a_400_or_404_and_changes_nothing(server: LiveServer) -> None:
    key_id, _ = _new_key(server)
    headers = {"Authorization": f"Bearer {server.key}"}
    cases = [
        (
            "PUT",
            f"/admin/limits/key/{key_id}",
            {"limits": {"tokens_per_day": 123456, "bogus": 1}},
            400,
        ),
        ("PUT", f"/admin/limits/key/{key_id}", {"limits": {"tokens_per_day": 10**30}}, 400),
        ("PUT", f"/admin/limits/key/{10**30}", {"limits": {"tokens_per_day": 5}}, 404),
        ("GET", "/admin/quota/explain?key=²", None, 404),
        ("GET", f"/admin/quota/explain?key={key_id}&tokens=²", None, 400),
        ("PUT", f"/admin/users/{10**30}/tier", {"tier": "pro"}, 404),
        ("PUT", "/admin/widgets/1/tier", {"tier": "pro"}, 404),
    ]
    for method, path, body, status in cases:
        response = httpx.request(
            method, f"{server.url}{path}", json=body, headers=headers, timeout=30
        )
        assert response.status_code == status, (path, response.text)
        assert "error" in response.json()
    overrides = _admin(server, "GET", f"/admin/limits/key/{key_id}").json()["overrides"]
    assert overrides == {}  # the half-valid PUT stored nothing


@pytest.mark.parametrize(
    "content",
    [[{"type": "text", "text": 5}], "\ud800 lone surrogate"],
    ids=["non-string-text-part", "lone-surrogate"],
)
def test_content_that_is_not_text_is_a_400(server: LiveServer, content: object) -> None:
    body = json.dumps({"model": "scripted", "messages": [{"role": "user", "content": content}]})
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        content=body,
        timeout=30,
        headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"].startswith("messages[0].content")


def test_an_answer_without_max_tokens_is_capped_at_the_output_reserve(
    server: LiveServer, scripted: ScriptedUpstream
) -> None:
    _, secret = _new_key(server)
    _ask(_client(server, secret))
    assert scripted.recorder.requests[-1]["max_tokens"] == 1024  # context 4096 // 4


def test_a_client_leaving_a_non_streamed_answer_is_still_charged_its_prompt(
    server: LiveServer,
) -> None:
    key_id, secret = _new_key(server)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server.base_url}/chat/completions",
            timeout=0.3,
            headers={"Authorization": f"Bearer {secret}"},
            json={"model": "scripted", "messages": [{"role": "user", "content": "script:slow"}]},
        )
    time.sleep(0.5)
    report = _admin(server, "GET", "/admin/usage?by=key").json()
    [row] = [r for r in report["rows"] if r["key"] == key_id]
    assert (row["requests"], row["failed"]) == (1, 1)
    assert row["prompt_tokens"] > 0


def test_streamed_usage_counts_the_prompt_as_the_engine_does(server: LiveServer) -> None:
    """llama.cpp reports usage only when not streaming: the gateway's count must match it."""
    _, secret = _new_key(server)
    client = _client(server, secret)
    messages = [{"role": "user", "content": "Say hi to Ada, please."}]
    plain = client.chat.completions.create(model="smollm2", max_tokens=2, messages=messages)
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            max_tokens=2,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert plain.usage is not None and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens


def test_report_until_a_date_includes_that_whole_day(server: LiveServer) -> None:
    key_id, secret = _new_key(server)
    _ask(_client(server, secret))
    today = time.strftime("%Y-%m-%d", time.gmtime())
    report = _admin(server, "GET", f"/admin/usage?by=key&since={today}&until={today}").json()
    assert key_id in {r["key"] for r in report["rows"]}
