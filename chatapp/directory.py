"""What admins change about people: orgs, users and API keys, named by id or by name/prefix.

Every change is a single SQLite transaction and key checks read the database on each request,
so a suspension, a revoked key or a new tier applies to the very next request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from chatapp.accounts import SCOPES, Accounts, CreatedKey, Principal
from chatapp.errors import Conflict, InvalidRequest, NotFound
from chatapp.store import transaction

__all__ = ["USER_STATUSES", "Directory", "parse_expiry"]

USER_STATUSES = ("active", "suspended", "deleted")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")

_ORG_COLUMNS = (
    "o.id, o.name, o.tier, o.created_at,"
    " (SELECT count(*) FROM users u WHERE u.org_id = o.id AND u.status != 'deleted')"
)
_USER_COLUMNS = (
    "u.id, u.name, u.email, o.name, u.tier, o.tier, u.status, u.is_admin, u.created_at,"
    " (SELECT count(*) FROM api_keys k WHERE k.user_id = u.id AND k.revoked_at IS NULL)"
)
_KEY_COLUMNS = (
    "k.id, k.prefix, k.name, u.name, k.scopes, k.created_at, k.expires_at, k.revoked_at,"
    " k.last_used_at"
)


def _org(row: tuple[Any, ...]) -> dict[str, Any]:
    org_id, name, tier, created_at, members = row
    return {"id": org_id, "name": name, "tier": tier, "members": members, "created_at": created_at}


def _user(row: tuple[Any, ...]) -> dict[str, Any]:
    uid, name, email, org, tier, org_tier, status, is_admin, created_at, keys = row
    return {
        "id": uid,
        "name": name,
        "email": email,
        "org": org,
        "tier": tier,
        "effective_tier": tier or org_tier,
        "status": status,
        "admin": bool(is_admin),
        "keys": keys,
        "created_at": created_at,
    }


def _key(row: tuple[Any, ...]) -> dict[str, Any]:
    kid, prefix, name, user, scopes, created_at, expires_at, revoked_at, last_used_at = row
    return {
        "id": kid,
        "prefix": prefix,
        "name": name,
        "user": user,
        "scopes": scopes.split(","),
        "created_at": created_at,
        "expires_at": expires_at,
        "revoked_at": revoked_at,
        "last_used_at": last_used_at,
    }


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_expiry(value: object) -> str | None:
    """An ISO date/time (UTC unless it says otherwise) as the stored form; None: never."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest("expires_at must be an ISO date or time, or null", param="expires_at")
    try:
        moment = datetime.fromisoformat(value)
        return _stamp(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"expires_at must be an ISO date or time, e.g. 2027-01-31 (got '{value}')",
            param="expires_at",
        ) from None


def _email(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or "@" not in value or len(value) > 254):
        raise InvalidRequest("email must look like name@example.com", param="email")
    return value


