"""Engine set-up for both databases, and the write lock that the ledger relies on.

SQLite: WAL, a busy timeout, foreign keys, and `BEGIN IMMEDIATE` for write units so two
writers queue instead of failing. PostgreSQL: ordinary transactions; the ledger takes row locks.
"""

from __future__ import annotations

import contextvars
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import wraps

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from consent.extensions import db

WRITE_OPTION = "consent_write"
PENDING_WRITE = "consent_write_pending"
BUSY_TIMEOUT_MS = 30_000


def is_sqlite(engine_or_session=None) -> bool:
    bind = engine_or_session or db.engine
    if hasattr(bind, "get_bind"):
        bind = bind.get_bind()
    return bind.dialect.name == "sqlite"


@sa.event.listens_for(Engine, "connect")
def _on_connect(dbapi_connection, _record):
    """SQLite: WAL, busy timeout, foreign keys; and we emit BEGIN ourselves (see _on_begin)."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    # Bulk eligibility reads a million-row index: map it and cache 64 MiB of pages.
    cursor.execute("PRAGMA mmap_size = 268435456")
    cursor.execute("PRAGMA cache_size = -65536")
    cursor.close()


@sa.event.listens_for(Engine, "begin")
def _on_begin(conn):
    if conn.dialect.name != "sqlite":
        return
    immediate = conn.get_execution_options().get(WRITE_OPTION) or _take_pending_write()
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
    if immediate:
        conn.info[WRITE_OPTION] = True


@sa.event.listens_for(sa.orm.Session, "after_begin")
def _note_write_lock(session, _transaction, connection):
    if connection.info.pop(WRITE_OPTION, False):
        session.info[WRITE_OPTION] = True


def _take_pending_write() -> bool:
    from flask import g, has_request_context

    return has_request_context() and bool(g.pop(PENDING_WRITE, False))


def _plain(session=None) -> sa.orm.Session:
    """The session itself: the app's (db.session) when none is given, unwrapped from its
    scoped_session proxy."""
    session = session or db.session
    if isinstance(session, sa.orm.scoped_session):
        session = session()
    return session


def begin_write_on_first_use(session=None) -> None:
    """Make this request a write unit, but take SQLite's write lock only when it first uses
    the database: a request refused before its view runs (rate limit, bad CSRF token) never
    touches the lock, so a flood of them cannot hold up real writers."""
    from flask import g

    session = _plain(session)
    if not is_sqlite(session):
        return
    if session.in_transaction():
        begin_write(session)
    else:
        g.setdefault(PENDING_WRITE, True)


def begin_write(session=None) -> None:
    """Make the session's transaction a write transaction that holds the database's write lock.

    SQLite: a transaction that has only read is ended and a `BEGIN IMMEDIATE` one started, so
    the write lock is taken before anything is read (no stale read, no SQLITE_BUSY mid-way).
    A transaction that already wrote holds the lock already. PostgreSQL: nothing to do here;
    the ledger locks rows.
    """
    session = _plain(session)
    if not is_sqlite(session):
        return
    if session.info.get(WRITE_OPTION):
        if session.in_transaction():
            return
    if session.in_transaction():
        if session.new or session.dirty or session.deleted or session.info.get("flushed_writes"):
            session.flush()
            return
        session.commit()
    session.info[WRITE_OPTION] = True
    session.connection(execution_options={WRITE_OPTION: True})


@sa.event.listens_for(sa.orm.Session, "after_flush")
def _remember_writes(session, _context):
    if session.new or session.dirty or session.deleted:
        session.info["flushed_writes"] = True


@sa.event.listens_for(sa.orm.Session, "after_transaction_end")
def _forget_writes(session, transaction):
    if transaction.parent is None:
        session.info.pop("flushed_writes", None)
        session.info.pop(WRITE_OPTION, None)


@sa.event.listens_for(db.metadata, "before_create")
def _extensions(metadata, connection, **_kw):
    """PostgreSQL: pg_trgm, for the trigram index of part-of-an-email search."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")


