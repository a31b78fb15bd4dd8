"""Portal pages that only read (issue 18): their GET runs without the pool's ping and, on
PostgreSQL, without BEGIN and ROLLBACK; a killed connection still gets the page; a write on
such a page is refused; their POSTs are ordinary write units."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from consent import database
from consent.extensions import db
from consent.models import Channel, ConsentEvent, ConsentState, Status, User
from tests.helpers import kill_server_connections, statements_and_pings

PAGES = ["/account/settings", "/account/contacts", "/account/students"]


@pytest.mark.parametrize("path", PAGES)
def test_a_portal_page_reads_without_ping_begin_or_rollback(client, world, monkeypatch, path):
    world.login(client, "parent")
    assert client.get(path).status_code == 200
    db.session.remove()  # as the next request finds it
    page, statements, pings = statements_and_pings(monkeypatch, lambda: client.get(path))
    assert page.status_code == 200
    assert pings == []
    if db.engine.dialect.name == "postgresql":
        control = [s for s in statements if s.strip().upper() in ("BEGIN", "ROLLBACK", "COMMIT")]
        assert control == [], statements
    # Reads only: a SELECT, or one after its common table expressions (WITH ... SELECT).
    assert all(
        s.lstrip().upper().startswith(("SELECT", "WITH", "BEGIN", "ROLLBACK")) for s in statements
    )
    assert not [s for s in statements if re.search(r"\b(INSERT|UPDATE|DELETE)\b", s.upper())]


def test_the_settings_page_after_every_connection_was_killed(client, world):
    """PostgreSQL: the server's connections killed between two requests (as a restart would);
    the next settings page is still the parent's page, read again on a new connection."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("kills PostgreSQL server connections")
    world.login(client, "parent")
    first = client.get("/account/settings")
    assert first.status_code == 200
    for _ in range(2):
        assert kill_server_connections() >= 1
        page = client.get("/account/settings")
        assert page.status_code == 200, page.get_data(as_text=True)[:300]
        text = page.get_data(as_text=True)
        assert "Your settings" in text and "Sign out" in text
        assert text.count('class="toggle-row"') == first.get_data(as_text=True).count(
            'class="toggle-row"'
        )


def test_a_write_inside_a_page_read_is_refused_and_nothing_is_kept(app, world):
    parent = world.users["parent"]
    before = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    with database.page_read():
        parent.name = "Someone Else"
        with pytest.raises(RuntimeError, match="reads_on_get"):
            db.session.flush()
        db.session.rollback()
        with pytest.raises(RuntimeError, match="reads_on_get"):
            db.session.execute(sa.update(ConsentState).values(status=Status.OPTED_IN))
        db.session.rollback()
    db.session.expire_all()
    assert db.session.get(type(parent), parent.id).name != "Someone Else"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == before
    parent.name = "Changed Outside"  # outside the block, writes as before
    db.session.commit()
    assert db.session.get(type(parent), parent.id).name == "Changed Outside"


def test_the_settings_post_is_still_a_write(client, world):
    """The same view's POST (a toggle) is an ordinary request: it writes, and the page after it
    says so."""
    from tests.helpers import csrf_token

    world.login(client, "parent")
    page = client.get("/account/settings").get_data(as_text=True)
    contact = world.users["parent"].contact
    phone_id, number = next((p.id, p.number) for p in contact.phones)
    assert 'data-status="opted_in"' in page
    response = client.post(
        "/account/settings",
        data={
            "csrf_token": csrf_token(client),
            "target": f"phone-{phone_id}",
            "channel": "text",
            "allow": "off",
        },
    )
    assert response.status_code == 302
    db.session.remove()
    state = db.session.scalar(
        sa.select(ConsentState).where(
            ConsentState.address == number, ConsentState.channel == Channel.TEXT
        )
    )
    assert state.status == Status.OPTED_OUT
    after = client.get("/account/settings").get_data(as_text=True)
    assert "Opted out" in after or "Off" in after


def test_what_a_read_without_transaction_loaded_is_read_by_nothing_after_it(
    app, world, count_queries
):
    """PostgreSQL: once a read without transaction ends, what it loaded stays as it was read
    (the session closed, not rolled back: nothing expired). Reading it afterwards, as a page's
    after-request hooks and error pages read the signed-in user, sends nothing and opens no
    transaction; the session's next statement gets a real one."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("reads without transaction are PostgreSQL's (on SQLite nothing changes)")
    parent = world.users["parent"]
    user_id, email = parent.id, parent.email
    db.session.remove()
    with database.reads_without_transaction():
        user = db.session.get(User, user_id)
        contact = user.contact
    with count_queries() as after:
        assert (user.email, user.contact.first_name) == (email, contact.first_name)
    assert after.statements == []
    assert not db.session().in_transaction()
    assert db.session.scalar(sa.select(User.email).where(User.id == user_id)) == email
    assert db.session().in_transaction()
