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


def test_server_and_worker_processes_leave_their_startup_objects_out_of_collections(tmp_path):
    """run.py, which gunicorn's workers and every `flask` command (jobs work, outbox send)
    load, builds the app and then freezes what it built: the collector's full scans no longer
    walk those objects (they cost a 100,000-row import 1.1 s of its 8 s)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = (
        "import gc; assert gc.get_freeze_count() == 0; import run; "
        "print(gc.get_freeze_count(), len(gc.get_objects()))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "DATABASE_URL": f"sqlite:///{tmp_path}/run.sqlite3",
        "SECRET_KEY": "freeze-test-secret",
    }
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout  # fmt: skip
    frozen, scanned = (int(part) for part in output.split())
    assert frozen > 50_000  # the app, its modules, SQLAlchemy's mappers
    assert scanned < frozen / 10


def test_garbage_made_after_the_freeze_is_still_collected():
    """Freezing keeps the startup objects out of the scans, not later garbage: a cycle made
    afterwards is collected."""
    import gc
    import weakref

    from consent.app import freeze_startup_objects

    class Node:
        pass

    try:
        assert freeze_startup_objects() == gc.get_freeze_count() > 0
        first, second = Node(), Node()
        first.other, second.other = second, first
        gone = weakref.ref(first)
        del first, second
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
