"""One address's eligibility in as few round trips as its answer allows (issue 18): no pool
ping on its path (a lost connection is retried instead), the organization and the purpose in
one statement, the key's read without BEGIN and ROLLBACK on PostgreSQL; and still the right
answer after a killed connection, a revoked key, or a settings change in another connection."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from consent import api_keys, ledger, outbox
from consent.extensions import db
from consent.ledger import Actor
from consent.models import SCOPES, Channel, Source
from tests.api_helpers import ENV_KEY, bearer
from tests.helpers import kill_server_connections, statements_and_pings

URL = "/api/v1/eligibility"
OUT = "+12025550111"  # opted out of texts (no carrier block)
UNKNOWN = "+12025550166"  # no state


@pytest.fixture
def org(app):
    from tests.factories import make_org

    org = make_org()
    ledger.opt_out(org, Channel.TEXT, OUT, source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    outbox.deliver_pending()
    return org


@pytest.fixture
def other_connection():
    """A connection of another engine (no pool shared with the app's)."""
    url = db.engine.url.render_as_string(hide_password=False)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def ask(client, address, headers=ENV_KEY, purpose=None):
    db.session.remove()  # as a new request finds it (the tests share the app context's session)
    query = {"channel": "text", "address": address}
    if purpose is not None:
        query["purpose"] = purpose
    response = client.get(URL, query_string=query, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json["reason"]


def _statements_and_pings(monkeypatch, call):
    result, statements, pings = statements_and_pings(monkeypatch, call)
    if db.engine.dialect.name == "postgresql":  # no transaction: no BEGIN, no ROLLBACK
        assert not [s for s in statements if s.strip().upper() in ("BEGIN", "ROLLBACK")]
    else:  # SQLite's BEGIN (consent.database) is no round trip: in process
        statements = [s for s in statements if s != "BEGIN"]
    return result, statements, pings


def test_one_address_with_a_purpose_is_one_statement_and_no_ping(app, org, client, monkeypatch):
    """The organization, its purpose and the snapshot's refresh in one statement (three before,
    and a ping). A database key adds its own read (on PostgreSQL without BEGIN and ROLLBACK).
    Other routes still ping."""
    _row, key = api_keys.create(org, "Notifier", SCOPES)
    db.session.commit()
    assert ask(client, OUT, purpose="general") == "opted_out"  # the snapshot is built
    assert ask(client, OUT, bearer(key)) == "opted_out"  # the key's last use is written
    db.session.remove()
    reason, statements, pings = _statements_and_pings(
        monkeypatch, lambda: ask(client, OUT, purpose="general")
    )
    assert reason == "opted_out" and pings == []
    assert len(statements) == 1, statements
    assert all(t in statements[0] for t in ("organizations", "message_purposes", "consent_events"))
    db.session.remove()
    reason, statements, pings = _statements_and_pings(
        monkeypatch, lambda: ask(client, OUT, headers=bearer(key), purpose="general")
    )
    assert reason == "opted_out" and pings == []
    assert len(statements) == 2, statements  # the key's read, then the one above
    assert "api_keys" in statements[0]
    db.session.remove()
    listed, _statements, pings = _statements_and_pings(
        monkeypatch, lambda: client.get("/api/v1/purposes", headers=ENV_KEY)
    )
    assert listed.status_code == 200
    if db.engine.dialect.name == "postgresql":  # SQLite: a pool of one connection per thread
        assert pings, "a route that does not retry keeps the pool's ping"


def test_a_killed_connection_still_gets_the_right_answer(app, org, client):
    """PostgreSQL: every connection of the app's pool killed (pg_terminate_backend, as a server
    restart would) between two requests; the next ones answer 200 with the right reasons,
    with an API_KEYS key and with a database key, GET and POST."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("kills PostgreSQL server connections")
    _row, key = api_keys.create(org, "Notifier", SCOPES)
    db.session.commit()

    def kill_all():
        assert kill_server_connections() >= 1

    for headers in (ENV_KEY, bearer(key)):
        assert ask(client, OUT, headers) == "opted_out"
        kill_all()
        assert ask(client, OUT, headers) == "opted_out"
        kill_all()
        assert ask(client, UNKNOWN, headers, purpose="emergency") == "ok"
        kill_all()
        response = client.post(
            URL, json={"channel": "text", "addresses": [OUT, UNKNOWN]}, headers=headers
        )
        assert response.status_code == 200
        assert [r["reason"] for r in response.json["results"]] == ["opted_out", "no_consent"]


def test_a_key_revoked_in_another_connection_stops_at_the_next_request(
    app, org, client, other_connection
):
    _row, key = api_keys.create(org, "Notifier", SCOPES)
    db.session.commit()
    assert ask(client, OUT, bearer(key)) == "opted_out"
    with other_connection.begin():
        other_connection.execute(sa.text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP"))
    db.session.remove()
    response = client.get(URL, query_string={"channel": "text", "address": OUT},
                          headers=bearer(key))  # fmt: skip
    assert response.status_code == 401


def test_settings_and_purposes_changed_in_another_connection_count_at_once(
    app, org, client, other_connection
):
    """The organization and its purposes are read with every answer: a change committed
    elsewhere is seen by the very next one."""
    assert ask(client, UNKNOWN) == "no_consent"
    with other_connection.begin():
        other_connection.execute(sa.text("UPDATE organizations SET text_requires_consent = :f"),
                                 {"f": False})  # fmt: skip
    assert ask(client, UNKNOWN) == "ok"
    assert ask(client, OUT, purpose="attendance") == "opted_out"
    with other_connection.begin():
        other_connection.execute(
            sa.text("UPDATE message_purposes SET reaches_opted_out = :t WHERE key = 'attendance'"),
            {"t": True},
        )
    assert ask(client, OUT, purpose="attendance") == "ok"
    with other_connection.begin():
        other_connection.execute(sa.text("UPDATE message_purposes SET key = 'roll_call' "
                                         "WHERE key = 'attendance'"))  # fmt: skip
    db.session.remove()
    gone = client.get(URL, query_string={"channel": "text", "address": OUT,
                                         "purpose": "attendance"}, headers=ENV_KEY)  # fmt: skip
    assert gone.status_code == 400 and "purpose" in gone.json["error"]
    assert ask(client, OUT, purpose="roll_call") == "ok"


def test_a_wrong_guess_of_the_deployments_organization_still_answers_for_it(app, org, client):
    """The joined statement refreshes the snapshot of the organization last seen as the
    deployment's; when that is another one now, the answer is still the deployment's (its
    own snapshot refreshed apart)."""
    from consent import eligibility
    from tests.factories import make_org

    other = make_org(name="Other District", texting_number="+12025550199")
    _row, theirs = api_keys.create(other, "Theirs", SCOPES)
    db.session.commit()
    other_id, our_id = other.id, org.id
    assert ask(client, OUT, headers=bearer(theirs)) != "opted_out"  # their snapshot is built
    assert ask(client, OUT) == "opted_out"  # ours: the first organization
    url = str(db.session.get_bind().url)
    assert eligibility._DEPLOYMENT_ORG[url] == our_id
    eligibility._DEPLOYMENT_ORG[url] = other_id  # as if the first organization had changed
    assert ask(client, OUT) == "opted_out"
    assert eligibility._DEPLOYMENT_ORG[url] == our_id
