"""API keys: random, stored only as a hash, refused at once when revoked or expired."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatapp.accounts import Accounts, hash_secret, new_secret
from chatapp.errors import AuthenticationError, ChatAppError
from chatapp.store import open_database


@pytest.fixture
def accounts(tmp_path: Path) -> Accounts:
    return Accounts(open_database(tmp_path / "chatapp.db"))


def _user(accounts: Accounts) -> int:
    return accounts.ensure_user("ann", org_id=accounts.ensure_org("acme"))


def test_keys_are_random_and_stored_only_as_hash_and_prefix(accounts: Accounts) -> None:
    first, second = new_secret(), new_secret()
    assert first != second and len(first) >= 40
    created = accounts.create_key(_user(accounts))
    row = accounts.db.execute("SELECT prefix, secret_hash FROM api_keys").fetchone()
    assert row == (created.secret[:11], hash_secret(created.secret))
    dump = "\n".join(accounts.db.conn.iterdump())
    assert created.secret not in dump


def test_authenticate_returns_the_principal(accounts: Accounts) -> None:
    user_id = _user(accounts)
    created = accounts.create_key(user_id, scopes=frozenset({"chat", "admin"}))
    principal = accounts.authenticate(created.secret)
    assert principal.user_id == user_id and principal.user_name == "ann"
    assert principal.can("admin") and principal.can("chat")


def test_unknown_revoked_and_expired_keys_are_refused(accounts: Accounts) -> None:
    user_id = _user(accounts)
    with pytest.raises(AuthenticationError, match="Incorrect"):
        accounts.authenticate("ca-unknown-key-xxxxxxxxxxxx")
    created = accounts.create_key(user_id)
    accounts.revoke_key(created.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        accounts.authenticate(created.secret)
    expiring = accounts.create_key(user_id)
    with accounts.db.conn:
        accounts.db.execute(
            "UPDATE api_keys SET expires_at = '2000-01-01T00:00:00Z' WHERE id = ?", (expiring.id,)
        )
    with pytest.raises(AuthenticationError, match="expired"):
        accounts.authenticate(expiring.secret)


def test_suspended_user_key_is_refused(accounts: Accounts) -> None:
    user_id = _user(accounts)
    created = accounts.create_key(user_id)
    with accounts.db.conn:
        accounts.db.execute("UPDATE users SET status = 'suspended' WHERE id = ?", (user_id,))
    with pytest.raises(AuthenticationError, match="suspended"):
        accounts.authenticate(created.secret)


def test_unknown_scope_and_short_key_are_refused(accounts: Accounts) -> None:
    user_id = _user(accounts)
    with pytest.raises(ChatAppError, match="scope"):
        accounts.create_key(user_id, scopes=frozenset({"root"}))
    with pytest.raises(ChatAppError, match="16 characters"):
        accounts.create_key(user_id, secret="short")
