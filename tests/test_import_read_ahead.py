"""The import reads its next chunk while PostgreSQL finishes the last one's rows
(imports._LookAhead, ledger_bulk._copy_new_postgresql): the same rows land, a file that breaks part-way
keeps the chunks before the break and says where, and the work handed to the ledger is done,
or its error raised, by the time the ledger returns."""

from __future__ import annotations

import io
import threading

import pytest
import sqlalchemy as sa

from consent import imports, ledger
from consent.database import is_sqlite
from consent.extensions import db
from consent.import_reader import _MAX_LINE
from consent.models import ConsentEvent, ConsentState, ImportBatch, Source, Status
from tests import factories

CHUNK = 500


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+1202555{n:04d}" for n in range(start, start + count)]


def csv_of(addresses: list[str], tail: str = "", note: str = "") -> bytes:
    lines = ["Phone,Note"] + [f"{a[2:]},{note}" for a in addresses]
    return ("\r\n".join(lines) + "\r\n" + tail).encode()


def run_import(org, stream, chunk_size=CHUNK):
    report = imports.import_file(
        org, stream, "list.csv", "text", actor=ledger.Actor.system("test"), chunk_size=chunk_size
    )
    db.session.commit()
    return report


def opted_out() -> set[str]:
    db.session.expire_all()
    return set(
        db.session.scalars(
            sa.select(ConsentState.address).where(ConsentState.status == Status.OPTED_OUT)
        )
    )


def test_every_chunk_lands_once_with_its_rows_evidence(app, monkeypatch):
    """Six chunks: every number opted out once, each event naming its own row of the file, and
    on PostgreSQL the chunks after the first are read and planned in the ledger's helper
    thread, while the server finishes the chunk before (on SQLite the import does it)."""
    org = factories.make_org()
    wanted = numbers(6 * CHUNK - 1)  # with the header row: six chunks
    planned_by = []
    plan = imports._planned

    def planned(*args):
        planned_by.append(threading.current_thread().name)
        return plan(*args)

    monkeypatch.setattr(imports, "_planned", planned)
    report = run_import(org, io.BytesIO(csv_of(wanted, note="asked by phone")))
    assert (report.imported, report.rejected, report.ignored, report.total) == (
        len(wanted), 0, 1, len(wanted) + 1,
    )  # fmt: skip
    assert opted_out() == set(wanted)
    rows = dict(
        db.session.execute(
            sa.select(ConsentEvent.address, ConsentEvent.evidence["row"].as_integer())
        ).all()
    )
    assert rows == {address: i + 2 for i, address in enumerate(wanted)}
    if is_sqlite():
        assert planned_by == ["MainThread"] * 6
    else:
        assert planned_by == ["MainThread"] + ["ledger-meanwhile_0"] * 5


def test_a_file_that_breaks_part_way_keeps_the_chunks_before_it(app):
    """A line too long to be an address, after three and a bit chunks of good rows: on
    PostgreSQL the break is read while the server finishes a chunk before it, yet, as on
    SQLite, every good row before the break is imported and committed (the rows read after
    the last full chunk included), the report and the batch say where it stopped, and nothing
    after the break is written."""
    org = factories.make_org()
    good = numbers(3 * CHUNK + 123)
    after = numbers(10, start=9000)
    tail = "9" * (_MAX_LINE + 10) + "\r\n" + "\r\n".join(a[2:] for a in after) + "\r\n"
    report = run_import(org, io.BytesIO(csv_of(good, tail)))
    assert report.stopped and "characters long" in report.stopped
    assert report.imported == len(good)
    assert opted_out() == set(good)
    batch = db.session.get(ImportBatch, report.batch_id)
    assert batch.imported == len(good) and batch.report["stopped"] == report.stopped


def test_the_ledgers_meanwhile_work_is_done_by_the_time_it_returns(app):
    """opt_out_many joins the work it was given: on PostgreSQL it runs once, in the helper,
    and is finished when the ledger returns, both for new addresses (their COPY) and for a
    chunk with a known address (whose COPY is refused and undone before the rules take the
    chunk); on SQLite it is not run. The rows are written either way."""
    org = factories.make_org()
    system = ledger.Actor.system()
    ledger.opt_out(org, "text", "+12025551999", source=Source.ADMIN, actor=system)
    db.session.commit()
    for chunk in (numbers(50), numbers(50, start=100) + ["+12025551999"]):
        runs = []

        def work(runs=runs):
            runs.append(threading.current_thread().name)
            threading.Event().wait(0.05)  # still running when the server is done
            runs.append("finished")

        rows = [ledger.BulkRow(a, {"file": "f.csv", "row": i}) for i, a in enumerate(chunk)]
        result = ledger.opt_out_many(
            org, "text", rows, source=Source.IMPORT, actor=system, meanwhile=work
        )
        assert runs == ([] if is_sqlite() else ["ledger-meanwhile_0", "finished"])
        db.session.commit()
        assert {a for a, r in result.items() if r == "imported"} == set(chunk) - {"+12025551999"}
    assert opted_out() >= set(numbers(50) + numbers(50, start=100))


def test_an_error_of_the_meanwhile_work_reaches_the_caller(app):
    """Work that raises is not lost in its thread: the ledger raises it (PostgreSQL's COPY path
    runs it), and the caller's rollback leaves nothing written."""
    if is_sqlite():
        pytest.skip("SQLite's bulk path waits on no server: it runs no work meanwhile")
    org = factories.make_org()

    def work():
        raise LookupError("the next chunk could not be read")

    rows = [ledger.BulkRow(a, {"file": "f.csv", "row": i}) for i, a in enumerate(numbers(20))]
    with pytest.raises(LookupError, match="could not be read"):
        ledger.opt_out_many(
            org, "text", rows, source=Source.IMPORT, actor=ledger.Actor.system(), meanwhile=work
        )
    db.session.rollback()
    assert opted_out() == set()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 0
