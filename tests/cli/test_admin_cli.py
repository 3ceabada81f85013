"""The admin CLI against a live server: users, orgs, keys, tiers, quota, usage, conversations.

Every command runs through typer's runner with --url/--key, the way an operator's shell would,
and what it changed is checked by what the server does next (a 401, a 429, a listing).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from chatapp.engines.supervisor import free_port
from chatapp.paths import DB_NAME
from cli.main import app
from tests.conftest import ADMIN_KEY, LiveServer

runner = CliRunner()
_serial = itertools.count()


def cli(server: LiveServer, *args: str, key: str = ADMIN_KEY, code: int = 0) -> Result:
    result = runner.invoke(app, ["--url", server.url, "--key", key, *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def as_json(result: Result) -> object:
    return json.loads(result.stdout)


def unique(stem: str) -> str:
    return f"{stem}-{next(_serial)}-{time.time_ns() % 10**9}"


def new_user(server: LiveServer, *extra: str) -> str:
    name = unique("cli-user")
    cli(server, "users", "add", name, *extra)
    return name


def new_key(server: LiveServer, user: str, *extra: str) -> dict[str, object]:
    record = as_json(cli(server, "keys", "create", user, "--json", *extra))
    assert isinstance(record, dict)
    return record


def chat(server: LiveServer, secret: str) -> httpx.Response:
    """One short chat completion on the scripted model (fast, and counted like any other)."""
    return httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def test_help_lists_every_group() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for group in (
        "serve",
        "init",
        "migrate",
        "doctor",
        "users",
        "orgs",
        "keys",
        "tiers",
        "quota",
        "usage",
        "models",
        "fleet",
        "conversations",
    ):
        assert group in result.output
    assert runner.invoke(app, ["users", "--help"]).output.count("suspend") >= 1


def test_users_add_list_show_and_duplicates(server: LiveServer) -> None:
    name = new_user(server, "--email", "someone@example.com")
    listed = as_json(cli(server, "users", "list", "--json"))
    assert isinstance(listed, list)
    mine = next(u for u in listed if u["name"] == name)
    assert mine["org"] == "default" and mine["status"] == "active" and mine["keys"] == 0
    assert set(mine) >= {"id", "name", "org", "tier", "effective_tier", "status", "keys"}
    shown = as_json(cli(server, "users", "show", name, "--json"))
    assert isinstance(shown, dict) and shown["email"] == "someone@example.com"
    assert shown["api_keys"] == []
    again = cli(server, "users", "add", name, code=1)
    assert "exists already" in again.output and len(again.output.strip().splitlines()) == 1
    csv_out = cli(server, "users", "list", "--csv").stdout.splitlines()
    assert csv_out[0].startswith("id,name,org") and any(name in line for line in csv_out)


def test_unknown_user_is_one_line_and_exit_1(server: LiveServer) -> None:
    result = cli(server, "users", "show", "nobody-at-all", code=1)
    assert "No single user 'nobody-at-all' exists" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_suspend_resume_and_delete_apply_to_the_next_request(server: LiveServer) -> None:
    name = new_user(server)
    secret = str(new_key(server, name)["secret"])
    assert chat(server, secret).status_code == 200
    cli(server, "users", "suspend", name)
    refused = chat(server, secret)
    assert refused.status_code == 401 and "suspended" in refused.json()["error"]["message"]
    cli(server, "users", "resume", name)
    assert chat(server, secret).status_code == 200
    cli(server, "users", "delete", name, "--yes")
    assert chat(server, secret).status_code == 401
    deleted = as_json(cli(server, "users", "list", "--status", "deleted", "--json"))
    assert isinstance(deleted, list) and any(u["name"] == name for u in deleted)


def test_an_admin_cannot_lock_themselves_out(server: LiveServer) -> None:
    assert "own user" in cli(server, "users", "suspend", "admin", code=1).output
    assert "own user" in cli(server, "users", "delete", "admin", "--yes", code=1).output
    own_prefix = ADMIN_KEY[:11]
    assert "you are using" in cli(server, "keys", "revoke", own_prefix, code=1).output


def test_orgs_add_members_and_tier(server: LiveServer) -> None:
    org = unique("cli-org")
    cli(server, "orgs", "add", org, "--tier", "pro")
    user = new_user(server)
    cli(server, "orgs", "add-member", org, user)
    members = as_json(cli(server, "orgs", "members", org, "--json"))
    assert isinstance(members, list) and [m["name"] for m in members] == [user]
    assert members[0]["effective_tier"] == "pro"
    cli(server, "orgs", "set-tier", org, "enterprise")
    orgs = as_json(cli(server, "orgs", "list", "--json"))
    assert isinstance(orgs, list)
    assert {"name": org, "tier": "enterprise", "members": 1}.items() <= next(
        o for o in orgs if o["name"] == org
    ).items()
    assert "unknown tier 'gold'" in cli(server, "orgs", "set-tier", org, "gold", code=1).output


def test_keys_create_once_list_expire_scope_and_revoke(server: LiveServer) -> None:
    user = new_user(server)
    created = cli(server, "keys", "create", user, "--name", "laptop")
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("ca-") and "shown once" in created.stdout
    assert chat(server, secret).status_code == 200
    prefix = secret[:11]
    listed = as_json(cli(server, "keys", "list", "--prefix", prefix, "--json"))
    assert isinstance(listed, list) and len(listed) == 1
    assert listed[0]["user"] == user and "secret" not in listed[0]
    assert secret not in cli(server, "keys", "list").stdout

    cli(server, "keys", "set", prefix, "--expires", "2020-01-01")
    expired = chat(server, secret)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    cli(server, "keys", "set", prefix, "--expires", "never")
    assert chat(server, secret).status_code == 200

    admin_check = httpx.get(
        f"{server.url}/admin/tiers", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    )
    assert admin_check.status_code == 403
    refused = cli(server, "users", "list", key=secret, code=1)
    assert "admin scope" in refused.output
    cli(server, "keys", "set", prefix, "--scopes", "chat,admin")
    assert cli(server, "users", "list", "--json", key=secret).exit_code == 0

    cli(server, "keys", "revoke", prefix)
    assert chat(server, secret).status_code == 401
    assert as_json(cli(server, "keys", "list", "--prefix", prefix, "--json")) == []
    with_revoked = as_json(cli(server, "keys", "list", "--prefix", prefix, "--all", "--json"))
    assert isinstance(with_revoked, list) and with_revoked[0]["revoked_at"]


def test_bad_expiry_and_scope_are_usage_or_one_line_errors(server: LiveServer) -> None:
    user = new_user(server)
    assert cli(server, "keys", "create", user, "--expires", "soon", code=2).exit_code == 2
    bad_scope = cli(server, "keys", "create", user, "--scopes", "root", code=1)
    assert "unknown scope(s) root" in bad_scope.output


def test_a_tier_change_through_the_cli_changes_the_next_429(server: LiveServer) -> None:
    user = new_user(server, "--tier", "pro")
    secret = str(new_key(server, user)["secret"])
    for _ in range(3):
        assert chat(server, secret).status_code == 200
    cli(server, "users", "set-tier", user, "trial")  # 2 requests a minute
    limited = chat(server, secret)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    prefix = new_key_prefix(secret)
    explained = as_json(cli(server, "quota", "explain", prefix, "--model", "scripted", "--json"))
    assert isinstance(explained, dict) and explained["allowed"] is False
    assert explained["refused_by"]["kind"] == "requests_per_minute"
    assert explained["refused_by"]["limit"] == 2
    people = cli(server, "quota", "explain", prefix, "--model", "scripted").stdout
    assert "refused" in people and "requests_per_minute" in people

    cli(server, "tiers", "set", "trial", "requests_per_minute", "100")
    try:
        assert chat(server, secret).status_code == 200
        shown = as_json(cli(server, "tiers", "show", "trial", "--json"))
        assert isinstance(shown, dict) and shown["limits"]["requests_per_minute"] == 100
        assert shown["overrides"] == {"*": {"requests_per_minute": 100}}
    finally:
        cli(server, "tiers", "unset", "trial", "requests_per_minute")
    tiers = as_json(cli(server, "tiers", "list", "--json"))
    assert isinstance(tiers, list)
    assert next(t for t in tiers if t["name"] == "trial")["requests_per_minute"] == 2
    cli(server, "users", "set-tier", user, "org")
    assert chat(server, secret).status_code == 200  # back on the org's (default) tier


def new_key_prefix(secret: str) -> str:
    return secret[:11]


def test_quota_show_set_and_unset(server: LiveServer) -> None:
    user = new_user(server, "--tier", "pro")
    secret = str(new_key(server, user)["secret"])
    assert chat(server, secret).status_code == 200
    rows = as_json(cli(server, "quota", "show", "--user", user, "--model", "scripted", "--json"))
    assert isinstance(rows, list)
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["requests_per_day"]["limit"] == 5000
    assert by_kind["requests_per_day"]["remaining"] == 4999
    assert {r["level"] for r in rows} == {"user"}
    key_rows = as_json(
        cli(server, "quota", "show", "--key-prefix", secret[:11], "--model", "scripted", "--json")
    )
    assert isinstance(key_rows, list) and {r["level"] for r in key_rows} == {"key", "user", "org"}

    cli(server, "quota", "set", "requests_per_minute", "1", "--user", user)
    assert chat(server, secret).status_code == 429
    cli(server, "quota", "unset", "requests_per_minute", "--user", user)
    assert chat(server, secret).status_code == 200
    usage_error = cli(server, "quota", "show", code=2)
    assert "exactly one of" in usage_error.output


def test_usage_report_top_json_and_csv(server: LiveServer) -> None:
    user = new_user(server, "--tier", "pro")
    secret = str(new_key(server, user)["secret"])
    for _ in range(2):
        assert chat(server, secret).status_code == 200
    report = as_json(cli(server, "usage", "report", "--by", "user", "--json"))
    assert isinstance(report, dict) and report["by"] == "user"
    row = next(r for r in report["rows"] if r["name"] == user)
    assert row["requests"] == 2 and row["completion_tokens"] > 0
    assert report["totals"]["requests"] >= 2
    csv_lines = cli(server, "usage", "report", "--by", "model", "--csv").stdout.splitlines()
    header = "model,requests,prompt_tokens,completion_tokens,cached_tokens,cost,failed"
    assert csv_lines[0] == header
    assert any(line.startswith("scripted,") for line in csv_lines[1:])
    top = as_json(cli(server, "usage", "top", "--by", "user", "-n", "50", "--json"))
    assert isinstance(top, list) and len(top) <= 50
    totals = [r["total_tokens"] for r in top]
    assert totals == sorted(totals, reverse=True)
    assert "--by" in cli(server, "usage", "report", "--by", "planet", code=2).output
    bad_date = cli(server, "usage", "report", "--since", "yesterday", code=1)
    assert "ISO date" in bad_date.output


def test_conversations_export_import_and_purge(server: LiveServer, tmp_path: Path) -> None:
    owner, other = new_user(server), new_user(server)
    secret = str(new_key(server, owner)["secret"])
    headers = {"Authorization": f"Bearer {secret}"}
    made = []
    for title in ("keep me", "throw me away"):
        created = httpx.post(
            f"{server.base_url}/conversations", headers=headers, json={"title": title}, timeout=10
        )
        assert created.status_code == 201, created.text
        made.append(created.json()["id"])
    export = tmp_path / "all.jsonl"
    cli(server, "conversations", "export", "--user", owner, "-o", str(export))
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert [line["conversation"]["title"] for line in lines] == ["keep me", "throw me away"]
    assert {line["user"] for line in lines} == {owner}

    imported = cli(server, "conversations", "import", str(export), "--user", other)
    assert "imported 2 conversation(s)" in imported.stdout
    other_titles = [
        json.loads(line)["conversation"]["title"]
        for line in cli(server, "conversations", "export", "--user", other).stdout.splitlines()
        if line.startswith("{")
    ]
    assert other_titles == ["keep me", "throw me away"]

    deleted = httpx.delete(f"{server.base_url}/conversations/{made[1]}", headers=headers)
    assert deleted.status_code in (200, 204)
    purged = cli(server, "conversations", "purge", "--yes")
    assert "purged" in purged.stdout
    with sqlite3.connect(server.home / DB_NAME) as db:
        gone = db.execute("SELECT count(*) FROM conversations WHERE id = ?", (made[1],))
        kept = db.execute("SELECT count(*) FROM conversations WHERE id = ?", (made[0],))
        assert gone.fetchone()[0] == 0 and kept.fetchone()[0] == 1
    assert "nothing to purge" in cli(server, "conversations", "purge", "--yes").stdout


def test_import_of_a_bad_file_says_where_it_stopped(server: LiveServer, tmp_path: Path) -> None:
    user = new_user(server)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "nope"}\n')
    result = cli(server, "conversations", "import", str(bad), "--user", user, code=1)
    assert "bad.jsonl:1" in result.output and "Traceback" not in result.output
    missing = cli(server, "conversations", "import", str(tmp_path / "none.jsonl"), code=1)
    assert "cannot read" in missing.output


@pytest.mark.parametrize("args", [["users", "list"], ["usage", "report"], ["tiers", "list"]])
def test_a_server_that_is_down_says_how_to_start_it(args: list[str]) -> None:
    result = runner.invoke(
        app, ["--url", f"http://127.0.0.1:{free_port()}", "--key", ADMIN_KEY, *args]
    )
    assert result.exit_code == 1
    assert "chatapp serve" in result.output and "Traceback" not in result.output


def test_a_wrong_key_is_a_clear_401(server: LiveServer) -> None:
    result = cli(server, "users", "list", key="ca-not-a-real-key-at-all-000", code=1)
    assert "refused the key" in result.output


def test_text_that_looks_like_markup_is_printed_as_is(server: LiveServer) -> None:
    user = new_user(server, "--email", "[/x]@example.com")
    cli(server, "keys", "create", user, "--name", "[/bad] [bold]label")
    shown = cli(server, "users", "show", user).stdout
    assert "[/x]@example.com" in shown and "[/bad]" in shown
    assert "[/bad]" in cli(server, "keys", "list", "--user", user).stdout
    missing = cli(server, "users", "show", "[/x]", code=1)
    assert "[/x]" in missing.output


def test_a_failed_export_leaves_the_old_file_alone(tmp_path: Path) -> None:
    backup = tmp_path / "backup.jsonl"
    backup.write_text("precious\n")
    down = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(
        app, ["--url", down, "--key", ADMIN_KEY, "conversations", "export", "-o", str(backup)]
    )
    assert result.exit_code == 1 and backup.read_text() == "precious\n"
    assert list(tmp_path.iterdir()) == [backup]


def test_unwritable_and_unreadable_files_are_one_line_errors(
    server: LiveServer, tmp_path: Path
) -> None:
    nowhere = tmp_path / "no" / "such" / "dir.jsonl"
    unwritable = cli(server, "conversations", "export", "-o", str(nowhere), code=1)
    assert "cannot write" in unwritable.output
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in cli(server, "conversations", "import", str(binary), code=1).output
    bad_url = runner.invoke(app, ["--url", "http://[::1", "--key", ADMIN_KEY, "users", "list"])
    assert bad_url.exit_code == 1 and "Traceback" not in bad_url.output
    far = cli(server, "keys", "create", "admin", "--expires", "99999999d", code=2)
    assert "too far" in far.output
