"""0016_purposes migrates existing consent without loss: every eligibility answer is the same
after the upgrade, the old events are channel-wide, and each organization has its purposes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from consent import create_app, eligibility, purposes
from consent.extensions import db
from consent.models import Organization
from tests.test_migrations import empty_database  # noqa: F401 (fixture)

MIGRATION = Path(__file__).parent.parent / "migrations/versions/0016_purposes.py"

# (channel, address, status, carrier_block, source) of every kind a state can be in.
ROWS = [
    ("text", "+12025550150", "opted_in", False, "portal"),
    ("text", "+12025550151", "opted_out", False, "portal"),
    ("text", "+12025550152", "opted_out", True, "sms_keyword"),
    ("text", "+12025550153", "bounced", False, "bounce"),
    ("text", "+12025550154", "unknown", False, "admin"),
    ("voice", "+12025550150", "opted_out", False, "admin"),
    ("voice", "+12025550155", "opted_in", False, "enrollment"),
    ("email", "in@example.org", "opted_in", False, "email_link"),
    ("email", "out@example.org", "opted_out", False, "one_click"),
    ("email", "bounced@example.org", "bounced", False, "bounce"),
]
ASKED = {
    "text": [r[1] for r in ROWS if r[0] == "text"] + ["+12025550159", "nonsense"],
    "voice": ["+12025550150", "+12025550155", "+12025550159"],
    "email": ["in@example.org", "out@example.org", "bounced@example.org", "new@example.org"],
}


def _before_revision() -> str:
    spec = importlib.util.spec_from_file_location("m0016", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.down_revision


def _answers(org_id):
    org = db.session.get(Organization, org_id)
    return {ch: eligibility.check_rows(org, ch, addresses) for ch, addresses in ASKED.items()}


def test_upgrade_keeps_every_answer(empty_database):  # noqa: F811
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_database})
    with app.app_context():
        upgrade(revision=_before_revision())
        with db.engine.begin() as conn:
            org_id = conn.execute(
                sa.text(
                    "INSERT INTO organizations (name, texting_number, notification_email, "
                    "help_contact, texts_about, message_frequency, default_region, "
                    "text_requires_consent, stop_blocks_voice, start_opts_in, "
                    "admin_may_record_opt_out, staff_cell_starts_opted_in, created_at) VALUES "
                    "('Old District', '+12025550100', 'o@example.org', '', 'x', 'y', 'US', "
                    ":t, :f, :t, :t, :t, CURRENT_TIMESTAMP) RETURNING id"
                ),
                {"t": True, "f": False},
            ).scalar()
            for channel, address, status, block, source in ROWS:
                event_id = conn.execute(
                    sa.text(
                        "INSERT INTO consent_events (organization_id, channel, address, kind, "
                        "from_status, to_status, carrier_block, source, actor, actor_label, "
                        "occurred_at, evidence, state_version) VALUES (:o, :c, :a, 'change', "
                        "NULL, :s, :b, :src, 'system', 'old', CURRENT_TIMESTAMP, '{}', 1) "
                        "RETURNING id"
                    ),
                    {"o": org_id, "c": channel, "a": address, "s": status, "b": block,
                     "src": source},
                ).scalar()  # fmt: skip
                conn.execute(
                    sa.text(
                        "INSERT INTO consent_states (organization_id, channel, address, "
                        "sort_key, status, carrier_block, source, changed_at, changed_by, "
                        "version, last_event_id) VALUES (:o, :c, :a, :a, :s, :b, :src, "
                        "CURRENT_TIMESTAMP, 'old', 1, :e)"
                    ),
                    {"o": org_id, "c": channel, "a": address, "s": status, "b": block,
                     "src": source, "e": event_id},
                )  # fmt: skip
        before = _answers(org_id)
        db.session.remove()

        upgrade()
        after = _answers(org_id)
        assert after == before
        org = db.session.get(Organization, org_id)
        assert [p.key for p in purposes.of(org)] == ["emergency", "attendance", "general"]
        general = purposes.general(org)
        for channel, addresses in ASKED.items():
            assert eligibility.check_rows(org, channel, addresses, general) == before[channel]
        nulls = db.session.execute(
            sa.text("SELECT count(*) FROM consent_events WHERE purpose_id IS NULL")
        ).scalar()
        assert nulls == len(ROWS)
        db.session.execute(sa.text("DELETE FROM consent_states"))
        db.session.commit()
        db.session.remove()
        downgrade(revision="base")
        db.engine.dispose()
