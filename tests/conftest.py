"""Fixtures: one app per database engine for the session (SQLite always, PostgreSQL with
TEST_DATABASE_URL), its tables emptied before each test and its settings put back after; the
demo data loaded once and copied in; a real SMTP server on loopback; sign-in helpers
(tests/helpers.py) and data builders (tests/factories.py)."""

from __future__ import annotations

import copy
import os
import shutil
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa
from flask import g, request_started
from hypothesis import settings as hypothesis_settings

import consent.models  # noqa: F401  (the tables, before the schema is created)
from consent import create_app
from consent.extensions import db, limiter
from tests.helpers import (  # noqa: F401  (also imported from here by the test modules)
    Auth,
    Mailbox,
    QueryCounter,
    csrf_token,
    free_port,
)

# No timing deadline (a shared 2-core machine is slow at times); in CI the same examples every
# run, so a landing never depends on a lucky draw (run locally to explore new ones).
hypothesis_settings.register_profile("default", deadline=None)
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "default")

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "").strip()
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"
REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ENGINES = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
SKIPPED_PARTS: list[str] = []


def _pg_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def pytest_configure(config):
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            raise pytest.UsageError("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        SKIPPED_PARTS.append("PostgreSQL tests skipped: TEST_DATABASE_URL is not set.")
    if not os.path.exists(CHROMIUM):
        if REQUIRE_BROWSER:
            raise pytest.UsageError(f"REQUIRE_BROWSER=1 but no Chromium at {CHROMIUM}")
        SKIPPED_PARTS.append(
            f"Browser tests skipped: no Chromium at {CHROMIUM} (set CHROMIUM or install chromium)."
        )


def pytest_report_header(config):
    return [f"databases: {', '.join(ENGINES)}; chromium: {CHROMIUM}", *SKIPPED_PARTS]


def pytest_terminal_summary(terminalreporter):
    for line in SKIPPED_PARTS:
        terminalreporter.write_line(line)


def pytest_generate_tests(metafunc):
    if "database" in metafunc.fixturenames:
        metafunc.parametrize("database", ENGINES, indirect=True, scope="session")


def pytest_collection_modifyitems(config, items):
    if not os.path.exists(CHROMIUM):
        skip = pytest.mark.skip(reason="no Chromium (see the line in the summary)")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


def _without_commit_flush(url: str) -> str:
    """The PostgreSQL URL with synchronous_commit off for its connections: a commit does not
    wait for the WAL to reach the disk (what a crash could lose is of no use to a test)."""
    parsed = sa.engine.make_url(url)
    if "options" in parsed.query:
        return url
    parsed = parsed.update_query_dict({"options": "-c synchronous_commit=off"})
    return parsed.render_as_string(hide_password=False)


# What is built once per engine (database, app, demo rows), kept here rather than in pytest's
# session cache: that cache holds one engine's at a time, and pytest-xdist's file-by-file
# scheduling switches between the engines at every file.
_BUILT: dict[tuple[str, str], object] = {}


def _once(kind: str, key: str, build):
    if (kind, key) not in _BUILT:
        _BUILT[(kind, key)] = build()
    return _BUILT[(kind, key)]


def pytest_sessionfinish(session):
    for (kind, _key), value in list(_BUILT.items()):
        if kind == "app":
            with value.app_context():
                db.engine.dispose()
    _BUILT.clear()


def postgres_url() -> str:
    """This process's PostgreSQL database (SQLAlchemy URL): TEST_DATABASE_URL's, or under
    pytest-xdist one per worker beside it, <name>_gw0, <name>_gw1, … (created when missing)."""
    url = sa.engine.make_url(_pg_url(POSTGRES_URL))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker:
        name = f"{url.database}_{worker}"
        server = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with server.connect() as conn:
            known = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if not known:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        server.dispose()
        url = url.set(database=name)
    return url.render_as_string(hide_password=False)


def _create_database(engine_name: str, tmp_path_factory) -> str:
    if engine_name == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    else:
        url = _without_commit_flush(postgres_url())
    engine = sa.create_engine(url)
    db.metadata.drop_all(engine)
    db.metadata.create_all(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def database(request, tmp_path_factory):
    """The database URL of one engine, with the schema created once per session."""
    return _once(
        "database", request.param, lambda: _create_database(request.param, tmp_path_factory)
    )


@pytest.fixture(scope="session")
def smtp_server():
    """A real SMTP server (aiosmtpd) on loopback that keeps every message it receives."""
    from aiosmtpd.controller import Controller

    class Keep:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            message = message_from_bytes(envelope.original_content, policy=policy.default)
            self.messages.append(message)
            return "250 OK"

    handler = Keep()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    controller.handler_ref = handler
    yield controller
    controller.stop()


def app_settings(database: str, smtp_port: int) -> dict:
    """The settings of the tests' apps: this database, the test SMTP server, no rate limits,
    cheap password hashes (production keeps scrypt's default cost)."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database,
        "SECRET_KEY": "test-secret-key",
        "SECRET_KEY_FALLBACKS": [],
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_port,
        "MAIL_DEFAULT_SENDER": "Maple Valley <no-reply@example.org>",
        "EMAIL_TRANSPORT": "smtp",
        "MAIL_SUPPRESS_SEND": False,  # Flask-Mail suppresses under TESTING; we want the SMTP server
        "TWILIO_ACCOUNT_SID": None,
        "TWILIO_AUTH_TOKEN": None,
        "PUBLIC_BASE_URL": "https://consent.example.org",
        "RATELIMIT_ENABLED": False,
        "API_KEYS": ["test-api-key"],
        "SERVER_NAME": None,
        "PASSWORD_HASH_METHOD": TEST_PASSWORD_HASH_METHOD,
    }


TEST_PASSWORD_HASH_METHOD = "scrypt:1024:8:1"


def _new_app(database: str, smtp_port: int):
    app = create_app(app_settings(database, smtp_port))
    # The fixture's app context outlives each request, so `g` would carry one request's
    # values (Flask-WTF's csrf_token, Flask-Login's user) into the next: start each request
    # with an empty `g`, as a real server does.
    request_started.connect(_fresh_g, app)
    return app


@pytest.fixture(scope="session")
def session_app(database, smtp_server):
    """The app of one database engine, built once for the whole session."""
    return _once("app", database, lambda: _new_app(database, smtp_server.port))


@pytest.fixture
def app(request, session_app, database, smtp_server):
    """The session's app of one engine, on a database emptied for this test; whatever the test
    changes in its settings (and the mailer's) is put back afterwards. A test marked
    `own_app` (it adds a view or a route) gets an app of its own instead."""
    own = request.node.get_closest_marker("own_app") is not None
    app = _new_app(database, smtp_server.port) if own else session_app
    settings = _snapshot(app.config)
    mail_state = app.extensions["mail"]
    mail_settings = dict(vars(mail_state))
    limiter.enabled = False
    with app.app_context():
        _empty_tables()
        yield app
        db.session.remove()
        if own:
            db.engine.dispose()
    app.config.clear()
    app.config.update(settings)
    vars(mail_state).clear()
    vars(mail_state).update(mail_settings)
    limiter.enabled = False
    if limiter._storage is not None:  # set once an app with rate limits on was built
        limiter.reset()


def _snapshot(config) -> dict:
    saved = {}
    for key, value in config.items():
        try:
            saved[key] = copy.deepcopy(value)
        except Exception:  # noqa: BLE001 - an object that cannot be copied is kept as it is
            saved[key] = value
    return saved


def _fresh_g(sender, **extra):
    for name in list(g):
        g.pop(name, None)


def _tables_with_rows(conn, tables: list[str]) -> set[str]:
    query = " UNION ALL ".join(
        f"SELECT '{t}' WHERE EXISTS (SELECT 1 FROM \"{t}\")"  # noqa: S608 - our table names
        for t in tables
    )
    return {row[0] for row in conn.exec_driver_sql(query)}


def _empty_tables():
    """Empty the tables that have rows, and start every id sequence again at 1."""
    engine = db.engine
    tables = [t.name for t in db.metadata.sorted_tables]
    with engine.begin() as conn:
        used = _tables_with_rows(conn, tables)
        # DELETE, not TRUNCATE: on a few rows PostgreSQL's TRUNCATE costs far more (new files
        # for every table and index).
        for table in reversed(tables):
            if table in used:
                conn.exec_driver_sql(f'DELETE FROM "{table}"')  # noqa: S608 - our table names
        if engine.dialect.name == "postgresql":
            # Every sequence that has handed out a number starts again at 1 (a rolled-back
            # insert moves one on too, and leaves its table empty).
            conn.exec_driver_sql(
                "SELECT setval(quote_ident(schemaname) || '.' || quote_ident(sequencename), "
                "1, false) FROM pg_sequences "
                "WHERE schemaname = current_schema() AND last_value IS NOT NULL"
            )


@pytest.fixture
def mailbox(smtp_server):
    """The messages that arrive at the SMTP server during this test."""
    return Mailbox(smtp_server)


@pytest.fixture
def client(app):
    """A test client."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A CLI runner."""
    return app.test_cli_runner()


DEMO_FAMILIES = 30  # the full 300 are for people; 30 keep each test quick


@pytest.fixture(scope="session")
def demo_rows(session_app, database):
    """The demo data of one engine, loaded once and kept as rows, table by table."""
    return _once("demo", database, lambda: _demo_rows(session_app))


def _demo_rows(session_app) -> dict[str, list[dict]]:
    from consent.demo import load_demo

    with session_app.app_context():
        _empty_tables()
        load_demo(families=DEMO_FAMILIES)
        db.session.commit()
        with db.engine.connect() as conn:
            rows = {
                table.name: [dict(row._mapping) for row in conn.execute(table.select())]
                for table in db.metadata.sorted_tables
            }
        db.session.remove()
        _empty_tables()
    return rows


def _insert_rows(rows: dict[str, list[dict]]) -> None:
    """Put `rows` back into the (empty) tables, ids and all; PostgreSQL's id sequences go on
    after the highest id, as they would after loading the data."""
    engine = db.engine
    with engine.begin() as conn:
        for table in db.metadata.sorted_tables:
            if rows.get(table.name):
                conn.execute(table.insert(), rows[table.name])
        if engine.dialect.name == "postgresql":
            for table in db.metadata.sorted_tables:
                if rows.get(table.name) and "id" in table.c:
                    sequence = f"pg_get_serial_sequence('{table.name}', 'id')"
                    highest = f'SELECT max(id) FROM "{table.name}"'  # noqa: S608 - our table names
                    conn.exec_driver_sql(f"SELECT setval({sequence}, ({highest}))")


@pytest.fixture
def demo(app, demo_rows):
    """The demo organization, families and logins (copied in from the session's load)."""
    from tests import factories

    _insert_rows(demo_rows)
    return factories.Demo.load()


@pytest.fixture
def org(app):
    """One organization with the default rules (texting number +1 202-555-0100), committed."""
    from tests import factories

    org = factories.make_org()
    db.session.commit()
    return org


@pytest.fixture
def staff(app):
    """An organization with two sites and one login per role (password factories.PASSWORD):
    a dict of organization, elementary, high, org, site, staff, parent."""
    from tests import factories

    return factories.make_staff()


@pytest.fixture
def world(app):
    """Two sites, an admin of each role, a family at each site (texts opted in)."""
    from tests import factories

    return factories.make_world()


@pytest.fixture
def auth(client):
    """Sign-in helper for the client."""
    return Auth(client)


@pytest.fixture
def live_server(app):
    """The test's app served over HTTP on 127.0.0.1 (werkzeug, in a thread), same database."""
    from tests.live import serve

    with serve(app) as server:
        yield server


@pytest.fixture(scope="session")
def chromium_browser():
    """One Chromium for the session, driven by Playwright."""
    from tests.live import chromium

    with chromium(CHROMIUM) as browser:
        yield browser


@pytest.fixture
def pages(live_server, chromium_browser):
    """Open pages, each in its own browser context (one per person), closed after the test."""
    from tests.live import Pages

    opened = Pages(chromium_browser)
    yield opened
    opened.close()


@pytest.fixture
def browser_page(pages):
    """A Chromium page (390 px wide, like a phone) for the live server."""
    return pages.new()


@pytest.fixture
def count_queries(app):
    """`with count_queries() as queries: ...` counts the SQL statements (`queries.count`)."""
    from contextlib import contextmanager

    @contextmanager
    def counting():
        counter = QueryCounter()
        sa.event.listen(db.engine, "before_cursor_execute", counter)
        try:
            yield counter
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", counter)

    return counting
