"""Security headers on every page (every GET rule of the app, found in `app.url_map`), session
cookie flags in production, error pages for people and JSON for machines."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from consent import config as config_module
from consent import create_app, jobs, ledger, notifications, tokens
from consent.extensions import db
from consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    Contact,
    ImportBatch,
    Job,
    Role,
    Status,
    WebhookEndpoint,
)
from tests.conftest import Auth

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def check_security_headers(response, path: str) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp, path
    assert "default-src 'self'" in csp and "object-src 'none'" in csp, path
    assert "unsafe-eval" not in csp, path
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (path, name)


def argument_values(app, demo) -> dict[str, dict[str, object]]:
    """A value for every URL argument of every GET rule, per endpoint, from the demo data."""
    family = demo.parent.contact.family
    other_contact = next(c for c in family.contacts if c.id != demo.parent.contact_id)
    email = demo.parent.contact.emails[0].address
    state = ledger.current(demo.org, Channel.EMAIL, email)
    version = state.version if state else 0
    token = {p: tokens.make(p, demo.org.id, "email", email, version) for p in tokens.PURPOSES}
    token["preferences"] = notifications.preferences_token(demo.org, email)
    opted_out = db.session.scalars(
        sa.select(ConsentState).where(ConsentState.status == Status.OPTED_OUT)
    ).first()
    batch = db.session.scalars(sa.select(ImportBatch)).first()
    if batch is None:
        batch = ImportBatch(organization_id=demo.org.id, filename="list.csv", channels="text")
        db.session.add(batch)
        db.session.commit()
    job = Job(kind="roster_import", organization_id=demo.org.id, total=0)
    db.session.add(job)
    db.session.commit()
    endpoint = WebhookEndpoint(
        organization_id=demo.org.id, url="http://127.0.0.1:9/hook", secret="whsec_dGVzdA=="
    )
    db.session.add(endpoint)
    db.session.commit()
    stored = jobs.store_file(demo.org.id, "x.csv", b"a\n")
    export_job = Job(
        kind="export",
        organization_id=demo.org.id,
        created_by_user_id=demo.admin.id,
        status="done",
        result={"file_id": stored.id, "format": "csv"},
    )
    import_job = Job(kind="optout_import", organization_id=demo.org.id, total=0)
    invitations_job = Job(kind="account_invitations", organization_id=demo.org.id, total=0)
    db.session.add_all([export_job, import_job, invitations_job])
    db.session.commit()
    csv = {"fmt": "csv"}
    account_token = account_tokens(demo)
    return {
        "roster.job": {"job_id": job.id},
        "optouts.export_job": {"job_id": export_job.id},
        "optouts.export_job_download": {"job_id": export_job.id},
        "reports.export_job": {"job_id": export_job.id},
        "reports.export_job_download": {"job_id": export_job.id},
        "activity.export_job": {"job_id": export_job.id},
        "activity.export_job_download": {"job_id": export_job.id},
        "optout_import.job": {"job_id": import_job.id},
        "invitations.job": {"job_id": invitations_job.id},
        "integrations.attempts": {"endpoint_id": endpoint.id},
        **{f"accounts.{purpose}": {"token": t} for purpose, t in account_token.items()},
        "static": {"filename": "css/site.css"},
        "admin.static": {"filename": "admin/css/bootstrap4/admin.css"},
        "account.contact": {"contact_id": other_contact.id},
        "account.student": {"student_id": family.students[0].id},
        **profile_arguments(demo),
        "links.confirm": {"token": token["confirm"]},
        "links.preferences": {"token": token["preferences"]},
        "links.unsubscribe": {"token": token["unsubscribe"]},
        # query arguments, not rule arguments: url_for puts them in the query string
        "api.eligibility_one": {"channel": "text", "address": "(202) 555-0123"},
        "optouts.row_view": {"id": opted_out.id},
        "optouts.export_view": csv,
        "optouts.export_people_view": csv,
        "optout_import.batch": {"batch_id": batch.id},
        "optouts.undo_batch_view": {"batch_id": batch.id},
        "optouts.undo_view": {"event_id": db.session.scalars(sa.select(ConsentEvent.id)).first()},
        "contacts.details": {"record_id": demo.parent.contact_id},
        "students.details": {"record_id": family.students[0].id},
        "reports.parents": {"status": "opted_out"},
        "reports.parents_export": {"status": "opted_out", "fmt": "xlsx"},
        "reports.students_export": csv,
        "activity.download": csv,
        **{
            f"{view}.export": {"export_type": "csv"}
            for view in ("activity", "optouts", "outbox", "users")
        },
    }


def profile_arguments(demo) -> dict[str, dict[str, object]]:
    """The profile pages' arguments: the parent's own record, and a live confirmation link."""
    from tests.profile_helpers import verify_email_token

    contact = demo.parent.contact
    own = {"person_kind": "contacts", "person_id": contact.id}
    return {
        "account.add_phone": own,
        "account.add_email": own,
        "account.edit_phone": {"phone_id": contact.phones[0].id},
        "account.edit_email": {"email_id": contact.emails[0].id},
        "account.verify_phone": {"phone_id": contact.phones[0].id},
        "account.verify_email": {"token": verify_email_token(demo.org, demo.parent)},
    }


def account_tokens(demo) -> dict[str, str]:
    """A usable claim, reset and verify token (an unverified login made for the last)."""
    from consent import accounts
    from tests.factories import make_user

    unclaimed = db.session.scalars(
        accounts.not_signed_up(demo.org).where(Contact.family_id != demo.parent.contact.family_id)
    ).first()
    unverified = db.session.scalars(
        accounts.not_signed_up(demo.org).where(Contact.id != unclaimed.id)
    ).first()
    user = make_user(demo.org, unverified.emails[0].address, Role.PARENT, contact=unverified)
    user.email_verified_at = None
    db.session.commit()
    tail = {
        "claim": accounts.claim_url(demo.org, unclaimed, unclaimed.emails[0].address),
        "reset": accounts.reset_url(demo.org, demo.parent),
        "verify": accounts.verify_url(demo.org, user),
    }
    return {purpose: url.rsplit("/", 1)[1] for purpose, url in tail.items()}


def every_get_page(app, demo) -> list[tuple[str, str]]:
    """(who, path) for every GET rule: parents' pages as the parent, admin pages as an org
    admin, the rest signed out. A new rule with an argument this test cannot fill fails it."""
    values = argument_values(app, demo)
    pages = []
    with app.test_request_context():
        from flask import url_for

        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods:
                continue
            arguments = values.get(rule.endpoint, {})
            missing = set(rule.arguments) - set(arguments)
            assert not missing, f"give {rule.endpoint} a value for {missing} in argument_values()"
            path = url_for(rule.endpoint, **arguments)
            if rule.rule.startswith("/api/"):
                who = "api"
            elif rule.rule.startswith("/admin"):
                who = "admin@example.org"
            elif rule.rule.startswith("/account"):
                who = "parent@example.org"
            else:
                who = None
            pages.append((who, path, rule.endpoint))
    return pages


def disabled_in_admin(app, endpoint: str) -> bool:
    """Flask-Admin registers create/edit/ajax routes on every model view; a view that turns
    the feature off answers them 404, which is right."""
    name, _dot, method = endpoint.partition(".")
    views = {view.endpoint: view for admin in app.extensions["admin"] for view in admin._views}
    view = views.get(name)
    if view is None:
        return False
    return method == "ajax_lookup" or (
        (method == "create_view" and view.can_create is False)
        or (method == "edit_view" and view.can_edit is False)
    )


def test_every_page_has_the_security_headers(app, demo):
    """Every GET page, signed out, as the parent and as an org admin, answers with CSP
    (frame-ancestors), nosniff, X-Frame-Options and Referrer-Policy, and is not an error."""
    pages = every_get_page(app, demo)
    assert len(pages) >= 14
    clients = {}
    errors = []
    for who, path, endpoint in pages:
        if who not in clients:
            clients[who] = app.test_client()
            if who == "api":
                clients[who].environ_base["HTTP_AUTHORIZATION"] = "Bearer test-api-key"
            elif who:
                assert Auth(clients[who]).login(who).status_code == 302
        response = clients[who].get(path)
        response.get_data()  # let streamed exports finish before the next request
        check_security_headers(response, path)
        if response.status_code >= 400 and not disabled_in_admin(app, endpoint):
            errors.append((who, path, response.status_code))
        # and signed out (a redirect to sign-in, or the page itself)
        anonymous = app.test_client().get(path)
        anonymous.get_data()
        assert anonymous.status_code in (200, 302, 401, 403), (path, anonymous.status_code)
        check_security_headers(anonymous, path)
    # Flask-Admin's ajax lookup needs a field name: without one it is a 404.
    print(errors)
    assert [e for e in errors if "/ajax/lookup/" not in e[1]] == [], errors


def test_pages_with_personal_data_are_not_cached(app, demo):
    """Account pages and signed-link pages say Cache-Control: no-store."""
    client = app.test_client()
    Auth(client).login("parent@example.org")
    for who, path, _endpoint in every_get_page(app, demo):
        if path.startswith(("/account", "/confirm/", "/preferences/", "/unsubscribe/")):
            response = (client if who else app.test_client()).get(path)
            assert response.headers.get("Cache-Control") == "no-store", path


@pytest.fixture
def production_app(database, smtp_server):
    """The app with the settings production gets from its environment (PRODUCTION=1)."""
    settings = config_module.from_environment(
        "/nonexistent", {"PRODUCTION": "1", "SECRET_KEY": "s" * 40, "API_KEYS": "k"}
    )
    settings.update(
        SQLALCHEMY_DATABASE_URI=database,
        TESTING=True,
        RATELIMIT_ENABLED=False,
        EMAIL_TRANSPORT="record",
        PROXY_FIX=0,
    )
    app = create_app(settings)
    with app.app_context():
        from tests.conftest import _empty_tables

        _empty_tables()
        from consent.demo import load_demo

        load_demo(families=5)
        yield app
        db.session.remove()
        db.engine.dispose()


def cookie_flags(response) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def test_production_session_cookie_is_secure_httponly_and_lax(production_app):
    """In production every cookie the app sets (sign-in, language choice) is Secure,
    HttpOnly and SameSite=Lax, and HSTS is on."""
    assert production_app.config["SESSION_COOKIE_SECURE"] is True
    client = production_app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    cookies = cookie_flags(client.get("/login?lang=es"))
    login = Auth(client).login("parent@example.org")
    assert login.status_code == 302
    cookies += cookie_flags(login)
    assert cookies
    for cookie in cookies:
        assert "; Secure" in cookie, cookie
        assert "; HttpOnly" in cookie, cookie
        assert "SameSite=Lax" in cookie, cookie
    response = client.get("/account/settings")
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    check_security_headers(response, "/account/settings")


def test_development_cookie_is_httponly_and_lax_but_not_secure(app, demo):
    """On http://127.0.0.1 (development) the cookie cannot be Secure, but is still HttpOnly/Lax."""
    client = app.test_client()
    login = Auth(client).login("parent@example.org")
    (cookie,) = [c for c in cookie_flags(login) if c.startswith("session=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


@pytest.mark.parametrize(
    "method, path, code",
    [
        ("GET", "/no-such-page", 404),
        ("GET", "/account/contacts/999999", 404),
        ("PUT", "/login", 405),
        ("GET", "/logout", 405),
        ("POST", "/logout", 400),  # no CSRF token
        ("GET", "/admin/", 403),  # signed in as a parent
    ],
)
def test_errors_are_plain_pages_in_the_site_style(app, demo, client, method, path, code):
    """An error shows the site's layout, a heading that says what happened, and no traceback."""
    Auth(client).login("parent@example.org")
    response = client.open(path, method=method)
    assert response.status_code == code
    page = response.get_data(as_text=True)
    assert 'class="site-header"' in page and "<h1>" in page
    assert f"Error {code}" in page
    assert "Traceback" not in page and "werkzeug" not in page.lower()
    check_security_headers(response, path)


def test_errors_under_api_and_sms_are_json(client):
    """A machine gets {"error": …} in JSON, not a page."""
    for path in ("/api/v1/no-such-thing", "/sms/no-such-thing"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.is_json and response.json["error"]


@pytest.mark.own_app  # it adds a route
def test_an_unexpected_error_is_a_clean_500_page(app, demo):
    """A bug in a view gives the plain 500 page (not a traceback) and rolls the work back."""
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom-for-test")
    def boom():
        state = db.session.scalars(sa.select(ConsentState)).first()
        state.note = "half-written"
        db.session.flush()
        raise RuntimeError("a bug")

    response = app.test_client().get("/boom-for-test")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Something went wrong on our side" in page and "RuntimeError" not in page
    db.session.expire_all()
    assert "half-written" not in set(db.session.scalars(sa.select(ConsentState.note)))


def test_too_large_a_request_is_413_with_a_clear_message(app, client):
    """A body over MAX_CONTENT_LENGTH: a page that says it is too large."""
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = client.post("/enroll", data={"note": "x" * 5000})
    assert response.status_code == 413
    assert "larger than we accept" in response.get_data(as_text=True)
