"""API keys: kept hashed, named, scoped, revocable, last use shown; API_KEYS keys are
full-scope; each key has its own rate limit. The admin pages are at the end."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from consent import api_keys, ledger
from consent.extensions import db, limiter
from consent.ledger import Actor
from consent.models import SCOPES, ApiKey, Channel, Source
from tests.api_helpers import ENV_KEY, bearer, key_for, two_orgs, wrong_callers
from tests.factories import make_org

ELIGIBILITY = "/api/v1/eligibility"


@pytest.fixture
def org(app):
    org = make_org()
    ledger.opt_out(org, Channel.TEXT, "+12025550111", source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    return org


def ask(client, headers, address="+12025550111"):
    return client.get(
        ELIGIBILITY, query_string={"channel": "text", "address": address}, headers=headers
    )


def test_a_key_is_kept_only_as_its_sha256(org):
    row, key = api_keys.create(org, "Notifier", ["eligibility:read"])
    db.session.commit()
    assert key.startswith("cdk_") and len(key) > 40
    stored = db.session.get(ApiKey, row.id)
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in repr(db.session.execute(sa.select(ApiKey.__table__)).all())
    assert stored.prefix == key[:12] and stored.scopes == ["eligibility:read"]


def test_a_key_with_the_scope_answers_and_its_last_use_is_kept(org, client):
    headers = key_for(org, "eligibility:read")
    response = ask(client, headers)
    assert response.status_code == 200 and response.json["reason"] == "opted_out"
    assert db.session.scalars(sa.select(ApiKey)).one().last_used_at is not None


def test_environment_keys_are_full_scope(org, client):
    assert ask(client, ENV_KEY).status_code == 200
    assert client.get("/api/v1/events", headers=ENV_KEY).status_code == 200


@pytest.mark.parametrize(
    "who", ["no key", "not bearer", "unknown key", "revoked key", "wrong scope"]
)
def test_eligibility_refuses_the_wrong_callers(org, client, who):
    headers, status = wrong_callers(org, "eligibility:read")[who]
    response = ask(client, headers)
    assert response.status_code == status
    assert "error" in response.json
    if status == 403:
        assert response.json["scope"] == "eligibility:read"
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_key_stops_working_at_once(org, client):
    row, key = api_keys.create(org, "Old notifier", SCOPES)
    db.session.commit()
    assert ask(client, bearer(key)).status_code == 200
    assert api_keys.revoke(row) is True
    db.session.commit()
    assert ask(client, bearer(key)).status_code == 401
    assert api_keys.revoke(row) is False


def test_another_organizations_key_answers_for_its_own_organization(app, client):
    ours, theirs = two_orgs()
    ledger.opt_out(
        ours, Channel.TEXT, "+12025550177", source=Source.PORTAL, actor=Actor.recipient()
    )
    db.session.commit()
    assert ask(client, key_for(ours), "+12025550177").json["reason"] == "opted_out"
    # their key knows nothing of our opt-out: their list is theirs
    assert ask(client, key_for(theirs), "+12025550177").json["reason"] == "no_consent"


def test_unknown_scopes_and_no_scope_are_refused(org):
    with pytest.raises(ValueError):
        api_keys.create(org, "x", [])
    with pytest.raises(ValueError):
        api_keys.create(org, "x", ["eligibility:read", "admin:all"])


@pytest.fixture
def limited_client(app):
    """A second app on the same database with rate limits on (three requests a minute)."""
    from consent import create_app

    limited = create_app({**app.config, "RATELIMIT_ENABLED": True, "API_RATE_LIMIT": "3/minute"})
    limiter.reset()
    yield limited.test_client()
    limiter.reset()
    limiter.enabled = False
    with limited.app_context():
        db.session.remove()
        db.engine.dispose()


def test_each_key_has_its_own_rate_limit(org, limited_client):
    first, second = key_for(org, name="first"), key_for(org, name="second")
    codes = [ask(limited_client, first).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert ask(limited_client, first).json["error"]
    assert ask(limited_client, second).status_code == 200  # another key: its own budget


# --- the admin page -------------------------------------------------------------------------

from tests.conftest import csrf_token  # noqa: E402

PAGE = "/admin/integrations/"


def test_the_organization_team_makes_a_key_sees_it_once_and_revokes_it(demo, client, auth):
    auth.login("admin@example.org")
    page = client.post(
        "/admin/integrations/keys",
        data={"csrf_token": csrf_token(client, PAGE), "name": "Notifier",
              "scopes": ["eligibility:read", "events:read"]},
    )  # fmt: skip
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "shown only this once" in text
    import re

    key = re.search(r'<code id="shown-once">(cdk_[^<]+)</code>', text).group(1)
    assert client.get(ELIGIBILITY, query_string={"channel": "text", "address": "+12025550123"},
                      headers=bearer(key)).status_code == 200  # fmt: skip
    listing = client.get(PAGE).get_data(as_text=True)
    assert key not in listing and key[:12] in listing and "eligibility:read, events:read" in listing
    row = db.session.scalars(sa.select(ApiKey)).one()
    assert row.created_by_user_id is not None
    client.post(f"/admin/integrations/keys/{row.id}/revoke",
                data={"csrf_token": csrf_token(client, PAGE)})  # fmt: skip
    assert "Revoked" in client.get(PAGE).get_data(as_text=True)
    assert client.get(ELIGIBILITY, query_string={"channel": "text", "address": "+12025550123"},
                      headers=bearer(key)).status_code == 401  # fmt: skip


def test_a_key_without_scopes_is_refused_on_the_page(demo, client, auth):
    auth.login("admin@example.org")
    page = client.post("/admin/integrations/keys",
                       data={"csrf_token": csrf_token(client, PAGE), "name": "x"})  # fmt: skip
    assert "Choose at least one." in page.get_data(as_text=True)
    assert db.session.scalars(sa.select(ApiKey)).all() == []


@pytest.mark.parametrize(
    "login", [None, "site@example.org", "staff@example.org", "parent@example.org"]
)
def test_only_the_organization_team_reaches_integrations(demo, client, auth, login):
    if login:
        auth.login(login)
    response = client.get(PAGE)
    assert response.status_code in (302, 403)
    posted = client.post("/admin/integrations/keys", data={"name": "x", "scopes": ["events:read"]})
    assert posted.status_code in (302, 400, 403)
    assert db.session.scalars(sa.select(ApiKey)).all() == []


def test_another_organizations_key_cannot_be_revoked_here(demo, client, auth):
    other = make_org(name="Other District", texting_number="+12025550199")
    row, key = api_keys.create(other, "theirs", SCOPES)
    db.session.commit()
    auth.login("admin@example.org")
    response = client.post(f"/admin/integrations/keys/{row.id}/revoke",
                           data={"csrf_token": csrf_token(client, PAGE)})  # fmt: skip
    assert response.status_code == 404
    assert db.session.get(ApiKey, row.id, populate_existing=True).revoked_at is None


def test_revoking_without_the_csrf_token_changes_nothing(demo, client, auth):
    row, _key = api_keys.create(demo.org, "ours", SCOPES)
    db.session.commit()
    auth.login("admin@example.org")
    response = client.post(f"/admin/integrations/keys/{row.id}/revoke", data={})
    assert response.status_code == 400
    assert db.session.get(ApiKey, row.id, populate_existing=True).revoked_at is None
