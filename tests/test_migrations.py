"""The models and the migrations agree, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from consent import create_app
from consent.database import include_object
from consent.extensions import db
from tests.conftest import POSTGRES_URL, postgres_url


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request, tmp_path):
    """A database with nothing in it, on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    if not POSTGRES_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    base = sa.engine.make_url(postgres_url())
    name = f"{base.database}_migrations"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def test_migrations_build_the_schema_the_models_describe(empty_database):
    """`flask db upgrade` on an empty database leaves nothing for autogenerate to add."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_database})
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_object": include_object(conn.dialect.name),
                },
            )
            differences = compare_metadata(context, db.metadata)
        assert differences == []
        downgrade(revision="base")
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()


def test_upgrading_a_database_with_consent_on_record_keeps_it(empty_database):
    """A database in use (an organization, a STOP on record: a state and the event it points
    at) upgrades from 0008 to the newest schema, even where SQLite must rebuild the tables
    those rows live in, and the opt-out still stands; a job's file kept as one blob comes out
    of 0017 in parts, byte for byte."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_database})
    with app.app_context():
        upgrade(revision="0008_owner_indexes")
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO organizations (id, name, texting_number, notification_email,"
                " help_contact, texts_about, message_frequency, default_region,"
                " text_requires_consent, stop_blocks_voice, start_opts_in,"
                " admin_may_record_opt_out, staff_cell_starts_opted_in, created_at) VALUES"
                " (1, 'o', '+12025550100', 'a@b.org', '', '', '', 'US', true, false, true, true,"
                " true, '2026-01-01')"
            )
            conn.exec_driver_sql(
                "INSERT INTO consent_events (id, organization_id, channel, address, kind,"
                " from_status, to_status, carrier_block, source, actor, actor_label,"
                " occurred_at, evidence, state_version) VALUES (1, 1, 'text', '+12025550123',"
                " 'change', NULL, 'opted_out', true, 'sms_keyword', 'recipient', '',"
                " '2026-01-01', '{}', 1)"
            )
            conn.exec_driver_sql(
                "INSERT INTO consent_states (id, organization_id, channel, address, sort_key,"
                " digits, status, carrier_block, source, changed_at, changed_by, version,"
                " last_event_id) VALUES (1, 1, 'text', '+12025550123', '000012025550123',"
                " '2025550123', 'opted_out', true, 'sms_keyword', '2026-01-01', 'r', 1, 1)"
            )
        upgrade(revision="0016_purposes")
        # A job's upload kept as one blob (before 0017): bigger than a part, so it is split.
        upload = bytes(range(256)) * 6000  # 1.5 MB
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO job_files (id, organization_id, filename, content, size,"
                    " created_at) VALUES (1, 1, 'roster.zip', :content, :size, '2026-01-01')"
                ),
                {"content": upload, "size": len(upload)},
            )
        upgrade()
        from consent import eligibility, jobs
        from consent.models import Organization

        org = db.session.get(Organization, 1)
        result = eligibility.check_one(org, "text", "+12025550123")
        assert (result.allowed, result.reason) == (False, "opted_out")
        assert b"".join(jobs.file_parts(1)) == upload
        assert jobs.file_size(1) == len(upload)
        assert len(list(jobs.file_parts(1))) == 2
        db.session.remove()
        db.engine.dispose()
