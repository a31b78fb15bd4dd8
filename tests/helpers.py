"""Helpers the tests share: CSRF tokens, signing in, reading state and events back, the
mailbox, counting queries, a free port. Fixtures live in conftest.py; data is built by
tests/factories.py."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time

import sqlalchemy as sa
from itsdangerous import URLSafeTimedSerializer

from consent import ledger
from consent.extensions import db
from consent.models import ConsentEvent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def csrf_token(client, path: str | None = None) -> str:
    """A valid CSRF token for the client's session, made as Flask-WTF makes the one a form
    carries (the raw token kept in the session, signed with the app's key). No page is
    rendered; `path` is accepted for callers that name the form's page."""
    app = client.application
    field = app.config.get("WTF_CSRF_FIELD_NAME") or "csrf_token"
    secret = app.config.get("WTF_CSRF_SECRET_KEY") or app.secret_key
    with client.session_transaction() as session:
        if not isinstance(session.get(field), str):
            session[field] = hashlib.sha1(os.urandom(64)).hexdigest()
        raw = session[field]
    return URLSafeTimedSerializer(secret, salt="wtf-csrf-token").dumps(raw)


def form_token(page: str) -> str | None:
    """The CSRF token in a rendered form, or None when the page has none."""
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', page
    )
    return match.group(1) if match else None


class Auth:
    """Sign a client in and out."""

    def __init__(self, client):
        self.client = client

    def login(self, email: str, password: str | None = None):
        password = password or email.split("@")[0] + "-demo-pass"
        return self.client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": csrf_token(self.client)},
        )

    def logout(self):
        return self.client.post("/logout", data={"csrf_token": csrf_token(self.client)})


def state_of(org, channel, address, *, fresh: bool = True):
    """The current ConsentState (or None); `fresh` reads it again from the database."""
    if fresh:
        db.session.expire_all()
    return ledger.current(org, channel, address)


def status_of(org, channel, address):
    """The current status read fresh from the database, or None without a state."""
    state = state_of(org, channel, address)
    return state.status if state else None


def events_of(address, *, org=None, channel=None, fresh: bool = False) -> list[ConsentEvent]:
    """The events of `address` (of one organization and channel if given), oldest first."""
    if fresh:
        db.session.expire_all()
    query = sa.select(ConsentEvent).where(ConsentEvent.address == address)
    if org is not None:
        query = query.where(ConsentEvent.organization_id == org.id)
    if channel is not None:
        query = query.where(ConsentEvent.channel == channel)
    return list(db.session.scalars(query.order_by(ConsentEvent.id)))


class Mailbox:
    """What arrived at the SMTP server during one test."""

    def __init__(self, controller):
        self.controller = controller
        self.handler = controller.handler_ref
        self.handler.messages.clear()

    @property
    def messages(self):
        return list(self.handler.messages)

    def to(self, address: str):
        return [m for m in self.handler.messages if address in str(m["To"])]

    @staticmethod
    def text(message) -> str:
        part = message.get_body(preferencelist=("plain",))
        return part.get_content() if part else ""

    def links(self, message, path: str) -> list[str]:
        return re.findall(rf"https?://[^\s<>\"]+{re.escape(path)}[^\s<>\"]+", self.text(message))


class QueryCounter:
    """The SQL statements run while counting (transaction control left out)."""

    def __init__(self):
        self.statements: list[str] = []

    @property
    def count(self) -> int:
        return len(self.statements)

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        if (
            not statement.lstrip()
            .upper()
            .startswith(("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT"))
        ):
            self.statements.append(statement)


def settled(read, done, seconds: float = 30.0):
    """`read()` again until `done(result)` or the time is up; the last result.

    On PostgreSQL the feed stops below the oldest transaction still open on the server, and
    transaction ids are the whole server's: another test worker's open transaction (in its
    own database) holds this feed back for a moment. The answer must still come, whole."""
    deadline = time.monotonic() + seconds
    while True:
        result = read()
        if done(result) or time.monotonic() > deadline:
            return result
        db.session.rollback()
        time.sleep(0.05)


def statements_sent(call):
    """(call()'s result, every SQL statement it sent, transaction control included)."""
    statements: list[str] = []

    def keep(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", keep)
    try:
        result = call()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", keep)
    return result, statements


def kill_server_connections() -> int:
    """PostgreSQL: terminate every other client connection to the test database (as a server
    restart would), through a connection of its own; the session is let go first. Returns how
    many were killed."""
    db.session.remove()
    url = db.engine.url.render_as_string(hide_password=False)
    killer = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with killer.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )
            ).scalar()
    finally:
        killer.dispose()


def statements_and_pings(monkeypatch, call):
    """(call()'s result, the SQL statements it sent, the pool pings it made): the pings by
    counting the dialect's do_ping."""
    pings: list[int] = []
    dialect = db.engine.dialect
    real_ping = dialect.do_ping
    monkeypatch.setattr(dialect, "do_ping", lambda conn: pings.append(1) or real_ping(conn))
    try:
        result, statements = statements_sent(call)
    finally:
        monkeypatch.undo()
    return result, statements, pings
