"""Moderation through a live gateway: questions blocked before any engine, answers cut mid-stream.

Users on the `moderated` tier get the test config's "strict" policy: block rules
("zebra-secret" and AWS-key-like strings both ways, "rosebud" in answers only), a flag rule
("darn", questions only), and the scripted stand-in as classifier ("hateful" scores 0.95 for
hate; the threshold is 0.9).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from typer.testing import CliRunner

from chatapp.accounts import Accounts
from chatapp.paths import DB_NAME
from chatapp.store import open_database
from cli.main import app
from tests.conftest import ADMIN_KEY, LiveServer
from tests.scripted_upstream import ScriptedUpstream
from tests.server.test_conversations_live import Api


def _key(server: LiveServer, tier: str) -> tuple[str, str]:
    accounts = Accounts(open_database(server.home / DB_NAME))
    org = accounts.ensure_org(f"mod-org-{time.time_ns()}", tier="enterprise")
    name = f"mod-{tier}-{time.time_ns()}"
    user = accounts.ensure_user(name, org_id=org)
    accounts.db.execute("UPDATE users SET tier = ? WHERE id = ?", (tier, user))
    accounts.db.conn.commit()
    secret = accounts.create_key(user).secret
    accounts.db.conn.close()
    return name, secret


@pytest.fixture
def moderated(server: LiveServer) -> Iterator[tuple[str, openai.OpenAI]]:
    name, secret = _key(server, "moderated")
    with openai.OpenAI(base_url=server.base_url, api_key=secret, max_retries=0) as client:
        yield name, client


def _log(server: LiveServer, **params: str) -> list[dict]:
    answer = httpx.get(
        f"{server.url}/admin/moderation",
        params=params,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def _ask(client: openai.OpenAI, content: str) -> str:
    answer = client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": content}]
    )
    return answer.choices[0].message.content or ""


def test_a_blocked_question_never_reaches_an_engine(
    server: LiveServer, scripted: ScriptedUpstream, moderated: tuple[str, openai.OpenAI]
) -> None:
    user, client = moderated
    before = len(scripted.recorder.requests)
    with pytest.raises(openai.BadRequestError) as info:
        _ask(client, "my key is AKIAABCDEFGHIJKLMNOP, keep it")
    assert info.value.code == "content_policy_violation"
    assert "secrets" in info.value.message
    with pytest.raises(openai.BadRequestError) as hate:
        _ask(client, "write something hateful")
    assert hate.value.code == "content_policy_violation" and "hate" in hate.value.message
    assert not any(
        "AKIA" in json.dumps(r) or "hateful" in json.dumps(r)
        for r in scripted.recorder.requests[before:]
        if r.get("messages")
    )
    (hate_row, key_row) = _log(server, user=user, action="block")[:2]
    assert hate_row["category"] == "hate" and hate_row["source"] == "classifier"
    assert hate_row["score"] == 0.95
    assert key_row["category"] == "secrets" and "AKIA" in key_row["excerpt"]
    assert key_row["direction"] == "input" and key_row["user"] == user


def test_a_flag_is_recorded_and_the_answer_goes_on(
    server: LiveServer, moderated: tuple[str, openai.OpenAI]
) -> None:
    user, client = moderated
    answer = client.chat.completions.with_raw_response.create(
        model="scripted", messages=[{"role": "user", "content": "darn, hello"}]
    )
    assert answer.parse().choices[0].message.content == "ok"
    (flag,) = _log(server, user=user)
    assert (flag["action"], flag["category"]) == ("flag", "mild-language")
    assert flag["direction"] == "input"
    assert flag["request_id"] == answer.headers["x-request-id"]  # as the logs name it


def test_a_streamed_answer_is_cut_before_the_blocked_words(
    server: LiveServer, moderated: tuple[str, openai.OpenAI]
) -> None:
    user, client = moderated
    stream = client.chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "script:say:one two three rosebud four five"}],
        stream=True,
    )
    text, finish = "", None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert finish == "content_filter"
    assert text == "one two three" and "rosebud" not in text
    (cut,) = _log(server, user=user)
    assert cut["direction"] == "output" and cut["action"] == "block"
    assert cut["category"] == "spoilers" and "rosebud" in cut["excerpt"] and cut["request_id"]


def test_an_unstreamed_answer_that_is_blocked_comes_back_empty(
    moderated: tuple[str, openai.OpenAI],
) -> None:
    _, client = moderated
    answer = client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "script:say:the sled was rosebud"}]
    )
    assert answer.choices[0].finish_reason == "content_filter"
    assert answer.choices[0].message.content == ""


def test_other_tiers_are_not_moderated(server: LiveServer) -> None:
    _, secret = _key(server, "pro")
    with openai.OpenAI(base_url=server.base_url, api_key=secret, max_retries=0) as client:
        assert _ask(client, "zebra-secret") == "ok"


def test_conversations_store_blocked_questions_and_filtered_answers(server: LiveServer) -> None:
    user, secret = _key(server, "moderated")
    api = Api(server, secret)
    try:
        conv = api.new()
        url = f"/conversations/{conv['id']}/messages"
        refused = api.http.post(url, json={"content": "zebra-secret?"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "content_policy_violation"
        (blocked,) = api.http.get(f"/conversations/{conv['id']}/messages").json()["data"]
        assert blocked["status"] == "blocked" and blocked["role"] == "user"

        say = "script:say:alpha beta gamma delta rosebud omega"
        events = api.events(conv["id"], say, parent_id=blocked["id"])
        completed = events[-1][2]
        assert completed["status"] == "filtered" and completed["finish_reason"] == "content_filter"
        assert completed["content"] == "alpha beta gamma delta"
        shown = "".join(data["text"] for _, name, data in events if name == "token.delta")
        assert shown == completed["content"]
        branch = api.http.get(f"/conversations/{conv['id']}/messages").json()["data"]
        assert [m["status"] for m in branch] == ["blocked", "complete", "filtered"]
        # The blocked question is never part of a prompt.
        api.events(conv["id"], "hello again")
    finally:
        api.http.close()
    log = _log(server, user=user)
    assert [row["direction"] for row in log[:2]] == ["output", "input"]
    assert all(row["conversation_id"] == conv["id"] for row in log[:2])


def test_the_cli_reads_the_log(server: LiveServer, moderated: tuple[str, openai.OpenAI]) -> None:
    user, client = moderated
    with pytest.raises(openai.BadRequestError):
        _ask(client, "zebra-secret")
    runner = CliRunner()
    base = ["--url", server.url, "--key", ADMIN_KEY, "moderation", "log"]
    result = runner.invoke(app, [*base, "--user", user, "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["category"] == "secrets" and row["action"] == "block"
    table = runner.invoke(app, [*base, "--user", user])
    assert table.exit_code == 0 and table.stdout.startswith("moderation log")
    csv_lines = runner.invoke(app, [*base, "--user", user, "--csv"]).stdout.splitlines()
    assert csv_lines[0].startswith("ts,direction,action,category,user,excerpt,id,score")
    assert "zebra-secret" in csv_lines[1]
    bad = runner.invoke(app, [*base, "--action", "maybe"])
    assert bad.exit_code == 1 and "action must be one of" in bad.output


def test_the_prompt_of_a_later_turn_leaves_blocked_questions_out(
    server: LiveServer, scripted: ScriptedUpstream
) -> None:
    _, secret = _key(server, "moderated")
    api = Api(server, secret)
    try:
        conv = api.new()
        api.http.post(f"/conversations/{conv['id']}/messages", json={"content": "zebra-secret"})
        (blocked,) = api.http.get(f"/conversations/{conv['id']}/messages").json()["data"]
        before = len(scripted.recorder.requests)
        api.events(conv["id"], "fine question", parent_id=blocked["id"])
        sent = [r for r in scripted.recorder.requests[before:] if r.get("messages")]
        assert sent and all("zebra" not in json.dumps(r["messages"]) for r in sent)
    finally:
        api.http.close()


@pytest.mark.parametrize(
    "messages",
    [
        [
            {"role": "user", "content": "zebra-secret"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "go on"},
        ],
        [{"role": "system", "content": "say zebra-secret"}, {"role": "user", "content": "hi"}],
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "zebra-"}, {"type": "text", "text": "secret"}],
            }
        ],
    ],
)
def test_every_message_of_the_history_is_checked(
    scripted: ScriptedUpstream, moderated: tuple[str, openai.OpenAI], messages: list[dict]
) -> None:
    _, client = moderated
    before = len(scripted.recorder.requests)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="scripted", messages=messages)  # type: ignore[arg-type]
    assert info.value.code == "content_policy_violation"
    assert not any("zebra" in json.dumps(r) for r in scripted.recorder.requests[before:])
