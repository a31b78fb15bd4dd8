"""The app factory, health check, demo data and CLI."""

import sqlalchemy as sa

from consent import create_app
from consent.extensions import db
from consent.models import ConsentEvent, ConsentState, Organization, User


def test_healthz_answers_ok_when_database_reachable(client):
    """GET /healthz is 200 with the database reachable."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["database"] == "ok"


def test_healthz_answers_503_when_database_unreachable(tmp_path):
    """GET /healthz is 503 when the database cannot be reached."""
    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/missing/dir/db.sqlite3"}
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["database"] == "unreachable"


def test_second_app_in_same_process_works(app):
    """create_app() twice in one process builds a working admin each time."""
    other = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert "admin" in other.blueprints
    assert other.test_client().get("/admin/").status_code in (302, 403)


def test_demo_is_idempotent_and_has_the_contract_logins(app, runner):
    """`flask demo` twice loads the data once and prints the logins."""
    first = runner.invoke(args=["demo"])
    assert "Demo data loaded." in first.output
    counts = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    second = runner.invoke(args=["demo"])
    assert "already present" in second.output
    assert "parent@example.org" in second.output and "parent-demo-pass" in second.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == counts
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Organization)) == 1
    emails = set(db.session.scalars(sa.select(User.email)))
    assert {
        "parent@example.org",
        "admin@example.org",
        "site@example.org",
        "staff@example.org",
    } <= emails
    sources = set(db.session.scalars(sa.select(ConsentState.source).distinct()))
    assert len(sources) >= 9


def test_production_hashes_passwords_with_scrypt_at_full_cost(tmp_path):
    """Production's new password hashes are scrypt at werkzeug's default cost (the tests'
    cheap method is a test setting only)."""
    from consent import config
    from consent.passwords import hash_password

    settings = config.from_environment(str(tmp_path), {"PRODUCTION": "1", "SECRET_KEY": "s" * 40})
    assert settings["PASSWORD_HASH_METHOD"] == "scrypt"
    production = create_app({**settings, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with production.app_context():
        user = User(email="x@example.org")
        user.set_password("long-enough-pass")
        assert user.password_hash.startswith("scrypt:32768:8:1$")
        assert user.check_password("long-enough-pass")
    assert hash_password("outside-an-app").startswith("scrypt:32768:8:1$")


def test_sign_in_spends_its_throwaway_check_on_the_configured_method(app):
    """The check made for an unknown email uses the same method as real hashes."""
    from consent import accounts

    accounts.spend_equal_time("a-guess")
    assert app.config["PASSWORD_HASH_METHOD"] == "scrypt:1024:8:1"
    dummy = accounts._dummy_users[app.config["PASSWORD_HASH_METHOD"]]
    assert dummy.password_hash.startswith("scrypt:1024:8:1$")