# --- SQLite: a trigram index of the email states, for part-of-an-email search --------------
# PostgreSQL has pg_trgm (above); SQLite's FTS5 trigram tokenizer (3.34 and later) serves the
# same search: consent.optout_list asks it for the ids of the emails holding a term. An external
# content table (the addresses stay in consent_states), kept up to date by triggers, so every
# writer (the ledger, the bulk import's executemany) updates it in its own transaction.

EMAIL_SEARCH = "consent_states_email_fts"
_EMAIL_SEARCH_DDL = (
    "CREATE VIRTUAL TABLE consent_states_email_fts USING fts5(address, content='consent_states', "
    "content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER consent_states_email_fts_insert AFTER INSERT ON consent_states "
    "WHEN new.channel = 'email' BEGIN "
    "INSERT INTO consent_states_email_fts(rowid, address) VALUES (new.id, new.address); END",
    "CREATE TRIGGER consent_states_email_fts_delete AFTER DELETE ON consent_states "
    "WHEN old.channel = 'email' BEGIN "
    "INSERT INTO consent_states_email_fts(consent_states_email_fts, rowid, address) "
    "VALUES ('delete', old.id, old.address); END",
    "CREATE TRIGGER consent_states_email_fts_update AFTER UPDATE OF address, channel ON consent_states "
    "WHEN old.channel = 'email' OR new.channel = 'email' BEGIN "
    "INSERT INTO consent_states_email_fts(consent_states_email_fts, rowid, address) "
    "SELECT 'delete', old.id, old.address WHERE old.channel = 'email'; "
    "INSERT INTO consent_states_email_fts(rowid, address) "
    "SELECT new.id, new.address WHERE new.channel = 'email'; END",
    "INSERT INTO consent_states_email_fts(rowid, address) "
    "SELECT id, address FROM consent_states WHERE channel = 'email'",
)


def create_email_search(connection) -> bool:
    """SQLite: the email states' trigram index, its triggers, and the emails already there.
    Nothing when it exists already, on PostgreSQL, or on a SQLite built without FTS5's trigram
    tokenizer (the search then reads the list index, as before). True when it is there."""
    if connection.dialect.name != "sqlite":
        return False
    if has_email_search(connection):
        return True
    try:
        with connection.begin_nested():
            for statement in _EMAIL_SEARCH_DDL:
                connection.exec_driver_sql(statement)
    except sa.exc.OperationalError:  # no fts5, or no trigram tokenizer (SQLite < 3.34)
        return False
    return True


def drop_email_search(connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    for trigger in ("insert", "delete", "update"):
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {EMAIL_SEARCH}_{trigger}")
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {EMAIL_SEARCH}")


def has_email_search(connection) -> bool:
    return connection.dialect.name == "sqlite" and bool(
        connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (EMAIL_SEARCH,)
        ).first()
    )


def include_object(dialect_name: str):
    """An Alembic `include_object` hook: leave out what the models create only on another
    database (`.ddl_if(dialect=...)`), so autogenerate compares like with like."""

    def include(obj, name, type_, reflected, compare_to):
        if type_ == "table" and name and name.startswith(EMAIL_SEARCH):
            return False  # SQLite's FTS5 table and its shadow tables: not models
        condition = getattr(obj, "_ddl_if", None)
        wanted = getattr(condition, "dialect", None)
        if wanted is None:
            return True
        return dialect_name in ((wanted,) if isinstance(wanted, str) else tuple(wanted))

    return include


