"""Benchmark: importing a 100,000-row CSV of phone numbers through consent/imports.py.

    python -m bench.import_csv [--database URL ...] [--scale S] [--rows N]

Into a second organization of the shared data set's database (bench.dataset.import_org), so
the tables hold their million opt-outs and two million events while it runs. Figure: rows per
second of `imports.import_file` (read and normalize each row, then `ledger.opt_out_many`
in chunks of imports.CHUNK with a commit each: one event per address, state version 1).
Baseline: the driver's own executemany (sqlite3, psycopg; no SQLAlchemy) of the same,
already-normalized rows into consent_states alone (no parsing, no events, no checks), in the
same chunks, each sorted as the import sorts it. Also shown: the file reading alone (consent.import_reader), and the
database part alone (the same chunks through opt_out_many, addresses given).
Budget (README "Performance"): >= 20,000 rows/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import datetime

import sqlalchemy as sa

from bench import dataset
from bench._report import Figure, arguments, run_per_database

BUDGET_ROWS_PER_S = 20_000


def measure(url: str, scale: float, rows: int) -> list[Figure]:
    from consent import imports, ledger
    from consent.addresses import normalize_phone
    from consent.extensions import db
    from consent.import_reader import read_rows
    from consent.models import ConsentEvent, Organization, Source

    app = dataset.app_for(url)
    ds = dataset.ensure(app, scale)
    folder = tempfile.mkdtemp(prefix="bench-import-")
    path = os.path.join(folder, "optouts.csv")
    dataset.write_import_csv(path, ds.layout, rows)
    org_id = dataset.import_org(app)
    actor = ledger.Actor.system("bench")
    with app.app_context():
        started = time.perf_counter()
        with open(path, "rb") as stream:
            numbers = [row.address for row in read_rows(stream, "optouts.csv") if row.address]
        parse_s = time.perf_counter() - started
        assert len(numbers) == rows, len(numbers)
        numbers = [normalize_phone(n) for n in numbers]

        org = db.session.get(Organization, org_id)
        started = time.perf_counter()
        with open(path, "rb") as stream:
            report = imports.import_file(org, stream, "optouts.csv", "text", actor=actor)
        import_s = time.perf_counter() - started
        assert report.imported == rows, report.as_dict()
        events = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(ConsentEvent)
            .where(ConsentEvent.organization_id == org_id)
        )
        assert events == rows, events
        db.session.remove()

    dataset.import_org(app)
    with app.app_context():
        org = db.session.get(Organization, org_id)
        started = time.perf_counter()
        for start in range(0, rows, imports.CHUNK):
            chunk = [
                ledger.BulkRow(numbers[i], {"file": "optouts.csv", "row": i + 2, "batch": 0}, None)
                for i in range(start, min(start + imports.CHUNK, rows))
            ]
            ledger.opt_out_many(org, "text", chunk, source=Source.IMPORT, actor=actor)
            db.session.commit()
        ledger_s = time.perf_counter() - started
        db.session.remove()

    dataset.import_org(app)
    with app.app_context():
        bare_s = _bare_executemany(org_id, numbers)
        db.session.remove()
    dataset.import_org(app)
    os.remove(path)
    print(
        f"  {rows:,} rows: import {import_s:.2f} s, file reading alone {parse_s:.2f} s, "
        f"opt_out_many alone {ledger_s:.2f} s, bare executemany {bare_s:.2f} s"
    )
    bare = rows / bare_s
    return [
        Figure(
            f"import {rows:,}-row CSV",
            rows / import_s,
            "rows/s",
            bare,
            "bare executemany",
            BUDGET_ROWS_PER_S,
            at_least=True,
        ),
        Figure("  file reading alone", rows / parse_s, "rows/s", bare, "bare executemany"),
        Figure("  opt_out_many alone", rows / ledger_s, "rows/s", bare, "bare executemany"),
    ]


def _bare_executemany(org_id: int, numbers: list[str]) -> float:
    """Seconds to insert the state rows alone (no events, no parsing, no checks) through the
    driver's own executemany, in the import's chunks (each sorted, as the import sorts them)
    with a commit each: the floor that the database and its indexes set."""
    from consent.extensions import db
    from consent.imports import CHUNK

    now = datetime(2026, 11, 23, 12, 0, 0)
    rows = [
        (
            org_id,
            "text",
            n,
            n[1:].rjust(15, "0"),
            n[2:],
            "opted_out",
            False,
            "import",
            now,
            "bench",
            1,
        )
        for n in numbers
    ]
    names = (
        "organization_id, channel, address, sort_key, digits, status, carrier_block, source, "
        "changed_at, changed_by, version"
    )
    connection = db.engine.raw_connection()
    try:
        sqlite = db.engine.dialect.name == "sqlite"
        mark = "?" if sqlite else "%s"
        sql = f"INSERT INTO consent_states ({names}) VALUES ({', '.join([mark] * 11)})"  # noqa: S608
        if sqlite:
            rows = [(*row[:8], str(row[8]), *row[9:]) for row in rows]
        cursor = connection.cursor()
        started = time.perf_counter()
        for start in range(0, len(rows), CHUNK):
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(sql, sorted(rows[start : start + CHUNK], key=lambda row: row[2]))
            connection.commit()
        elapsed = time.perf_counter() - started
        cursor.close()
    finally:
        connection.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    args = arguments("python -m bench.import_csv", __doc__.splitlines()[0], argv)
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--rows", type=int, default=100_000, help="rows in the CSV")
    more, _rest = extra.parse_known_args(argv)
    return run_per_database(args, lambda url: measure(url, args.scale, more.rows))


if __name__ == "__main__":
    raise SystemExit(main())
