"""The admin directory (orgs, users, keys) and run-time tier limits, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatapp.accounts import Accounts
from chatapp.config import load_config
from chatapp.directory import Directory, parse_expiry
from chatapp.errors import AuthenticationError, Conflict, InvalidRequest, NotFound
from chatapp.paths import shipped_config_path
from chatapp.quotas import Quotas
from chatapp.store import open_database


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    db = open_database(tmp_path / "chatapp.db")
    Accounts(db).ensure_org("default", tier="free")
    return Directory(db, ("free", "pro"), "free")


def test_users_are_named_by_id_or_name_and_names_are_checked(directory: Directory) -> None:
    ann = directory.add_user({"name": "ann", "email": "ann@example.com"})
    assert directory.user(ann["id"])["name"] == "ann" == directory.user("ann")["name"]
    assert directory.user(str(ann["id"]))["effective_tier"] == "free"
    with pytest.raises(Conflict):
        directory.add_user({"name": "ann"})
    for bad in ("", "a b", "-dash", "123", "x" * 65, None):
        with pytest.raises(InvalidRequest):
            directory.add_user({"name": bad})
    with pytest.raises(InvalidRequest, match="unknown field 'role'"):
        directory.add_user({"name": "bob", "role": "x"})
    with pytest.raises(NotFound):
        directory.user("nobody")


def test_moving_a_user_and_tiers(directory: Directory) -> None:
    directory.add_org({"name": "acme", "tier": "pro"})
    directory.add_user({"name": "ann"})
    moved = directory.update_user("ann", {"org": "acme"})
    assert moved["org"] == "acme" and moved["effective_tier"] == "pro"
    assert directory.update_user("ann", {"tier": "free"})["effective_tier"] == "free"
    assert directory.update_user("ann", {"tier": None})["effective_tier"] == "pro"
    with pytest.raises(InvalidRequest, match="unknown tier 'gold'"):
        directory.update_user("ann", {"tier": "gold"})
    with pytest.raises(InvalidRequest):
        directory.update_user("ann", {"status": "deleted"})  # DELETE does that
    assert [u["name"] for u in directory.org("acme")["users"]] == ["ann"]
    assert directory.orgs()[1]["members"] == 1


def test_a_refused_change_changes_nothing_of_what_came_before_it(directory: Directory) -> None:
    directory.add_user({"name": "ann"})
    before = directory.user("ann")
    with pytest.raises(NotFound):  # the org is checked after the tier and status are written
        directory.update_user("ann", {"tier": "pro", "status": "suspended", "org": "nope"})
    with pytest.raises(InvalidRequest):
        directory.update_user("ann", {"tier": "pro", "status": "gone"})
    after = directory.user("ann")
    assert (after["tier"], after["status"]) == (before["tier"], before["status"])
    assert after["status"] == "active" and after["tier"] is None
    _, key = directory.create_key({"user": "ann"})
    with pytest.raises(InvalidRequest):
        directory.update_key(key["prefix"], {"expires_at": "2030-01-01", "scopes": ["nope"]})
    assert directory.key(key["prefix"])["expires_at"] is None


def test_deleting_a_user_revokes_every_key(directory: Directory) -> None:
    directory.add_user({"name": "ann"})
    created, _ = directory.create_key({"user": "ann"})
    accounts = directory.accounts
    assert accounts.authenticate(created.secret).user_name == "ann"
    directory.delete_user("ann")
    with pytest.raises(AuthenticationError):
        accounts.authenticate(created.secret)
    assert directory.users() == []
    assert [u["name"] for u in directory.users(status="deleted")] == ["ann"]
    with pytest.raises(InvalidRequest, match="deleted"):
        directory.create_key({"user": "ann"})


def test_keys_by_prefix_expiry_and_scopes(directory: Directory) -> None:
    directory.add_user({"name": "ann"})
    created, record = directory.create_key(
        {"user": "ann", "scopes": ["chat"], "expires_at": "2020-01-01"}
    )
    assert record["expires_at"] == "2020-01-01T00:00:00.000000Z"
    with pytest.raises(AuthenticationError, match="expired"):
        directory.accounts.authenticate(created.secret)
    directory.update_key(created.prefix, {"expires_at": None, "scopes": ["chat", "admin"]})
    assert directory.accounts.authenticate(created.secret).can("admin")
    # LIKE wildcards in a prefix filter are taken literally.
    assert directory.keys(prefix="ca-") != [] and directory.keys(prefix="%") == []
    assert directory.keys(prefix=created.prefix)[0]["id"] == created.id
    with pytest.raises(InvalidRequest, match="unknown scope"):
        directory.update_key(created.prefix, {"scopes": ["root"]})
    directory.revoke_key(created.id)
    assert directory.keys() == [] and directory.keys(include_revoked=True)[0]["revoked_at"]


def test_expiry_parsing_keeps_time_zones() -> None:
    assert parse_expiry("2027-01-31T12:00:00+02:00") == "2027-01-31T10:00:00.000000Z"
    assert parse_expiry(None) is None
    with pytest.raises(InvalidRequest):
        parse_expiry("next week")


def test_principal_of_a_user_or_org_for_quota_views(directory: Directory) -> None:
    directory.add_org({"name": "acme", "tier": "pro"})
    directory.add_user({"name": "ann", "org": "acme", "tier": "free"})
    user = directory.principal_of("user", "ann")
    assert (user.user_name, user.user_tier, user.org_tier) == ("ann", "free", "pro")
    assert directory.principal_of("org", "acme").org_tier == "pro"
    with pytest.raises(NotFound):
        directory.principal_of("planet", "x")


def test_tier_limits_set_at_run_time_apply_now_and_survive_a_restart(tmp_path: Path) -> None:
    config = load_config(shipped_config_path())
    db = open_database(tmp_path / "chatapp.db")
    quotas = Quotas(config, db)
    assert quotas.tier_limits("free", "smollm2").requests_per_minute == 20
    quotas.set_tier_limit("free", "", "requests_per_minute", 3)
    quotas.set_tier_limit("free", "smollm2", "tokens_per_day", None)
    assert quotas.tier_limits("free", "smollm2").requests_per_minute == 3
    assert quotas.tier_limits("free", "smollm2").tokens_per_day is None
    restarted = Quotas(config, db)
    assert restarted.tier_limits("free", "smollm2").requests_per_minute == 3
    restarted.clear_tier_limit("free", "", "requests_per_minute")
    assert restarted.tier_limits("free", "smollm2").requests_per_minute == 20
    with pytest.raises(InvalidRequest, match="unknown tier"):
        quotas.set_tier_limit("gold", "", "requests_per_minute", 1)
    with pytest.raises(InvalidRequest, match="unknown limit"):
        quotas.set_tier_limit("free", "", "requests_per_hour", 1)
