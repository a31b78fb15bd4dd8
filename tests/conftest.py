"""Fixtures: an app per test on SQLite (always) and PostgreSQL (with TEST_DATABASE_URL), a
clean database for each test, a real SMTP server on loopback, and sign-in helpers."""

from __future__ import annotations

import os
import re
import shutil
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa
from flask import g, request_started
from hypothesis import settings as hypothesis_settings

import consent.models  # noqa: F401  (the tables, before the schema is created)
from consent import create_app
from consent.extensions import db, limiter

pytest_plugins = ["tests.admin_world"]  # the `world` fixture of the admin tests

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


@pytest.fixture(scope="session")
def database(request, tmp_path_factory):
    """The database URL of one engine, with the schema created once per session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    else:
        url = _pg_url(POSTGRES_URL)
    engine = sa.create_engine(url)
    db.metadata.drop_all(engine)
    db.metadata.create_all(engine)
    engine.dispose()
    return url


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@pytest.fixture
def app(database, smtp_server):
    """An app bound to a clean database of one engine."""
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database,
            "SECRET_KEY": "test-secret-key",
            "SECRET_KEY_FALLBACKS": [],
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": smtp_server.port,
            "MAIL_DEFAULT_SENDER": "Maple Valley <no-reply@example.org>",
            "EMAIL_TRANSPORT": "smtp",
            "MAIL_SUPPRESS_SEND": False,  # Flask-Mail suppresses under TESTING; we want the SMTP server
            "TWILIO_ACCOUNT_SID": None,
            "TWILIO_AUTH_TOKEN": None,
            "PUBLIC_BASE_URL": "https://consent.example.org",
            "RATELIMIT_ENABLED": False,
            "API_KEYS": ["test-api-key"],
            "SERVER_NAME": None,
        }
    )
    limiter.enabled = False
    # The fixture's app context outlives each request, so `g` would carry one request's
    # values (Flask-WTF's csrf_token, Flask-Login's user) into the next: start each request
    # with an empty `g`, as a real server does.
    request_started.connect(_fresh_g, app)
    with app.app_context():
        _empty_tables()
        yield app
        db.session.remove()
        db.engine.dispose()
    limiter.enabled = True


def _fresh_g(sender, **extra):
    for name in list(g):
        g.pop(name, None)


def _empty_tables():
    engine = db.engine
    tables = [t.name for t in db.metadata.sorted_tables]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
            )
        else:
            for table in reversed(tables):
                conn.exec_driver_sql(f'DELETE FROM "{table}"')  # noqa: S608 - our table names


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


@pytest.fixture
def demo(app):
    """The demo organization, families and logins."""
    from consent.demo import load_demo

    load_demo(families=30)  # the full 300 are for people; 30 keep each test quick
    from tests import factories

    return factories.Demo.load()


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token of the client's session, read from a form page."""
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', page
    )
    assert match, f"no CSRF token on {path}"
    return match.group(1)


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
