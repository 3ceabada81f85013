"""Key revocation against a live server: a change in SQLite applies to the next request."""

from __future__ import annotations

import openai
import pytest

from chatapp.accounts import Accounts
from chatapp.paths import DB_NAME
from chatapp.store import open_database
from tests.conftest import LiveServer


def test_revoked_key_is_401_on_the_very_next_request(server: LiveServer) -> None:
    accounts = Accounts(open_database(server.home / DB_NAME))
    user_id = accounts.ensure_user("bob", org_id=accounts.ensure_org("default"))
    created = accounts.create_key(user_id)
    client = openai.OpenAI(base_url=server.base_url, api_key=created.secret, max_retries=0)
    assert [m.id for m in client.models.list()]
    accounts.revoke_key(created.id)
    with pytest.raises(openai.AuthenticationError) as info:
        client.models.list()
    assert "revoked" in info.value.body["message"]
    accounts.db.conn.close()
