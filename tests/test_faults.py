"""Faults: the database unreachable for a moment, SQLite busy under write load, the SMTP
server down for a while. Each time the person sees a clean page, nothing is half-written, and
the service comes back by itself."""

from __future__ import annotations

import html
import multiprocessing
import sqlite3
import threading
import time
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from consent import create_app, ledger
from consent.extensions import db
from consent.models import Channel, ConsentEvent, ConsentState, OutboxMessage, Status
from tests.conftest import POSTGRES_URL, Auth, _empty_tables, csrf_token, postgres_url
from tests.netfaults import TcpProxy

UNAVAILABLE = "We cannot reach our records right now. Nothing was changed."


def toggle(client, target, channel, allow, path="/account/settings"):
    """Post one portal toggle, as the account page's form does."""
    return client.post(
        path,
        data={
            "csrf_token": csrf_token(client, "/enroll"),
            "target": target,
            "channel": channel,
            "allow": allow,
        },
    )


def counts():
    db.session.expire_all()
    events = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    states = db.session.execute(
        sa.select(ConsentState.address, ConsentState.channel, ConsentState.status)
    ).all()
    return events, sorted(states)


# --- the database goes away and comes back (PostgreSQL through a proxy we control) ---------


@pytest.fixture
def proxied(smtp_server):
    """An app whose PostgreSQL connections pass through a TcpProxy, with the demo loaded."""
    if not POSTGRES_URL:
        pytest.skip("needs TEST_DATABASE_URL (the outage is simulated between app and PostgreSQL)")
    real = sa.engine.make_url(postgres_url())
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    url = real.set(host="127.0.0.1", port=proxy.port)
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url.render_as_string(hide_password=False),
            "SECRET_KEY": "test-secret-key",
            "RATELIMIT_ENABLED": False,
            "EMAIL_TRANSPORT": "record",
            "SQLALCHEMY_ENGINE_OPTIONS": {
                "pool_pre_ping": True,
                "connect_args": {"connect_timeout": 3},
            },
        }
    )
    with app.app_context():
        _empty_tables()
        from consent.demo import load_demo

        load_demo(families=3)
        db.session.commit()
        db.session.remove()
    yield app, proxy
    proxy.close()
    with app.app_context():
        db.engine.dispose()


def parent_cell(app):
    from tests.factories import Demo

    with app.app_context():
        demo = Demo.load()
        phone = next(p for p in demo.parent.contact.phones if p.kind == "cell")
        return f"phone-{phone.id}", phone.number, demo.org.id


def test_database_outage_gives_503_pages_and_healthz_recovers_by_itself(proxied):
    """With PostgreSQL unreachable: /healthz says 503, a page and a toggle get the clean 503
    page (no traceback) and change nothing; when it is back, everything works again without a
    restart."""
    app, proxy = proxied
    target, number, org_id = parent_cell(app)
    client = app.test_client()
    assert Auth(client).login("parent@example.org").status_code == 302
    token = csrf_token(client, "/enroll")
    with app.app_context():
        before = counts()
    assert client.get("/healthz").status_code == 200

    proxy.close()
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json["database"] == "unreachable"
    page = client.get("/account/settings")
    assert page.status_code == 503
    assert page.headers["Retry-After"]
    text = html.unescape(page.get_data(as_text=True))
    assert UNAVAILABLE in text and "Traceback" not in text and "psycopg" not in text
    posted = client.post(
        "/account/settings",
        data={"csrf_token": token, "target": target, "channel": "text", "allow": "off"},
    )
    assert posted.status_code == 503
    assert UNAVAILABLE in html.unescape(posted.get_data(as_text=True))

    proxy.open()
    assert client.get("/healthz").status_code == 200
    with app.app_context():
        assert counts() == before
    assert client.get("/account/settings").status_code == 200
    assert toggle(client, target, "text", "off").status_code == 302
    with app.app_context():
        assert ledger.current(org_id, Channel.TEXT, number).status == Status.OPTED_OUT


def test_connection_cut_mid_change_leaves_nothing_half_written(proxied):
    """The connection dies after the ledger wrote the event and the state but before the
    commit: 503, and afterwards neither the event nor the new state exists."""
    app, proxy = proxied
    target, number, org_id = parent_cell(app)
    client = app.test_client()
    Auth(client).login("parent@example.org")
    with app.app_context():
        before = counts()

    cut = threading.Event()

    @sa.event.listens_for(sa.orm.Session, "after_flush")
    def cut_after_the_event_is_written(session, _context):
        if not cut.is_set() and any(isinstance(o, ConsentEvent) for o in session.new):
            cut.set()
            proxy.close()

    try:
        response = toggle(client, target, "text", "off")
    finally:
        sa.event.remove(sa.orm.Session, "after_flush", cut_after_the_event_is_written)
    assert cut.is_set()
    assert response.status_code == 503
    assert UNAVAILABLE in html.unescape(response.get_data(as_text=True))
    proxy.open()
    with app.app_context():
        assert counts() == before
        assert ledger.current(org_id, Channel.TEXT, number).status == Status.OPTED_IN
    assert toggle(client, target, "text", "off").status_code == 302


# --- SQLite: a second process holds the write lock; writers wait, nobody sees an error -----


