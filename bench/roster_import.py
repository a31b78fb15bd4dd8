"""Benchmark: importing a OneRoster roster of 100,000 users through consent/roster.py.

    python -m bench.roster_import [--database URL ...] [--scale S]

Into a fresh database of its own (SQLite: a temporary file; PostgreSQL: a scratch database
beside the one given, dropped at the end), so the figure is the import's alone. The roster is
families of one student and two parents (100,000 x S users), each with a cell, the parents with
an email. Figures: users per second of `roster.import_path` (read and check every row, then
family by family in chunks of roster.CHUNK: look the people up by sourcedId, write the
records, and record each cell as a staff entry through the ledger, a commit per chunk), and of
the same roster imported again (every row unchanged). Baseline: the driver's own executemany
(sqlite3, psycopg; no SQLAlchemy) of the same people into families, students, contacts, phones
and emails, in the same chunks with a commit each (no reading, no checks, no consent events).
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from datetime import datetime

import sqlalchemy as sa

from bench._report import Figure, arguments, engine_name

USERS = 100_000
HEADER = (
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password"
).split(",")
ORGS = (
    "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
    "org-district,,,Bench District,district,BD,\n"
    "org-oak,,,Oak Elementary,school,OAK,org-district\n"
    "org-pine,,,Pine Elementary,school,PINE,org-district\n"
)


def cell(n: int) -> str:
    return f"+1{415 + n // 8_000_000}{200 + (n // 10_000) % 800}{n % 10_000:04d}"


def write_roster(folder: str, families: int) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "orgs.csv"), "w") as stream:
        stream.write(ORGS)
    with open(os.path.join(folder, "users.csv"), "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(HEADER)
        for f in range(families):
            kid, mom, dad = f"s{f}", f"m{f}", f"d{f}"
            school = "org-oak" if f % 2 else "org-pine"
            row = dict.fromkeys(HEADER, "")
            writer.writerow(
                (
                    row
                    | {
                        "sourcedId": kid,
                        "role": "student",
                        "orgSourcedIds": school,
                        "givenName": f"Kid{f}",
                        "familyName": f"Family{f}",
                        "identifier": f"S-{f}",
                        "sms": cell(3 * f),
                        "agentSourcedIds": f"{mom},{dad}",
                        "grades": "05",
                    }
                ).values()
            )
            for sid, n, first in ((mom, 3 * f + 1, "Mom"), (dad, 3 * f + 2, "Dad")):
                writer.writerow(
                    (
                        row
                        | {
                            "sourcedId": sid,
                            "role": "parent",
                            "orgSourcedIds": "org-district",
                            "givenName": first,
                            "familyName": f"Family{f}",
                            "identifier": f"P-{f}-{first}",
                            "email": f"{sid}@example.org",
                            "sms": cell(n),
                            "agentSourcedIds": kid,
                        }
                    ).values()
                )


def scratch_database(url: str) -> tuple[str, callable]:
    """A fresh database for this run, and the function that removes it."""
    if url == "sqlite" or url.startswith("sqlite"):
        folder = tempfile.mkdtemp(prefix="bench-roster-db-")
        return f"sqlite:///{folder}/roster.sqlite3", lambda: shutil.rmtree(folder)
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    base = sa.engine.make_url(url)
    name = f"{base.database}_roster_bench"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop():
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def measure(url: str, users: int) -> list[Figure]:
    from bench import dataset
    from consent import ledger, roster
    from consent.extensions import db
    from consent.models import ConsentEvent, Contact, Organization, Site, Student

    families = max(users // 3, 1)
    users = 3 * families
    folder = tempfile.mkdtemp(prefix="bench-roster-")
    write_roster(folder, families)
    app = dataset.app_for(url)
    actor = ledger.Actor.system("bench")
    with app.app_context():
        db.create_all()
        org = Organization(
            name="Bench District", texting_number="+12025550100", notification_email="o@x.org"
        )
        db.session.add(org)
        db.session.add_all([Site(organization=org, name=n) for n in ("Oak Elementary",)])
        db.session.add(Site(organization=org, name="Pine Elementary"))
        db.session.commit()
        org_id = org.id

        def commit(_done, _report):
            db.session.commit()

        timings = []
        for _ in range(2):  # the import, then the same roster again (all unchanged)
            org = db.session.get(Organization, org_id)
            started = time.perf_counter()
            report = roster.import_path(org, folder, actor=actor, on_chunk=commit)
            timings.append(time.perf_counter() - started)
            assert report.rejected == 0, report.rows[:5]
        assert report.counts["unchanged"] == users, report.counts
        people = db.session.scalar(sa.select(sa.func.count()).select_from(Contact))
        people += db.session.scalar(sa.select(sa.func.count()).select_from(Student))
        events = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
        assert people == users and events == users, (people, events)
        sites = list(db.session.scalars(sa.select(Site.id).order_by(Site.id)))
        db.session.remove()
        bare_s = _bare_executemany(db.engine, org_id, sites, families)
        db.engine.dispose()
    shutil.rmtree(folder)
    import_s, again_s = timings
    print(
        f"  {users:,} users: import {import_s:.2f} s, again (unchanged) {again_s:.2f} s, "
        f"bare executemany {bare_s:.2f} s"
    )
    bare = users / bare_s
    return [
        Figure(
            f"roster import {users:,} users", users / import_s, "rows/s", bare, "bare executemany"
        ),
        Figure("  the same roster again", users / again_s, "rows/s", bare, "bare executemany"),
    ]


def _bare_executemany(engine, org_id: int, sites: list[int], families: int) -> float:
    """Seconds to insert the same people (families, students, contacts, phones, emails) through
    the driver's executemany, chunk by chunk with a commit each: the floor the database sets."""
    from consent.roster import CHUNK

    now = datetime(2026, 12, 1, 12, 0, 0)
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    stamp = str(now) if sqlite else now

    def insert(cursor, table: str, columns: str, rows: list[tuple]) -> None:
        marks = ", ".join([mark] * len(rows[0]))
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)  # noqa: S608

    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT coalesce(max(id), 0) FROM families")
        base_family = cursor.fetchone()[0] + 1_000_000
        per_chunk = max(CHUNK // 3, 1)
        started = time.perf_counter()
        for start in range(0, families, per_chunk):
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            span = range(start, min(start + per_chunk, families))
            insert(
                cursor,
                "families",
                "id, organization_id, name, created_at",
                [(base_family + f, org_id, f"Family{f}", stamp) for f in span],
            )
            kid_base, parent_base = 10_000_000 + 3 * start, 20_000_000 + 3 * start
            insert(
                cursor,
                "students",
                "id, family_id, site_id, external_id, sourced_id, active, first_name, last_name, "
                "grade, enrollment_status, language, created_at",
                [
                    (kid_base + f, base_family + f, sites[f % 2], f"S-{f}", f"bs{f}", True)
                    + (f"Kid{f}", f"Family{f}", "05", "enrolled", "en", stamp)
                    for f in span
                ],
            )
            contacts = [
                (parent_base + 2 * f + i, base_family + f, f"P-{f}-{i}", f"b{i}{f}", True)
                + (first, f"Family{f}", "Parent", i + 1, "en", stamp)
                for f in span
                for i, first in enumerate(("Mom", "Dad"))
            ]
            insert(
                cursor,
                "contacts",
                "id, family_id, external_id, sourced_id, active, first_name, last_name, "
                "relationship_to_student, position, language, created_at",
                contacts,
            )
            phones = [(None, kid_base + f, cell(3 * f), "cell", True) for f in span]
            phones += [(c[0], None, cell(c[0]), "cell", True) for c in contacts]
            insert(cursor, "phones", "contact_id, student_id, number, kind, is_primary", phones)
            insert(
                cursor,
                "email_addresses",
                "contact_id, student_id, address",
                [(c[0], None, f"{c[3]}@example.org") for c in contacts],
            )
            connection.commit()
        elapsed = time.perf_counter() - started
        cursor.close()
    finally:
        connection.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    from bench._report import table

    args = arguments("python -m bench.roster_import", __doc__.splitlines()[0], argv)
    users = max(int(USERS * args.scale), 3)
    for value in args.database:
        url, drop = scratch_database(value)
        try:
            print(table(measure(url, users), engine_name(url)))
        finally:
            drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
