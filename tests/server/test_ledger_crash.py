"""A crash loses no usage and resets no quota: kill -9 before the ledger flush, then restart."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import openai
import pytest

from chatapp.accounts import Accounts
from chatapp.paths import DB_NAME
from chatapp.store import open_database
from tests.conftest import LiveServer, serving


def _config(test_config: Path, tmp_path: Path) -> Path:
    """The test config with a flush interval far longer than the test: rows stay in the outbox."""
    shipped = test_config.read_text()
    text = shipped.replace("ledger_flush_seconds = 30 ", "ledger_flush_seconds = 3600 ")
    assert text != shipped, "the shipped flush interval moved: update this test"
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def _usage_rows(server: LiveServer, key_id: int) -> dict:
    report = httpx.get(
        f"{server.url}/admin/usage?by=key",
        timeout=30,
        headers={"Authorization": f"Bearer {server.key}"},
    ).json()
    return next((r for r in report["rows"] if r["key"] == key_id), {"requests": 0})


def test_kill_9_before_the_flush_loses_nothing_and_keeps_daily_quotas(
    tmp_path: Path, test_config: Path
) -> None:
    config = _config(test_config, tmp_path)
    home = tmp_path / "home"
    with serving(home, config) as first:
        accounts = Accounts(open_database(home / DB_NAME))
        user = accounts.ensure_user("crash", org_id=accounts.ensure_org("crash-org", tier="pro"))
        created = accounts.create_key(user)
        accounts.db.conn.close()
        httpx.put(
            f"{first.url}/admin/limits/key/{created.id}",
            timeout=30,
            headers={"Authorization": f"Bearer {first.key}"},
            json={"limits": {"requests_per_day": 3}},
        ).raise_for_status()
        with openai.OpenAI(
            base_url=first.base_url, api_key=created.secret, max_retries=0
        ) as client:
            for _ in range(3):
                client.chat.completions.create(
                    model="scripted", messages=[{"role": "user", "content": "hi"}]
                )
        outbox = open_database(home / DB_NAME)
        assert outbox.execute("SELECT count(*) FROM usage_outbox").fetchone()[0] >= 3
        outbox.conn.close()
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)

    with serving(home, config) as second:
        row = _usage_rows(second, created.id)
        assert row["requests"] == 3
        assert row["completion_tokens"] == 3
        with (
            openai.OpenAI(
                base_url=second.base_url, api_key=created.secret, max_retries=0
            ) as client,
            pytest.raises(openai.RateLimitError) as info,
        ):
            client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "hi"}]
            )
        assert "requests_per_day (3)" in info.value.body["message"]
        assert _usage_rows(second, created.id)["requests"] == 4  # the refusal is recorded too
    with serving(home, config) as third:
        assert _usage_rows(third, created.id)["requests"] == 4  # nothing counted twice