def _hold_write_lock(path: str, seconds: float, ready, released=None) -> None:
    """Hold SQLite's write lock for `seconds`: `ready` is set once it is held, `released` just
    before it is let go."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("UPDATE organizations SET name = name")
    ready.set()
    time.sleep(seconds)
    if released is not None:
        released.set()
    connection.execute("COMMIT")
    connection.close()


@pytest.fixture
def sqlite_app(app):
    """The test's app, on SQLite only."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's database-level write lock")
    return app


def test_sqlite_writers_wait_for_a_held_write_lock_instead_of_failing(sqlite_app, demo):
    """While another process holds SQLite's write lock for 2 s, six parents' toggles and
    sign-ins from threads all succeed once it is released: no 500, no "database is locked"."""
    app = sqlite_app
    phone = next(p for p in demo.parent.contact.phones if p.kind == "cell")
    target, number, org_id = f"phone-{phone.id}", phone.number, demo.org.id
    clients = []
    for _ in range(6):
        client = app.test_client()
        assert Auth(client).login("parent@example.org").status_code == 302
        clients.append((client, csrf_token(client, "/enroll")))
    db.session.commit()
    db.session.close()

    path = urlsplit(app.config["SQLALCHEMY_DATABASE_URI"].replace("sqlite:///", "file:///")).path
    context = multiprocessing.get_context("spawn")
    ready, released = context.Event(), context.Event()
    holder = context.Process(target=_hold_write_lock, args=(path, 2.0, ready, released))
    holder.start()
    assert ready.wait(20)
    results: list[int] = []
    waited: list[bool] = []  # the lock was held when a thread began, and let go when it ended

    def act(index, client, token):
        began_while_held = not released.is_set()
        allow = "off" if index % 2 == 0 else "on"
        response = client.post(
            "/account/settings",
            data={"csrf_token": token, "target": target, "channel": "voice", "allow": allow},
        )
        results.append(response.status_code)
        results.append(Auth(app.test_client()).login("parent@example.org").status_code)
        waited.append(began_while_held and released.is_set())

    threads = [threading.Thread(target=act, args=(i, c, t)) for i, (c, t) in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    holder.join(20)
    assert waited == [True] * 6  # they really waited for the lock
    assert results == [302] * 12
    events = db.session.scalars(
        sa.select(ConsentEvent).where(
            ConsentEvent.address == number, ConsentEvent.channel == "voice"
        )
    ).all()
    state = ledger.current(org_id, Channel.VOICE, number)
    assert [e.state_version for e in events if e.kind == "change"] == list(
        range(1, state.version + 1)
    )


# --- SMTP down for a while: the message waits, then arrives once ---------------------------


def test_email_waits_while_smtp_is_down_then_arrives_once(app, demo, mailbox, runner):
    """A parent turns email off while the SMTP server is down: the page works, the
    confirmation waits in the outbox, and `flask outbox send` delivers it exactly once when
    the server is back (a second run sends nothing more)."""
    from tests.conftest import free_port

    client = app.test_client()
    Auth(client).login("parent@example.org")
    email = demo.parent.contact.emails[0]
    address = email.address
    mail_state = app.extensions["mail"]
    real_port, mail_state.port = mail_state.port, free_port()
    try:
        response = toggle(client, f"email-{email.id}", "email", "off")
        assert response.status_code == 302
        assert "Traceback" not in client.get("/account/settings").get_data(as_text=True)
        assert mailbox.to(email.address) == []
        waiting = db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.to_address == email.address)
        ).all()
        assert [m.status for m in waiting] == ["queued"]
        waiting_id = waiting[0].id
        assert "Connection" in waiting[0].last_error  # the refused connection, on record
    finally:
        mail_state.port = real_port
    assert "failed 0" in runner.invoke(args=["outbox", "send"]).output
    assert "sent 0" in runner.invoke(args=["outbox", "send"]).output
    arrived = mailbox.to(address)
    assert len(arrived) == 1
    db.session.expire_all()
    assert db.session.get(OutboxMessage, waiting_id).status == "sent"


def test_a_rate_limited_post_does_not_wait_for_the_sqlite_write_lock(sqlite_app, demo):
    """While another process holds the write lock, a sign-in refused by the rate limit answers
    429 at once: only requests that use the database take the lock, so a flood of refused
    guesses cannot hold up the people who are changing their choices."""
    from consent.extensions import limiter

    limited = create_app({**sqlite_app.config, "RATELIMIT_ENABLED": True})
    limiter.reset()
    client = limited.test_client()
    token = csrf_token(client)
    guess = {"email": "nobody@example.org", "password": "guess", "csrf_token": token}
    try:
        for n in range(10):  # ten emails: one connection's limit, not one account's
            data = {**guess, "email": f"nobody{n}@example.org"}
            assert client.post("/login", data=data).status_code == 200
        db.session.commit()
        db.session.close()
        uri = sqlite_app.config["SQLALCHEMY_DATABASE_URI"]
        path = urlsplit(uri.replace("sqlite:///", "file:///")).path
        context = multiprocessing.get_context("spawn")
        ready, released = context.Event(), context.Event()
        holder = context.Process(target=_hold_write_lock, args=(path, 4.0, ready, released))
        holder.start()
        try:
            assert ready.wait(20)
            assert client.post("/login", data=guess).status_code == 429
            assert not released.is_set()  # answered while the lock was still held
        finally:
            holder.join(20)
    finally:
        limiter.reset()
        limiter.enabled = False
