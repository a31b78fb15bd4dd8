"""Benchmark: importing a 100,000-row CSV of phone numbers through consent/imports.py.

    python -m bench.import_csv [--database URL ...] [--scale S] [--rows N]

Into a second organization of the shared data set's database (bench.dataset.import_org), so
the tables hold their million opt-outs and two million events while it runs. Figure: rows per
second of `imports.import_file` (read and normalize each row, then `ledger.opt_out_many`
in chunks of imports.CHUNK with a commit each: one event per address, state version 1).
Baseline: the driver alone writing the same rows, states AND events (same columns, same
evidence and notes, event ids taken beforehand), into the same tables and indexes, in the
same chunks sorted as the import sorts them, a commit each: sqlite3's executemany on SQLite,
psycopg 3's COPY on PostgreSQL (issue 18: >= 0.6x and >= 0.7x of them). Also shown: the file
reading alone (consent.import_reader), the database part alone (the same chunks through
opt_out_many, addresses given), and how much the import grew the process's peak RSS (flat:
the same at 100,000 and 1,000,000 rows).
Budget (README "Performance"): >= 20,000 rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time

import sqlalchemy as sa

from bench import dataset
from bench._report import Figure, arguments, database_cpu_seconds, run_per_database

BUDGET_ROWS_PER_S = 20_000


def measure(url: str, scale: float, rows: int, rounds: int = 3) -> list[Figure]:
    """`rounds` rounds of the three runs (the import, opt_out_many alone, the driver's floor),
    each round in another order so none always runs on the coldest cache; medians."""
    from consent.addresses import normalize_phone
    from consent.extensions import db
    from consent.import_reader import read_rows

    app = dataset.app_for(url)
    ds = dataset.ensure(app, scale)
    folder = tempfile.mkdtemp(prefix="bench-import-")
    path = os.path.join(folder, "optouts.csv")
    size = dataset.write_import_csv(path, ds.layout, rows)
    org_id = dataset.import_org(app)
    with app.app_context():
        started = time.perf_counter()
        with open(path, "rb") as stream:
            numbers = [
                row.address
                for row in read_rows(stream, "optouts.csv", max_bytes=size + 1)
                if row.address
            ]
        parse_s = time.perf_counter() - started
        assert len(numbers) == rows, len(numbers)
        numbers = [normalize_phone(n) for n in numbers]
        db.session.remove()
    sample: dict = {}  # what the first import's rows share, for the floor to write the same

    def imported():
        result = _import(app, org_id, path, size, rows)
        if not sample:
            sample.update(_sample(app, org_id))
        return result

    runs = {
        "import": imported,
        "ledger": lambda: _ledger(app, org_id, numbers),
        "bare": lambda: _floor(app, org_id, numbers, sample),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    extra: dict[str, list] = {"cpu": [], "rss": [], "bare_cpu": []}
    loads = []
    order = list(runs)
    for round_ in range(rounds):
        loads.append(" ".join(f"{x:.2f}" for x in os.getloadavg()))
        for name in order[round_ % 3 :] + order[: round_ % 3]:
            dataset.import_org(app)
            result = runs[name]()
            if name == "import":
                seconds, cpu, rss = result
                extra["cpu"].append(cpu)
                extra["rss"].append(rss)
            elif name == "bare":
                seconds, cpu = result
                extra["bare_cpu"].append(cpu)
            else:
                seconds = result
            times[name].append(seconds)
    dataset.import_org(app)
    os.remove(path)
    import_s, ledger_s, bare_s = (statistics.median(times[n]) for n in ("import", "ledger", "bare"))
    floor = "COPY" if url.startswith("postgresql") else "bare executemany"
    spread = ", ".join(f"{n} {min(t):.2f}-{max(t):.2f} s" for n, t in times.items() if len(t) > 1)
    print(
        f"  {rows:,} rows, {rounds} rounds (load average at each: {'; '.join(loads)}): "
        f"import {import_s:.2f} s (CPU {statistics.median(extra['cpu']):.2f} s, peak RSS grew "
        f"{max(extra['rss']):.0f} MiB), file reading alone {parse_s:.2f} s, opt_out_many alone "
        f"{ledger_s:.2f} s, {floor} of states and events {bare_s:.2f} s (CPU "
        f"{statistics.median(extra['bare_cpu']):.2f} s; CPU: the process and, on PostgreSQL, "
        f"the server's, so the ratio of CPU times is that of the work, whatever the load)"
        + (f"; spread {spread}" if spread else "")
    )
    bare = rows / bare_s
    return [
        Figure(
            f"import {rows:,}-row CSV",
            rows / import_s,
            "rows/s",
            bare,
            floor,
            BUDGET_ROWS_PER_S,
            at_least=True,
        ),
        Figure(
            "  import, by CPU time",
            rows / statistics.median(extra["cpu"]),
            "rows/CPU-s",
            rows / statistics.median(extra["bare_cpu"]),
            f"{floor}, by CPU time",
        ),
        Figure("  file reading alone", rows / parse_s, "rows/s", bare, floor),
        Figure("  opt_out_many alone", rows / ledger_s, "rows/s", bare, floor),
        Figure(f"  import peak RSS growth ({rows:,} rows)", max(extra["rss"]), "MiB"),
    ]


def _import(app, org_id: int, path: str, size: int, rows: int) -> tuple[float, float, float]:
    """The import of the file: (seconds, CPU seconds, MiB the process's peak RSS grew)."""
    from consent import imports, ledger
    from consent.extensions import db
    from consent.models import ConsentEvent, Organization

    with app.app_context():
        org = db.session.get(Organization, org_id)
        rss_before = _peak_rss_mib()
        server_cpu = database_cpu_seconds(db.engine)
        cpu = time.process_time()
        started = time.perf_counter()
        with open(path, "rb") as stream:
            report = imports.import_file(
                org,
                stream,
                "optouts.csv",
                "text",
                actor=ledger.Actor.system("bench"),
                max_bytes=size + 1,
            )
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu + database_cpu_seconds(db.engine) - server_cpu
        rss_growth = _peak_rss_mib() - rss_before
        assert report.imported == rows, report.as_dict()
        events = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(ConsentEvent)
            .where(ConsentEvent.organization_id == org_id)
        )
        assert events == rows, events
        db.session.remove()
    return seconds, cpu, rss_growth


def _sample(app, org_id: int) -> dict:
    """The values the rows of the import just made share, for the floor to write."""
    from consent.extensions import db
    from consent.models import ConsentEvent, ConsentState, ImportBatch

    with app.app_context():
        event = db.session.scalars(
            sa.select(ConsentEvent).where(ConsentEvent.organization_id == org_id).limit(1)
        ).one()
        state = db.session.scalars(
            sa.select(ConsentState).where(ConsentState.organization_id == org_id).limit(1)
        ).one()
        batch = db.session.scalar(
            sa.select(sa.func.max(ImportBatch.id)).where(ImportBatch.organization_id == org_id)
        )
        sample = {
            "occurred_at": event.occurred_at,
            "actor": event.actor,
            "actor_user_id": event.actor_user_id,
            "actor_label": event.actor_label,
            "batch": batch,
            "changed_by": state.changed_by,
        }
        db.session.remove()
    return sample


def _ledger(app, org_id: int, numbers: list[str]) -> float:
    """The database part alone: the same chunks through opt_out_many, a commit each."""
    from consent import imports, ledger
    from consent.extensions import db
    from consent.models import Organization, Source

    actor = ledger.Actor.system("bench")
    with app.app_context():
        org = db.session.get(Organization, org_id)
        started = time.perf_counter()
        for start in range(0, len(numbers), imports.CHUNK):
            chunk = [
                ledger.BulkRow(numbers[i], {"file": "optouts.csv", "row": i + 2, "batch": 0}, None)
                for i in range(start, min(start + imports.CHUNK, len(numbers)))
            ]
            ledger.opt_out_many(org, "text", chunk, source=Source.IMPORT, actor=actor)
            db.session.commit()
        seconds = time.perf_counter() - started
        db.session.remove()
    return seconds


def _floor(app, org_id: int, numbers: list[str], sample: dict) -> float:
    from consent.extensions import db

    with app.app_context():
        seconds, cpu = _bare(org_id, numbers, sample)
        db.session.remove()
    return seconds, cpu


def _peak_rss_mib() -> float:
    """The process's peak resident memory so far, MiB (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bare(org_id: int, numbers: list[str], sample: dict) -> float:
    """Seconds for the driver alone to write the rows the import wrote: each address's event
    (with its evidence) and its state (version 1, pointing at the event), in the import's
    chunks (each sorted by address, as the import writes them) with a commit each, into the
    same tables with the same indexes. SQLite: sqlite3's executemany; PostgreSQL: psycopg 3's
    COPY (`cursor.copy`), the fastest way in. Event ids are taken beforehand (not timed). No
    parsing, no checks, no SQLAlchemy: the floor that the database and its indexes set."""
    from consent.extensions import db
    from consent.imports import CHUNK

    sqlite = db.engine.dialect.name == "sqlite"
    event_columns = (
        "id, organization_id, channel, address, kind, from_status, to_status, carrier_block, "
        "source, actor, actor_user_id, actor_label, occurred_at, ip, user_agent, note, evidence, "
        "state_version"
    )
    state_columns = (
        "organization_id, channel, address, sort_key, digits, status, carrier_block, source, "
        "changed_at, changed_by, changed_by_user_id, note, version, last_event_id"
    )
    now = sample["occurred_at"]
    if sqlite:
        now = str(now)
    connection = db.engine.raw_connection()
    elapsed = cpu = 0.0
    try:
        cursor = connection.cursor()
        if sqlite:
            (next_id,) = cursor.execute(
                "SELECT coalesce(max(id), 0) + 1 FROM consent_events"
            ).fetchone()
        for start in range(0, len(numbers), CHUNK):
            chunk = sorted(
                (n, i) for i, n in enumerate(numbers[start : start + CHUNK], start=start)
            )
            if sqlite:
                ids = list(range(next_id, next_id + len(chunk)))
                next_id += len(chunk)
            else:
                cursor.execute(
                    "SELECT nextval('consent_events_id_seq') FROM generate_series(1, %s)",
                    (len(chunk),),
                )
                ids = sorted(row[0] for row in cursor.fetchall())
                connection.commit()
            events = [
                (
                    event_id,
                    org_id,
                    "text",
                    n,
                    "change",
                    None,
                    "opted_out",
                    False,
                    "import",
                    sample["actor"],
                    sample["actor_user_id"],
                    sample["actor_label"],
                    now,
                    None,
                    None,
                    f"row {i}",
                    json.dumps({"file": "optouts.csv", "row": i + 2, "batch": sample["batch"]}),
                    1,
                )
                for event_id, (n, i) in zip(ids, chunk, strict=True)
            ]
            states = [
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
                    sample["changed_by"],
                    sample["actor_user_id"],
                    f"row {i}",
                    1,
                    event_id,
                )
                for event_id, (n, i) in zip(ids, chunk, strict=True)
            ]
            server_cpu = database_cpu_seconds(db.engine)
            cpu -= time.process_time()
            started = time.perf_counter()
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
                cursor.executemany(
                    f"INSERT INTO consent_events ({event_columns}) VALUES ({', '.join('?' * 18)})",  # noqa: S608
                    events,
                )
                cursor.executemany(
                    f"INSERT INTO consent_states ({state_columns}) VALUES ({', '.join('?' * 14)})",  # noqa: S608
                    states,
                )
            else:
                with cursor.copy(f"COPY consent_events ({event_columns}) FROM STDIN") as copy:  # noqa: S608
                    for row in events:
                        copy.write_row(row)
                with cursor.copy(f"COPY consent_states ({state_columns}) FROM STDIN") as copy:  # noqa: S608
                    for row in states:
                        copy.write_row(row)
            connection.commit()
            elapsed += time.perf_counter() - started
            cpu += time.process_time() + database_cpu_seconds(db.engine) - server_cpu
        cursor.close()
    finally:
        connection.close()
    return elapsed, cpu


def main(argv: list[str] | None = None) -> int:
    args = arguments("python -m bench.import_csv", __doc__.splitlines()[0], argv)
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--rows", type=int, default=100_000, help="rows in the CSV")
    extra.add_argument("--rounds", type=int, default=3, help="rounds of the three runs")
    more, _rest = extra.parse_known_args(argv)
    return run_per_database(args, lambda url: measure(url, args.scale, more.rows, more.rounds))


if __name__ == "__main__":
    raise SystemExit(main())
