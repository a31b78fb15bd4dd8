"""Benchmark: importing a 100,000-row CSV of phone numbers through consent/optout_import.py.

Figure: rows per second of `optout_import.import_file` (read and normalize each row, then
`ledger.opt_out_many` in chunks of 1,000 with a commit each: one event per address, state
version 1). Baseline: a bare executemany of the same, already-normalized rows into
consent_states (no parsing, no events). Also shown: the file reading alone (consent.importfile),
and the database part alone (the same chunks through opt_out_many, addresses given).
Budget (DESIGN.md): ≥ 20,000 rows/s.

    python -m bench.import_csv --database postgresql://postgres@127.0.0.1:5432/b_adminlist
    python -m bench.import_csv --rows 100000          # temporary SQLite file
"""

from __future__ import annotations

import os
import tempfile
import time

import sqlalchemy as sa

from bench._optouts_setup import arguments, database_url, fresh_app, print_table

BUDGET_ROWS_PER_S = 20_000


def number(i: int) -> str:
    return f"+1{2012000000 + i * 7:010d}"


def write_csv(path: str, n: int) -> None:
    """A CSV of n phone numbers under a "Phone" header, in the forms staff files have."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("Phone,Note\r\n")
        for i in range(n):
            e164 = number(i)
            national = e164[2:]
            form = i % 3
            if form == 0:
                shown = e164
            elif form == 1:
                shown = f"({national[:3]}) {national[3:6]}-{national[6:]}"
            else:
                shown = f"{national[:3]}-{national[3:6]}-{national[6:]}"
            out.write(f"{shown},row {i}\r\n")


def reset(db) -> None:
    from consent.models import ConsentEvent, ConsentState, ImportBatch

    db.session.execute(sa.update(ConsentState).values(last_event_id=None))
    db.session.execute(sa.delete(ConsentState))
    db.session.execute(sa.text(f"DELETE FROM {ConsentEvent.__tablename__}"))  # noqa: S608
    db.session.execute(sa.delete(ImportBatch))
    db.session.commit()


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 100_000)
    url = database_url(args.database)
    app = fresh_app(url)
    from consent import ledger, optout_import
    from consent.extensions import db
    from consent.importfile import read_rows
    from consent.models import ConsentEvent, ConsentState, Organization, Source

    folder = tempfile.mkdtemp(prefix="bench-import-")
    path = os.path.join(folder, "optouts.csv")
    write_csv(path, args.rows)
    with app.app_context():
        org = Organization(
            name="Bench District",
            texting_number="+12025550100",
            notification_email="office@example.org",
        )
        db.session.add(org)
        db.session.commit()
        actor = ledger.Actor.system("bench")

        started = time.perf_counter()
        with open(path, "rb") as stream:
            parsed = sum(1 for row in read_rows(stream, "optouts.csv") if row.address)
        parse_s = time.perf_counter() - started
        assert parsed == args.rows

        started = time.perf_counter()
        with open(path, "rb") as stream:
            report = optout_import.import_file(org, stream, "optouts.csv", "text", actor=actor)
        import_s = time.perf_counter() - started
        assert report.imported == args.rows, report.as_dict()
        events = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
        assert events == args.rows

        reset(db)
        started = time.perf_counter()
        for start in range(0, args.rows, optout_import.CHUNK):
            rows = [
                ledger.BulkRow(number(i), {"file": "optouts.csv", "row": i + 2, "batch": 0}, None)
                for i in range(start, min(start + optout_import.CHUNK, args.rows))
            ]
            ledger.opt_out_many(org, "text", rows, source=Source.IMPORT, actor=actor)
            db.session.commit()
        ledger_s = time.perf_counter() - started

        reset(db)
        values = [
            {
                "organization_id": org.id,
                "channel": "text",
                "address": number(i),
                "sort_key": number(i)[1:].rjust(15, "0"),
                "digits": number(i)[2:],
                "status": "opted_out",
                "carrier_block": False,
                "source": "import",
                "changed_by": "bench",
                "version": 1,
            }
            for i in range(args.rows)
        ]
        started = time.perf_counter()
        for start in range(0, args.rows, optout_import.CHUNK):
            db.session.execute(sa.insert(ConsentState), values[start : start + optout_import.CHUNK])
            db.session.commit()
        bare_s = time.perf_counter() - started
        engine = db.engine.dialect.name

    n = args.rows
    bare = n / bare_s
    print(
        f"{n:,} rows; import {import_s:.2f} s, file reading alone {parse_s:.2f} s, "
        f"opt_out_many alone {ledger_s:.2f} s, bare executemany {bare_s:.2f} s"
    )
    print_table(
        engine,
        [
            (
                f"import CSV, rows/s ({n:,} rows)",
                n / import_s,
                bare,
                "/s",
                f">= {BUDGET_ROWS_PER_S:,}/s",
                n / import_s >= BUDGET_ROWS_PER_S,
            ),
            ("  file reading alone, rows/s", n / parse_s, bare, "/s", "(part)", None),
            ("  opt_out_many alone, rows/s", n / ledger_s, bare, "/s", "(part)", None),
        ],
    )


if __name__ == "__main__":
    main()
