"""`chatapp init`: the data dir, the database, an admin user and a first key in a 0600 file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatapp.accounts import Accounts
from chatapp.credentials import read_credentials, write_credentials
from chatapp.errors import AuthenticationError, StorageError
from chatapp.paths import CREDENTIALS_NAME, DB_NAME
from chatapp.store import open_database

__all__ = ["InitResult", "initialize", "read_credentials", "write_credentials"]


@dataclass(frozen=True)
class InitResult:
    """What init did: `new_key` is the admin key's secret when one was made now, else None."""

    home: Path
    db_path: Path
    credentials_path: Path
    new_key: str | None


def initialize(home: Path, *, url: str, admin_key: str | None = None) -> InitResult:
    """Create what is missing and leave what exists: running it twice changes nothing.

    A key is made when no admin key exists yet, or when `admin_key` (CHATAPP_ADMIN_KEY) is given
    and not yet stored; then it is written to the credentials file for the CLI and TUI.
    """
    if admin_key is not None and not admin_key.strip():
        admin_key = None  # an empty CHATAPP_ADMIN_KEY means "not set", not "mint a new key"
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"{home}: cannot create the data dir ({exc.strerror})") from None
    db_path = home / DB_NAME
    credentials = home / CREDENTIALS_NAME
    db = open_database(db_path)
    try:
        accounts = Accounts(db)
        # The operator's own org: the generous tier (models.toml may redefine what it allows).
        org_id = accounts.ensure_org("default", tier="enterprise")
        admin_id = accounts.ensure_user("admin", org_id=org_id, is_admin=True)
        new_key: str | None = None
        if admin_key is not None and accounts.has_key(admin_key):
            try:
                usable = accounts.authenticate(admin_key).can("admin")
            except AuthenticationError:
                usable = False
            if not usable:
                raise StorageError(
                    "CHATAPP_ADMIN_KEY names a key that is revoked, expired or lacks the admin "
                    "scope: unset it or choose another value"
                )
        if admin_key is not None and not accounts.has_key(admin_key):
            new_key = accounts.create_key(
                admin_id, scopes=frozenset({"chat", "admin"}), name="admin", secret=admin_key
            ).secret
        elif admin_key is None and accounts.admin_key_count() == 0:
            new_key = accounts.create_key(
                admin_id, scopes=frozenset({"chat", "admin"}), name="admin"
            ).secret
        if new_key is not None or (admin_key is not None and not credentials.exists()):
            write_credentials(credentials, url=url, api_key=admin_key or new_key or "")
    finally:
        db.conn.close()
    return InitResult(home=home, db_path=db_path, credentials_path=credentials, new_key=new_key)