def org_is(column: sa.ColumnElement, org_id: int | sa.BindParameter) -> sa.ColumnElement[bool]:
    """`column = org_id`, planned on PostgreSQL as if for an average organization. `org_id`
    may be a bound parameter, for a statement built once and run for any organization.

    The value goes in as `(SELECT org_id)`, a parameter the planner does not see when it plans.
    Otherwise it trusts statistics taken before the organization's latest import: told "this
    organization has no rows", it reads one address through any index that starts with
    organization_id, walking every row of the organization for each address (eligibility
    checks and imports slow down with every row imported since the last ANALYZE). Planned blind, it probes the (organization, channel, address) index. SQLite keeps
    one average per index prefix, never a figure per organization: the plain value.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        value = org_id if isinstance(org_id, sa.BindParameter) else sa.literal(org_id, sa.Integer)
        return column == sa.select(value).scalar_subquery()
    return column == org_id


def is_one_of(column: sa.ColumnElement, values: Iterable[str]) -> sa.ColumnElement[bool]:
    """`column IN (values)` with the values in one parameter, however many: a JSON array read
    by json_each on SQLite, a text array on PostgreSQL. SQLAlchemy's IN binds every value as a
    parameter of its own (named, converted and rendered one by one on each execution): for
    thousands of values that costs more than the query. Text values only."""
    values = list(values)
    if is_sqlite():
        listed = sa.func.json_each(sa.literal(json.dumps(values))).table_valued("value")
        return column.in_(sa.select(listed.c.value))
    # A set to join (each value probes the column's index), not "= ANY(array)": as a filter
    # that compares every row read with every value of the array.
    listed = sa.func.unnest(sa.cast(sa.literal(pg_array(values)), sa.ARRAY(sa.Text)))
    return column.in_(sa.select(listed.table_valued("value").render_derived().c.value))


def pg_array(values: Iterable[object]) -> str:
    """A PostgreSQL array literal of the values as text ({"a","b",NULL}), for a parameter cast
    to an array type. psycopg adapts a Python list element by element; this string is built in
    one pass, and the server parses it once (bench/import_csv.py)."""
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
            continue
        text = str(value)
        if '"' in text or "\\" in text:
            text = text.replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'"{text}"')
    return "{" + ",".join(parts) + "}"


@contextmanager
def reads_without_transaction(session=None) -> Iterator[None]:
    """PostgreSQL: the session's reads inside the block run without BEGIN and ROLLBACK (each
    statement its own snapshot). For a request that only reads, one statement at a time, such
    as an eligibility check: two round trips fewer of the four it would make. At the end the
    session's transaction is ended, so whatever uses the session next gets a real one; the
    objects read stay as they were read (reading them afterwards sends nothing). Used before
    the session's first statement; otherwise (and on SQLite) it changes nothing."""
    session = _plain(session)
    if session.in_transaction() or session.get_bind().dialect.name != "postgresql":
        yield
        return
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        yield
    finally:
        # Ended without a rollback, which would expire every object read (about 60 us of a
        # portal page on PostgreSQL): nothing was written, so what was read stays as read.
        transaction = session.get_transaction()
        if transaction is not None:
            transaction.close()


def read_only(view):
    """Mark a POST view that only reads (no write lock needed on SQLite)."""
    view.read_only = True
    return view


# --- pre-ping, but not on the eligibility API's hot path -------------------------------------

_NO_PING = contextvars.ContextVar("consent_no_ping", default=False)
_FRESH = "consent_fresh"


def take_pre_ping(config) -> bool:
    """SQLALCHEMY_ENGINE_OPTIONS's pool_pre_ping, taken over by ping_on_checkout (so that a
    read that retries on a lost connection, `retry_on_disconnect`, can skip the ping's round
    trip). True when the engine options asked for it."""
    options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    pinging = bool(options.pop("pool_pre_ping", False))
    config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    return pinging


