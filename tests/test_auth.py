"""Sign-in and sign-out: scrypt hashes, a fresh session, `next` only to a local path, one
message for every failure, and a rate limit on attempts."""

from __future__ import annotations

import html

import pytest
import sqlalchemy as sa

from consent import create_app
from consent.extensions import db, limiter
from consent.models import Role
from portal.auth import safe_next
from tests.conftest import csrf_token
from tests.factories import PASSWORD, make_family, make_org, make_site, make_user

FAILED = "That email and password do not match an account."


@pytest.fixture
def people(app):
    """A parent and an org admin."""
    org = make_org()
    site = make_site(org)
    family = make_family(org, site, "Rivera")
    make_user(org, "ana@example.org", Role.PARENT, contact=family.contacts[0], name="Ana Rivera")
    make_user(org, "admin@example.org", Role.ORG, name="Dana Admin")
    db.session.commit()
    return org


def sign_in(client, email, password=PASSWORD, next_=None):
    data = {"email": email, "password": password, "csrf_token": csrf_token(client)}
    if next_ is not None:
        data["next"] = next_
    return client.post("/login", data=data)


def test_parent_signs_in_to_their_settings_and_admin_to_the_admin(client, people):
    """A parent lands on their settings, an admin on the admin panel."""
    assert sign_in(client, "ana@example.org").location == "/account/settings"
    client.post("/logout", data={"csrf_token": csrf_token(client, "/account/settings")})
    assert sign_in(client, "ADMIN@example.org ").location == "/admin/"


def test_unknown_email_and_wrong_password_get_the_same_answer(client, people):
    """No way to tell whether an email has an account."""
    unknown = sign_in(client, "nobody@example.org")
    wrong = sign_in(client, "ana@example.org", "not-the-password")
    assert unknown.status_code == wrong.status_code == 200
    assert FAILED in html.unescape(unknown.get_data(as_text=True))
    assert FAILED in html.unescape(wrong.get_data(as_text=True))
    assert client.get("/account/settings").status_code == 302


def test_inactive_login_cannot_sign_in(client, people):
    """A deactivated user gets the same failure message."""
    from consent.models import User

    user = db.session.scalars(sa.select(User).where(User.email == "ana@example.org")).one()
    user.active = False
    db.session.commit()
    response = sign_in(client, "ana@example.org")
    assert FAILED in html.unescape(response.get_data(as_text=True))


def test_sign_in_starts_a_fresh_session(client, people):
    """Whatever the session held before sign-in is gone after it (no session fixation)."""
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    sign_in(client, "ana@example.org")
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("_user_id")


def test_signed_out_visitor_comes_back_to_the_page_asked_for(client, people):
    """/account/students while signed out: sign in, then land on /account/students."""
    response = client.get("/account/students")
    assert response.location == "/login?next=%2Faccount%2Fstudents"
    page = client.get(response.location).get_data(as_text=True)
    assert 'value="/account/students"' in page
    assert sign_in(client, "ana@example.org", next_="/account/students").location == (
        "/account/students"
    )


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
        " //evil.example",
    ],
)
def test_next_outside_the_site_is_ignored(client, people, target):
    """Any `next` that is not a local path sends the parent to their settings instead."""
    assert safe_next(target) is None
    assert sign_in(client, "ana@example.org", next_=target).location == "/account/settings"


def test_logout_is_a_post_and_forgets_the_session(client, people):
    """GET /logout is not allowed; POST signs out and the account pages need sign-in again."""
    sign_in(client, "ana@example.org")
    assert client.get("/logout").status_code == 405
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/account/settings")})
    assert response.location == "/login"
    assert "You are signed out." in client.get("/login").get_data(as_text=True)
    assert client.get("/account/settings").status_code == 302
    with client.session_transaction() as session:
        assert "_user_id" not in session


def test_logout_without_csrf_token_is_refused(client, people):
    """A cross-site form cannot sign a parent out."""
    sign_in(client, "ana@example.org")
    assert client.post("/logout").status_code == 400
    assert client.get("/account/settings").status_code == 200


def test_sign_in_attempts_are_rate_limited(app, people):
    """The 11th attempt within a minute from one address answers 429, right password or not."""
    limited = create_app({**app.config, "RATELIMIT_ENABLED": True})
    try:
        limiter.reset()
        client = limited.test_client()
        for n in range(10):
            assert sign_in(client, f"guess{n}@example.org", "wrong-password").status_code == 200
        assert sign_in(client, "ana@example.org").status_code == 429
        other = limited.test_client()
        other.environ_base["REMOTE_ADDR"] = "10.0.0.7"
        assert sign_in(other, "ana@example.org").status_code == 302
    finally:
        limiter.reset()
        limiter.enabled = False


def test_signed_out_visitor_is_told_to_sign_in(client, people):
    """The sign-in page says why the visitor landed there."""
    response = client.get("/account/settings", follow_redirects=True)
    assert "Please sign in to see that page." in response.get_data(as_text=True)