def _label(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 100:
        raise InvalidRequest("name must be a short label (up to 100 characters)", param="name")
    return value


def _scopes(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise InvalidRequest('scopes must be a list such as ["chat"]', param="scopes")
    unknown = set(value) - SCOPES
    if unknown:
        raise InvalidRequest(
            f"unknown scope(s) {', '.join(sorted(unknown))} (use {', '.join(sorted(SCOPES))})",
            param="scopes",
        )
    return frozenset(value)


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidRequest(
            f"a {what} name is 1-64 letters, digits or _.@+- and starts with a letter or digit",
            param="name",
        )
    if value.isdigit():
        raise InvalidRequest(f"a {what} name cannot be all digits (ids are)", param="name")
    return value


class Directory:
    """Orgs, users and keys as admins see them: lists, details and changes."""

    def __init__(self, db: sqlite_utils.Database, tiers: Iterable[str], default_tier: str) -> None:
        self.db = db
        self.accounts = Accounts(db)
        self.tiers = frozenset(tiers)
        self.default_tier = default_tier

    def _tier(self, value: object, *, optional: bool) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or value not in self.tiers:
            known = ", ".join(sorted(self.tiers)) or "none"
            raise InvalidRequest(f"unknown tier '{value}' (defined: {known})", param="tier")
        return value

    def _id_of(self, table: str, column: str, ref: object, what: str) -> int:
        """The id of a row named by its id or its unique name (or prefix)."""
        if isinstance(ref, bool) or not isinstance(ref, str | int):
            raise InvalidRequest(f"{what} must be a name or an id", param=what)
        if isinstance(ref, int) and not 0 < ref < 2**63:
            raise NotFound(f"No {what} with id {ref}.", param=what)
        by_id = isinstance(ref, int) or (ref.isascii() and ref.isdigit() and len(ref) < 19)
        where = "id" if by_id else column
        rows = self.db.execute(
            f"SELECT id FROM {table} WHERE {where} = ? LIMIT 2",  # table, column: literals
            (int(ref) if by_id else ref,),
        ).fetchall()
        if len(rows) != 1:
            detail = "is ambiguous: use its id" if rows else "exists"
            raise NotFound(f"No single {what} '{ref}' {detail}.", param=what)
        return int(rows[0][0])

    # Orgs ------------------------------------------------------------------------------

    def orgs(self) -> list[dict[str, Any]]:
        rows = self.db.execute(f"SELECT {_ORG_COLUMNS} FROM orgs o ORDER BY o.id")
        return [_org(row) for row in rows]

    def org(self, ref: str | int) -> dict[str, Any]:
        org_id = self._id_of("orgs", "name", ref, "org")
        row = self.db.execute(f"SELECT {_ORG_COLUMNS} FROM orgs o WHERE o.id = ?", (org_id,))
        return {**_org(row.fetchone()), "users": self.users(org=org_id)}

    def add_org(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        _only(fields, {"name", "tier"})
        name = _name(fields.get("name"), "org")
        tier = self._tier(fields.get("tier") or self.default_tier, optional=False)
        with transaction(self.db):
            if self.db.execute("SELECT 1 FROM orgs WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"An org named '{name}' exists already.", param="name")
            org_id = self.db.execute(
                "INSERT INTO orgs (name, tier) VALUES (?, ?)", (name, tier)
            ).lastrowid
        return self.org(int(org_id or 0))

    def update_org(self, ref: str | int, fields: Mapping[str, Any]) -> dict[str, Any]:
        org_id = self._id_of("orgs", "name", ref, "org")
        _only(fields, {"tier"})
        with transaction(self.db):
            if "tier" in fields:
                tier = self._tier(fields["tier"], optional=False)
                self.db.execute("UPDATE orgs SET tier = ? WHERE id = ?", (tier, org_id))
        return self.org(org_id)

    # Users -----------------------------------------------------------------------------

    def users(
        self, *, org: str | int | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if org is not None:
            where.append("u.org_id = ?")
            params.append(self._id_of("orgs", "name", org, "org"))
        if status is not None:
            if status not in USER_STATUSES:
                raise InvalidRequest(
                    f"status must be one of {', '.join(USER_STATUSES)}", param="status"
                )
            where.append("u.status = ?")
            params.append(status)
        else:
            where.append("u.status != 'deleted'")
        rows = self.db.execute(
            f"SELECT {_USER_COLUMNS} FROM users u JOIN orgs o ON o.id = u.org_id"
            f" WHERE {' AND '.join(where)} ORDER BY u.id",
            params,
        )
        return [_user(row) for row in rows]

    def user_id(self, ref: str | int) -> int:
        return self._id_of("users", "name", ref, "user")

    def user(self, ref: str | int) -> dict[str, Any]:
        user_id = self.user_id(ref)
        row = self.db.execute(
            f"SELECT {_USER_COLUMNS} FROM users u JOIN orgs o ON o.id = u.org_id WHERE u.id = ?",
            (user_id,),
        ).fetchone()
        return {**_user(row), "api_keys": self.keys(user=user_id, include_revoked=True)}

    def add_user(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        _only(fields, {"name", "org", "email", "tier", "admin"})
        name = _name(fields.get("name"), "user")
        org_id = self._id_of("orgs", "name", fields.get("org") or "default", "org")
        tier = self._tier(fields.get("tier"), optional=True)
        email = _email(fields.get("email"))
        with transaction(self.db):
            if self.db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"A user named '{name}' exists already.", param="name")
            user_id = self.db.execute(
                "INSERT INTO users (name, org_id, email, tier, is_admin) VALUES (?, ?, ?, ?, ?)",
                (name, org_id, email, tier, int(bool(fields.get("admin")))),
            ).lastrowid
        return self.user(int(user_id or 0))

    def update_user(self, ref: str | int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Change tier (null: the org's), status (active/suspended) or org of a user."""
        _only(fields, {"tier", "status", "org", "email"})
        user_id = self.user_id(ref)
        status = self.db.execute("SELECT status FROM users WHERE id = ?", (user_id,)).fetchone()
        if status[0] == "deleted":
            raise Conflict(f"The user '{ref}' is deleted; it cannot be changed.", param="user")
        with transaction(self.db):
            if "tier" in fields:
                tier = self._tier(fields["tier"], optional=True)
                self.db.execute("UPDATE users SET tier = ? WHERE id = ?", (tier, user_id))
            if "status" in fields:
                if fields["status"] not in ("active", "suspended"):
                    raise InvalidRequest(
                        "status must be active or suspended (DELETE removes a user)",
                        param="status",
                    )
                self.db.execute(
                    "UPDATE users SET status = ? WHERE id = ?", (fields["status"], user_id)
                )
            if "org" in fields:
                org_id = self._id_of("orgs", "name", fields["org"], "org")
                self.db.execute("UPDATE users SET org_id = ? WHERE id = ?", (org_id, user_id))
            if "email" in fields:
                self.db.execute(
                    "UPDATE users SET email = ? WHERE id = ?", (_email(fields["email"]), user_id)
                )
        return self.user(user_id)

    def delete_user(self, ref: str | int) -> dict[str, Any]:
        """Mark deleted and revoke every key; conversations and usage stay for the records."""
        user_id = self.user_id(ref)
        with transaction(self.db):
            self.db.execute("UPDATE users SET status = 'deleted' WHERE id = ?", (user_id,))
            self.db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                (_stamp(datetime.now(UTC)), user_id),
            )
        return self.user(user_id)

    # Keys ------------------------------------------------------------------------------

    def keys(
        self,
        *,
        user: str | int | None = None,
        prefix: str | None = None,
        include_revoked: bool = False,
    ) -> list[dict[str, Any]]:
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if user is not None:
            where.append("k.user_id = ?")
            params.append(self.user_id(user))
        if prefix:
            where.append("k.prefix LIKE ? ESCAPE '\\'")
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(escaped + "%")
        if not include_revoked:
            where.append("k.revoked_at IS NULL")
        rows = self.db.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id"
            f" WHERE {' AND '.join(where)} ORDER BY k.id",
            params,
        )
        return [_key(row) for row in rows]

    def key(self, ref: str | int) -> dict[str, Any]:
        key_id = self._id_of("api_keys", "prefix", ref, "key")
        row = self.db.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id"
            " WHERE k.id = ?",
            (key_id,),
        ).fetchone()
        return _key(row)

    def create_key(self, fields: Mapping[str, Any]) -> tuple[CreatedKey, dict[str, Any]]:
        """A new key for a user: the secret is returned here and never again."""
        _only(fields, {"user", "name", "scopes", "expires_at"})
        user_id = self.user_id(fields.get("user") or "")
        status = self.db.execute("SELECT status FROM users WHERE id = ?", (user_id,)).fetchone()[0]
        if status == "deleted":
            raise InvalidRequest("that user is deleted: keys cannot be made for it", param="user")
        scopes = _scopes(fields.get("scopes", ["chat"]))
        name = _label(fields.get("name"))
        expires_at = parse_expiry(fields.get("expires_at"))
        created = self.accounts.create_key(user_id, scopes=scopes, name=name)
        if expires_at is not None:
            with transaction(self.db):
                self.db.execute(
                    "UPDATE api_keys SET expires_at = ? WHERE id = ?", (expires_at, created.id)
                )
        return created, self.key(created.id)

    def update_key(self, ref: str | int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Set a key's expiry (null: never), scopes or label."""
        _only(fields, {"expires_at", "scopes", "name"})
        key_id = self._id_of("api_keys", "prefix", ref, "key")
        with transaction(self.db):
            if "expires_at" in fields:
                self.db.execute(
                    "UPDATE api_keys SET expires_at = ? WHERE id = ?",
                    (parse_expiry(fields["expires_at"]), key_id),
                )
            if "scopes" in fields:
                scopes = ",".join(sorted(_scopes(fields["scopes"])))
                self.db.execute("UPDATE api_keys SET scopes = ? WHERE id = ?", (scopes, key_id))
            if "name" in fields:
                self.db.execute(
                    "UPDATE api_keys SET name = ? WHERE id = ?", (_label(fields["name"]), key_id)
                )
        return self.key(key_id)

    def revoke_key(self, ref: str | int) -> dict[str, Any]:
        key_id = self._id_of("api_keys", "prefix", ref, "key")
        self.accounts.revoke_key(key_id)
        return self.key(key_id)

    def principal_of(self, level: str, ref: str | int) -> Principal:
        """Who a quota view is about: a key (all three levels), a user, or an org."""
        if level == "key":
            principal = self.accounts.find_key(str(self._id_of("api_keys", "prefix", ref, "key")))
            assert principal is not None  # _id_of found exactly one
            return principal
        if level == "user":
            row = self.db.execute(
                "SELECT u.id, u.name, u.org_id, o.tier, u.tier FROM users u"
                " JOIN orgs o ON o.id = u.org_id WHERE u.id = ?",
                (self.user_id(ref),),
            ).fetchone()
            return _subject_principal(row)
        if level == "org":
            org_id = self._id_of("orgs", "name", ref, "org")
            row = self.db.execute("SELECT tier FROM orgs WHERE id = ?", (org_id,)).fetchone()
            return _subject_principal((0, "", org_id, row[0], None))
        raise NotFound(f"No level '{level}' (use key, user or org).", param="level")


def _subject_principal(row: tuple[Any, ...]) -> Principal:
    """A stand-in principal for quota views of a user or an org (no key: id 0)."""
    user_id, user_name, org_id, org_tier, user_tier = row
    return Principal(
        key_id=0,
        key_prefix="",
        user_id=user_id,
        user_name=user_name,
        org_id=org_id,
        scopes=frozenset(),
        org_tier=org_tier,
        user_tier=user_tier,
    )


def _only(fields: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        field = sorted(unknown)[0]
        raise InvalidRequest(
            f"unknown field '{field}' (allowed: {', '.join(sorted(allowed))})", param=field
        )
