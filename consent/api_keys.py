"""API keys: made once (the key is shown to its maker and never again), kept as their SHA-256,
named and scoped, revoked by the organization team; and the keys of API_KEYS in the
environment, which are full-scope keys of the deployment's organization.

`authenticate` turns a presented key into a `Caller` (or None). A key's last use is written at
most once a minute per process, so a busy eligibility client costs no write per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from consent import audit
from consent.database import PENDING_WRITE, lost_connection, without_ping
from consent.extensions import db
from consent.models import SCOPES, ApiKey, Organization, utcnow

KEY_PREFIX = "cdk_"
LAST_USED_EVERY = 60.0  # seconds between writes of one key's last use


@dataclass(frozen=True)
class Caller:
    """Who called the API: one of the organization's keys, or an API_KEYS key (key_id None)."""

    key_id: int | None
    name: str
    organization_id: int | None  # None: the deployment's organization (an API_KEYS key)
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def rate_key(self) -> str:
        return f"api-key:{self.key_id}" if self.key_id is not None else f"api-env:{self.name}"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def create(org: Organization, name: str, scopes, user=None) -> tuple[ApiKey, str]:
    """A new key: (the row, the key itself, to show once). The caller commits."""
    wanted = [scope for scope in SCOPES if scope in set(scopes)]
    if not wanted:
        raise ValueError("a key needs at least one scope")
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        organization_id=org.id,
        name=name.strip()[:100] or "API key",
        prefix=key[:12],
        key_hash=digest(key),
        scopes=wanted,
        created_by_user_id=getattr(user, "id", None),
    )
    db.session.add(row)
    db.session.flush()
    audit.record(user, f"API key {row.name}", {"created": (None, ", ".join(wanted))})
    return row, key


def revoke(row: ApiKey, user=None) -> bool:
    """Revoke a key (it stops working at once); False when it was revoked already."""
    if row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    audit.record(user, f"API key {row.name}", {"revoked": (None, row.revoked_at.isoformat())})
    return True


def authenticate(presented: str, env_keys) -> Caller | None:
    """The caller a presented key stands for, or None (unknown, revoked)."""
    if not presented or len(presented) > 200:
        return None
    given = presented.encode("utf-8", "surrogateescape")
    env_match = None
    for index, key in enumerate(env_keys or ()):
        if hmac.compare_digest(given, key.encode("utf-8")) and env_match is None:
            env_match = index
    if env_match is not None:
        return Caller(None, f"API_KEYS #{env_match + 1}", None, frozenset(SCOPES))
    if not presented.startswith(KEY_PREFIX):
        return None
    # A connection of its own, before the request's session begins: on SQLite the request may
    # go on to hold the write lock, and the last-use write must not wait for it. (The request's
    # pending write lock is kept for the request: this connection's BEGIN must not take it.)
    # PostgreSQL: in autocommit (no BEGIN and ROLLBACK round trips) and without the pool's
    # ping, the read tried once more on a new connection when the pooled one was lost.
    try:
        with without_ping():
            row = _look_up(presented)
    except sa.exc.DBAPIError as exc:
        if not lost_connection(exc):
            raise
        row = _look_up(presented)
    if row is None:
        return None
    scopes = row.scopes if isinstance(row.scopes, list) else []
    return Caller(row.id, row.name, row.organization_id, frozenset(scopes))


def _look_up(presented: str):
    """The key's row (None: unknown or revoked), its last use written when due."""
    key_hash = digest(presented)
    with _keeping_pending_write(), db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        row = conn.execute(
            sa.select(ApiKey.id, ApiKey.name, ApiKey.organization_id, ApiKey.scopes).where(
                ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)
            )
        ).first()
        if row is not None and due_for_last_use(key_hash):
            conn.rollback()
            with conn.begin():
                conn.execute(
                    sa.update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=utcnow())
                )
        else:
            conn.rollback()
    return row


@contextmanager
def _keeping_pending_write():
    from flask import g, has_request_context

    pending = has_request_context() and g.pop(PENDING_WRITE, None)
    try:
        yield
    finally:
        if pending:
            g.setdefault(PENDING_WRITE, pending)


_last_written: dict[str, float] = {}
_last_lock = threading.Lock()


def due_for_last_use(key_hash: str) -> bool:
    """True at most once a minute per key (per process): time to write its last use."""
    now = time.monotonic()
    with _last_lock:
        if now - _last_written.get(key_hash, -LAST_USED_EVERY) < LAST_USED_EVERY:
            return False
        if len(_last_written) > 10_000:
            _last_written.clear()
        _last_written[key_hash] = now
    return True
