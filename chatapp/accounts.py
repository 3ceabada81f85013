"""Orgs, users and API keys: keys are random, shown once, stored as a SHA-256 hash and a prefix."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from chatapp.errors import AuthenticationError, ChatAppError
from chatapp.store import transaction

__all__ = [
    "KEY_PREFIX",
    "SCOPES",
    "Accounts",
    "CreatedKey",
    "Principal",
    "hash_secret",
    "new_secret",
]

KEY_PREFIX = "ca-"
SCOPES = frozenset({"chat", "admin"})
_DISPLAY_LENGTH = 11


def new_secret() -> str:
    """A fresh key: 'ca-' and 40 URL-safe random characters (240 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(30)


def hash_secret(secret: str) -> str:
    """SHA-256 is enough for keys of 240 random bits: nothing to brute-force, and it is fast."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key, its user and org, and what the key may do."""

    key_id: int
    key_prefix: str
    user_id: int
    user_name: str
    org_id: int
    scopes: frozenset[str]
    org_tier: str | None = None
    user_tier: str | None = None

    def can(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class CreatedKey:
    """A key just made: the only moment its secret is known outside the caller's hands."""

    id: int
    prefix: str
    secret: str


_LOOKUP = """
SELECT k.id, k.prefix, k.scopes, k.expires_at, k.revoked_at, u.id, u.name, u.status, u.org_id,
       o.tier, u.tier
FROM api_keys k JOIN users u ON u.id = k.user_id JOIN orgs o ON o.id = u.org_id
WHERE """


class Accounts:
    """Orgs, users and keys over the SQLite database."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def _insert(self, table: str, record: dict[str, object]) -> int:
        rowid = self.db.table(table).insert(record).last_rowid
        assert rowid is not None
        return rowid

    def authenticate(self, secret: str) -> Principal:
        """The principal for a presented key, or AuthenticationError; revocation applies at once."""
        row = self.db.execute(_LOOKUP + "k.secret_hash = ?", (hash_secret(secret),)).fetchone()
        if row is None:
            raise AuthenticationError("Incorrect API key provided.")
        principal, expires_at, revoked_at, status = _principal(row)
        prefix = principal.key_prefix
        if revoked_at is not None:
            raise AuthenticationError(f"The API key {prefix}… has been revoked.")
        if expires_at is not None and expires_at <= _now():
            raise AuthenticationError(f"The API key {prefix}… expired at {expires_at}.")
        if status != "active":
            raise AuthenticationError(f"The user of API key {prefix}… is {status}.")
        return principal

    def find_key(self, ref: str) -> Principal | None:
        """The principal of a key named by id or display prefix (for admins; no secret needed)."""
        by_id = ref.isascii() and ref.isdigit() and len(ref) < 19
        where = "k.id = ?" if by_id else "k.prefix = ?"
        rows = self.db.execute(_LOOKUP + where, (int(ref) if by_id else ref,)).fetchall()
        return _principal(rows[0])[0] if len(rows) == 1 else None

    def ensure_org(self, name: str, *, tier: str | None = None) -> int:
        row = self.db.execute("SELECT id FROM orgs WHERE name = ?", (name,)).fetchone()
        if row:
            return int(row[0])
        return self._insert("orgs", {"name": name, **({"tier": tier} if tier else {})})

    def ensure_user(self, name: str, *, org_id: int, is_admin: bool = False) -> int:
        row = self.db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
        if row:
            return int(row[0])
        record = {"name": name, "org_id": org_id, "is_admin": int(is_admin)}
        return self._insert("users", record)

    def create_key(
        self,
        user_id: int,
        *,
        scopes: frozenset[str] = frozenset({"chat"}),
        name: str = "",
        secret: str | None = None,
    ) -> CreatedKey:
        """Store a new key (random unless `secret` is given) and return its secret, once."""
        unknown = scopes - SCOPES
        if unknown:
            raise ChatAppError(f"unknown scope(s): {', '.join(sorted(unknown))}")
        secret = secret or new_secret()
        if len(secret) < 16:
            raise ChatAppError("an API key must be at least 16 characters long")
        prefix = secret[:_DISPLAY_LENGTH]
        record = {
            "user_id": user_id,
            "name": name,
            "prefix": prefix,
            "secret_hash": hash_secret(secret),
            "scopes": ",".join(sorted(scopes)),
        }
        with transaction(self.db):
            key_id = self._insert("api_keys", record)
        return CreatedKey(id=key_id, prefix=prefix, secret=secret)

    def has_key(self, secret: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM api_keys WHERE secret_hash = ?", (hash_secret(secret),)
        ).fetchone()
        return row is not None

    def revoke_key(self, key_id: int) -> None:
        """Revoke a key; the next request that presents it is refused."""
        with transaction(self.db):
            self.db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (_now(), key_id),
            )

    def admin_key_count(self) -> int:
        """Usable keys with the admin scope: init creates one only when there is none."""
        row = self.db.execute(
            "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"
            " AND (',' || scopes || ',') LIKE '%,admin,%'"
        ).fetchone()
        return int(row[0])


def _principal(row: tuple[Any, ...]) -> tuple[Principal, str | None, str | None, str]:
    """A lookup row as (principal, expires_at, revoked_at, user status)."""
    (
        key_id,
        prefix,
        scopes,
        expires_at,
        revoked_at,
        user_id,
        user_name,
        status,
        org_id,
        org_tier,
        user_tier,
    ) = row
    principal = Principal(
        key_id=key_id,
        key_prefix=prefix,
        user_id=user_id,
        user_name=user_name,
        org_id=org_id,
        scopes=frozenset(scopes.split(",")),
        org_tier=org_tier,
        user_tier=user_tier,
    )
    return principal, expires_at, revoked_at, status
