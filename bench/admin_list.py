"""Benchmark: the admin Opt-Out List with 1,000,000 opt-outs.

Figures: the list's first page, a digits search, an email search (part of an address) and a
channel filter, each a full GET of /admin/optouts/ (Flask-Admin view, query and template) by a
signed-in organization admin; beside each, the raw SQL query that fetches the same 50 rows.
Budget (DESIGN.md): first page, digits search and filter ≤ 100 ms each.

The fixture is bulk-inserted straight into consent_states (COPY on PostgreSQL, executemany on
SQLite), NOT through the ledger loop: a million ledger calls would take far longer than the
figures measured, and the list only reads.

    python -m bench.admin_list --database postgresql://postgres@127.0.0.1:5432/b_adminlist
    python -m bench.admin_list --rows 100000          # temporary SQLite file
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from bench._optouts_setup import arguments, database_url, fresh_app, median_ms, print_table

BUDGET_MS = 100.0
COLUMNS = (
    "organization_id",
    "channel",
    "address",
    "sort_key",
    "digits",
    "status",
    "carrier_block",
    "source",
    "changed_at",
    "changed_by",
    "version",
)
SOURCES = ("admin", "import", "sms_keyword", "portal", "email_link", "one_click")


def fixture_rows(org_id: int, n: int):
    """n opt-outs: 40% text, 30% voice, 30% email, spread over sources and a year of dates."""
    start = datetime(2024, 1, 1)
    for i in range(n):
        bucket = i % 10
        when = start + timedelta(minutes=i % 525_600)
        source = SOURCES[i % len(SOURCES)]
        if bucket < 7:
            channel = "text" if bucket < 4 else "voice"
            national = f"{2012000000 + i * 7:010d}"
            address = "+1" + national
            yield (
                org_id,
                channel,
                address,
                ("1" + national).rjust(15, "0"),
                national,
                "opted_out",
                source == "sms_keyword",
                source,
                when,
                "bench",
                1,
            )
        else:
            address = f"parent{i:07d}.family@example{i % 50}.org"
            yield (
                org_id,
                "email",
                address,
                address,
                None,
                "opted_out",
                False,
                source,
                when,
                "bench",
                1,
            )


def load(db, org_id: int, n: int) -> None:
    engine = db.engine
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cursor:
                with cursor.copy(f"COPY consent_states ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for row in fixture_rows(org_id, n):
                        copy.write_row(row)
            raw.commit()
            with raw.cursor() as cursor:
                cursor.execute("ANALYZE consent_states")
            raw.commit()
        finally:
            raw.close()
        return
    placeholders = ", ".join("?" for _ in COLUMNS)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN")
        batch = []
        for row in fixture_rows(org_id, n):
            batch.append(tuple(r.isoformat(" ") if isinstance(r, datetime) else r for r in row))
            if len(batch) >= 50_000:
                cursor.executemany(
                    f"INSERT INTO consent_states ({', '.join(COLUMNS)}) VALUES ({placeholders})",  # noqa: S608
                    batch,
                )
                batch = []
        if batch:
            cursor.executemany(
                f"INSERT INTO consent_states ({', '.join(COLUMNS)}) VALUES ({placeholders})",  # noqa: S608
                batch,
            )
        cursor.execute("COMMIT")
        cursor.execute("ANALYZE")
    finally:
        raw.close()


RAW = {
    "first page": (
        "SELECT * FROM consent_states WHERE organization_id = :org AND status = 'opted_out' "
        "ORDER BY channel, sort_key LIMIT 50",
        {},
    ),
    "digits search": (
        "SELECT * FROM consent_states WHERE organization_id = :org AND status = 'opted_out' "
        "AND digits = :digits ORDER BY channel, sort_key LIMIT 50",
        {},
    ),
    "email search": (
        "SELECT * FROM consent_states WHERE organization_id = :org AND status = 'opted_out' "
        "AND channel = 'email' AND address LIKE :like ORDER BY channel, sort_key LIMIT 50",
        {},
    ),
    "channel filter": (
        "SELECT * FROM consent_states WHERE organization_id = :org AND status = 'opted_out' "
        "AND channel = 'voice' ORDER BY channel, sort_key LIMIT 50",
        {},
    ),
}


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 1_000_000)
    url = database_url(args.database)
    app = fresh_app(url)
    from consent.extensions import db
    from consent.models import Organization, Role, User

    with app.app_context():
        org = Organization(
            name="Bench District",
            texting_number="+12025550100",
            notification_email="office@example.org",
        )
        db.session.add(org)
        db.session.flush()
        admin = User(
            organization_id=org.id, email="admin@example.org", role=Role.ORG, password_hash="x"
        )
        db.session.add(admin)
        db.session.commit()
        org_id, admin_id = org.id, admin.id
        started = time.perf_counter()
        load(db, org_id, args.rows)
        print(
            f"loaded {args.rows:,} opt-outs in {time.perf_counter() - started:.1f} s "
            f"(bulk insert, not through the ledger)"
        )

    probe = args.rows // 2 - (args.rows // 2) % 10 + 3  # a text row near the middle
    digits = f"{2012000000 + probe * 7:010d}"
    email_part = f"parent{args.rows // 2 - (args.rows // 2) % 10 + 8:07d}"
    searches = {
        "first page": {},
        "digits search": {"search": digits},
        "email search": {"search": email_part},
        "channel filter": {"flt1_channel_equals": "voice"},
    }
    params = {"digits": digits, "like": f"%{email_part}%"}
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(admin_id)
        session["_fresh"] = True
    table = []
    with app.app_context():
        for name, query in searches.items():
            response = client.get("/admin/optouts/", query_string=query)
            assert response.status_code == 200, response.status_code
            page = response.get_data(as_text=True)
            assert page.count('name="rowid"') >= 1, f"{name}: no rows"
            value = median_ms(
                lambda q=query: client.get("/admin/optouts/", query_string=q), args.repeat
            )
            sql, _ = RAW[name]
            baseline = median_ms(
                lambda s=sql: db.session.execute(sa.text(s), {"org": org_id, **params}).all(),
                args.repeat,
            )
            db.session.rollback()
            budgeted = name != "email search"
            table.append(
                (
                    f"list {name} (GET, {args.rows:,} rows)",
                    value,
                    baseline,
                    "ms",
                    f"<= {BUDGET_MS:.0f} ms" if budgeted else "(none)",
                    value <= BUDGET_MS if budgeted else None,
                )
            )
        engine = db.engine.dialect.name
    print_table(engine, table)


if __name__ == "__main__":
    main()