def ping_on_checkout(engine: Engine) -> None:
    """SQLAlchemy's pool_pre_ping (a connection taken from the pool is pinged first; a dead one
    is replaced), except inside `without_ping()`, where the caller retries instead."""
    dialect = engine.dialect

    @sa.event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection, record):
        record.info[_FRESH] = True

    @sa.event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, record, _proxy):
        if record.info.pop(_FRESH, False) or _NO_PING.get():
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure of the ping: a new connection
            raise sa.exc.DisconnectionError(str(exc)) from exc
        if alive is False:
            raise sa.exc.DisconnectionError("ping failed")


@contextmanager
def without_ping() -> Iterator[None]:
    """Connections taken from the pool inside the block are not pinged: the caller must retry
    its work once when the connection turns out lost (`retry_on_disconnect`)."""
    token = _NO_PING.set(True)
    try:
        yield
    finally:
        _NO_PING.reset(token)


def lost_connection(exc: BaseException) -> bool:
    """The statement failed because the connection was lost (SQLAlchemy invalidated it)."""
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


def retry_on_disconnect(view):
    """A view that only reads: run without the pool's ping (one round trip fewer), and once
    more, with it, when the connection turns out lost (a restarted or killed server
    connection: SQLAlchemy then invalidates the pool's older connections too)."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        from flask import g

        try:
            with without_ping():
                return view(*args, **kwargs)
        except sa.exc.DBAPIError as exc:
            if not lost_connection(exc):
                raise
        db.session.rollback()
        g.pop("organization", None)
        return view(*args, **kwargs)

    return wrapped


# --- a page that only reads: the whole request without ping, BEGIN and ROLLBACK ---------------

_PAGE_READ = contextvars.ContextVar("consent_page_read", default=False)


class LostConnection(Exception):
    """A page read without the pool's ping met a connection the server had closed: the
    request runs once more, pinged (`dispatch_page_read`)."""


def reads_on_get(view):
    """Mark a view whose GET and HEAD only read (a portal page: the signed-in parent's
    addresses and choices). The whole request, its before_request hooks and the user's loading
    included, then runs without the pool's ping and, on PostgreSQL, without BEGIN and ROLLBACK
    (three round trips of a page of four statements); a statement that would write refuses to
    run; a lost connection runs the request once more, as any other request runs."""
    view.reads_on_get = True
    return view


def page_read_in_progress() -> bool:
    return _PAGE_READ.get()


@contextmanager
def page_read() -> Iterator[None]:
    """Inside the block the session refuses to write (a page read commits nothing, and on
    PostgreSQL runs in autocommit: a write would not wait for a commit)."""
    token = _PAGE_READ.set(True)
    try:
        yield
    finally:
        _PAGE_READ.reset(token)


def dispatch_page_read(app, dispatch):
    """Flask's full_dispatch_request (`dispatch`) for this request: as a page read when its
    view is marked `reads_on_get` and the method is GET or HEAD."""
    from flask import g, request

    view = app.view_functions.get(request.endpoint) if request.endpoint else None
    if request.method not in ("GET", "HEAD") or not getattr(view, "reads_on_get", False):
        return dispatch()
    with page_read():
        try:
            with without_ping(), reads_without_transaction():
                return dispatch()
        except LostConnection:
            pass  # from the database error handler (consent.errors), the session rolled back
        except sa.exc.DBAPIError:
            # The session could not take a connection (an error inside the request is answered
            # by its handler, or is not about the connection): the request as any other.
            pass
        db.session.rollback()
        for name in ("organization", "_login_user", "family"):
            g.pop(name, None)
        return dispatch()


@sa.event.listens_for(sa.orm.Session, "do_orm_execute")
def _refuse_writes_in_page_reads(state):
    if _PAGE_READ.get() and (state.is_insert or state.is_update or state.is_delete):
        raise RuntimeError("a page marked reads_on_get tried to write")


@sa.event.listens_for(sa.orm.Session, "before_flush")
def _refuse_flushes_in_page_reads(session, _context, _instances):
    if _PAGE_READ.get() and (session.new or session.dirty or session.deleted):
        raise RuntimeError("a page marked reads_on_get tried to write")
