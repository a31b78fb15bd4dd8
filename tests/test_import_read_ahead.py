"""An import of a file that breaks part-way keeps every good row read before the break."""

from __future__ import annotations

import io

import sqlalchemy as sa

from consent import imports, ledger
from consent.extensions import db
from consent.import_reader import _MAX_LINE
from consent.models import ConsentState, ImportBatch, Status
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
