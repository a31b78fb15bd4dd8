"""The database part of an opt-out import: preview a file without writing, then import it.

The file is read by consent/import_reader.py (streamed, row by row). Phones go to text and/or voice,
emails to email; "all" means every channel that fits the address. The import writes through
`ledger.opt_out_many` in chunks of CHUNK rows with a commit per chunk, so a 100,000-row
file never holds one long transaction (on SQLite, another writer waits at most one chunk); an
ImportBatch keeps the counts and a bounded report (every count, plus the first rejected rows
with their reasons). Each event's evidence names the file, the row and the batch.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import BinaryIO

import sqlalchemy as sa

from consent import jobs, ledger
from consent.database import begin_write, is_one_of, org_is
from consent.extensions import db
from consent.import_reader import ImportFileError, ImportRow, Layout, _records, read_rows
from consent.models import (
    Channel,
    ConsentState,
    ImportBatch,
    ImportMapping,
    Organization,
    Source,
    Status,
)
from consent.words import CHANNEL_WORDS

__all__ = [
    "CHANNEL_CHOICES",
    "ImportFileError",
    "ImportReport",
    "RowResult",
    "channels_for",
    "import_file",
    "preview_file",
]

CHANNEL_CHOICES = ("text", "voice", "email", "all")
# Rows per transaction: big enough that commits and index pages are shared by many rows, small
# enough that another writer on SQLite waits at most one chunk (bench/import_csv.py).
CHUNK = 5_000
REPORT_ROWS = 1_000  # rejected rows kept in the stored report (the counts are always complete)
PREVIEW_GOOD_ROWS = (
    100  # rows without a problem shown in a preview (all problem rows up to REPORT_ROWS)
)

# A preview of a file bigger than this is a background job (its page shows the progress), not
# part of the request; below both, the preview is shown at once.
PREVIEW_JOB_ROWS = 5_000
PREVIEW_INLINE_BYTES = 1024 * 1024  # bigger files go to the job without counting their rows

IMPORTED = "imported"
ALREADY = "already"
REJECTED = "rejected"
IGNORED = "ignored"
WORDS = {
    IMPORTED: "Imported",
    ALREADY: "Already opted out",
    REJECTED: "Rejected",
    IGNORED: "Ignored",
}
PREVIEW_WORDS = {
    IMPORTED: "Will be imported",
    ALREADY: "Already opted out",
    REJECTED: "Rejected",
    IGNORED: "Ignored",
}
JOB_KIND = "optout_import"
_RANK = {IMPORTED: 0, ALREADY: 1, REJECTED: 2, IGNORED: 3}


@cache
def channels_for(kind: str, choice: str) -> tuple[Channel, ...]:
    """The channels a row of this kind ("phone" or "email") is opted out of for the chosen channels."""
    if choice not in CHANNEL_CHOICES + ("both",):
        raise ValueError(f"unknown channel choice {choice!r}")
    if kind == "email":
        return (Channel.EMAIL,) if choice in ("email", "all") else ()
    if choice in ("all", "both"):
        return (Channel.TEXT, Channel.VOICE)
    return (Channel(choice),) if choice in ("text", "voice") else ()


def _mismatch(kind: str, choice: str) -> str:
    if kind == "email":
        if choice == "both":
            return "An email address cannot be opted out of texts and calls"
        return f"An email address cannot be opted out of {_choice_words(choice)}"
    return "A phone number cannot be opted out of email"


def _choice_words(choice: str) -> str:
    return CHANNEL_WORDS.get(choice, choice)


class ImportRefused(Exception):
    """The ledger refused the import's opt-outs (its reason is the message); the import stops
    there, keeping the chunks already committed."""


@dataclass
class RowResult:
    """What became of one row: imported, already opted out, or rejected with the reason."""

    row_number: int
    raw: str
    address: str | None
    outcome: str  # IMPORTED | ALREADY | REJECTED
    reason: str | None = None

    @property
    def words(self) -> str:
        return WORDS[self.outcome]

    def as_dict(self) -> dict:
        return {
            "row": self.row_number,
            "raw": self.raw[:200],
            "address": self.address,
            "outcome": self.outcome,
            "reason": self.reason,
        }


@dataclass
class ImportReport:
    """Counts of a preview or an import, and the rows worth showing (bounded).

    The counts are of the file's rows: each row is imported (any of its addresses was),
    already opted out, rejected (with the reason of each address), or ignored (blank, a title
    or the header), so the four always add up to `total`, the file's rows."""

    filename: str
    choice: str
    imported: int = 0
    already: int = 0
    rejected: int = 0
    ignored: int = 0
    rows: list[RowResult] = field(default_factory=list)
    shown_good: int = 0
    kept_rejected: int = 0
    batch_id: int | None = None
    stopped: str | None = None  # the file's error when it broke part-way through
    last_row: int = 0  # the last row of the file counted (committed, for an import)

    @property
    def total(self) -> int:
        return self.imported + self.already + self.rejected + self.ignored

    def count_row(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def keep(self, result: RowResult, keep_good: int = 0) -> None:
        if result.outcome == REJECTED:
            if self.kept_rejected < REPORT_ROWS:
                self.kept_rejected += 1
                self.rows.append(result)
        elif result.outcome != IGNORED and self.shown_good < keep_good:
            self.shown_good += 1
            self.rows.append(result)

    def count(self, result: RowResult, keep_good: int = 0) -> None:
        """Count one address's result as its own row (kept for callers of one cell a row)."""
        self.count_row(result.outcome)
        self.keep(result, keep_good)

    def as_dict(self) -> dict:
        return {
            "filename": self.filename,
            "choice": self.choice,
            "imported": self.imported,
            "already": self.already,
            "rejected": self.rejected,
            "ignored": self.ignored,
            "total": self.total,
            "last_row": self.last_row,
            "batch_id": self.batch_id,
            "stopped": self.stopped,
            "rejected_rows": [r.as_dict() for r in self.rows if r.outcome == REJECTED],
            "good_rows": [r.as_dict() for r in self.rows if r.outcome != REJECTED],
            "rejected_rows_kept": REPORT_ROWS,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ImportReport:
        report = cls(data.get("filename", ""), data.get("choice", "all"))
        for name in (IMPORTED, ALREADY, REJECTED, IGNORED):
            setattr(report, name, int(data.get(name) or 0))
        report.last_row = int(data.get("last_row") or 0)
        report.batch_id = data.get("batch_id")
        for kept in (data.get("rejected_rows") or []) + (data.get("good_rows") or []):
            result = RowResult(
                kept["row"], kept.get("raw", ""), kept.get("address"), kept["outcome"],
                kept.get("reason"),
            )  # fmt: skip
            report.rows.append(result)
            if result.outcome == REJECTED:
                report.kept_rejected += 1
            else:
                report.shown_good += 1
        return report

    def add(self, results: list[RowResult], keep_good: int = 0) -> None:
        """Count a chunk's results, one outcome per row of the file (results of one row are
        next to each other)."""
        by_row: dict[int, str] = {}
        rank = _RANK
        for result in results:
            number, outcome = result.row_number, result.outcome
            before = by_row.get(number)
            if before is None or rank[outcome] < rank[before]:
                by_row[number] = outcome
            self.keep(result, keep_good)
        for outcome, rows in Counter(by_row.values()).items():
            setattr(self, outcome, getattr(self, outcome) + rows)
        if by_row:
            self.last_row = max(self.last_row, max(by_row))


def _chunks(rows: Iterable[ImportRow], size: int) -> Iterator[list[ImportRow]]:
    """Chunks of about `size` rows, never splitting the addresses of one row of the file. A
    file that breaks part-way yields the rows read before the break, then raises."""
    chunk: list[ImportRow] = []
    try:
        for row in rows:
            if len(chunk) >= size and row.row_number != chunk[-1].row_number:
                yield chunk
                chunk = []
            chunk.append(row)
    except ImportFileError:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


def _opted_out(org_id: int, channel: Channel, addresses: list[str]) -> set[str]:
    if not addresses:
        return set()
    return set(
        db.session.scalars(
            sa.select(ConsentState.address).where(
                org_is(ConsentState.organization_id, org_id),
                ConsentState.channel == channel,
                is_one_of(ConsentState.address, addresses),
                ConsentState.status == Status.OPTED_OUT,
            )
        )
    )


def _wanted(row: ImportRow, choice: str) -> tuple[tuple[Channel, ...], str | None]:
    """The channels for a row (its own channel column first, else the chosen channels), or the
    reason it is rejected."""
    if row.ignored:
        return (), None
    if row.problem:
        return (), row.problem
    choice = row.channel or choice
    channels = channels_for(row.kind or "", choice)
    if not channels:
        return (), _mismatch(row.kind or "", choice)
    return channels, None


def _read(stream, filename, org, region, max_bytes, layout):
    layout = layout or {}
    return read_rows(
        stream,
        filename,
        region=region or org.default_region,
        roles=layout.get("roles"),
        header_row=layout.get("header_row"),
        with_ignored=True,
        **_limit(max_bytes),
    )


def _result(row: ImportRow, outcome: str, reason: str | None = None) -> RowResult:
    return RowResult(row.row_number, row.raw, row.address, outcome, reason or row.ignored)


def preview_file(
    org: Organization,
    stream: BinaryIO,
    filename: str,
    choice: str,
    *,
    region: str | None = None,
    max_bytes: int | None = None,
    layout: dict | None = None,
    on_row: Callable[[RowResult], None] | None = None,
    on_chunk: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """What an import of this file would do, row by row, without writing anything.

    `layout` ({"header_row", "roles"}) is a mapping of the columns chosen by staff.
    `on_chunk` is called with the report after each chunk (a job's progress).
    Raises ImportFileError for a file that cannot be read (its message is for staff).
    """
    report = ImportReport(filename=filename, choice=choice)
    rows = _read(stream, filename, org, region, max_bytes, layout)
    for chunk in _chunks(rows, CHUNK):
        wanted = [_wanted(row, choice) for row in chunk]
        done: dict[Channel, set[str]] = {}
        for channel in Channel:
            addresses = [
                r.address for r, (chs, _) in zip(chunk, wanted, strict=True) if channel in chs
            ]
            done[channel] = _opted_out(org.id, channel, addresses)
        results = []
        for row, (channels, reason) in zip(chunk, wanted, strict=True):
            if row.ignored:
                result = _result(row, IGNORED)
            elif reason:
                result = _result(row, REJECTED, reason)
            elif all(row.address in done[ch] for ch in channels):
                result = _result(row, ALREADY)
            else:
                result = _result(row, IMPORTED)
            results.append(result)
            if on_row:
                on_row(result)
        report.add(results, keep_good=PREVIEW_GOOD_ROWS)
        if on_chunk:
            on_chunk(report)
    return report


def import_file(
    org: Organization,
    stream: BinaryIO,
    filename: str,
    choice: str,
    *,
    actor: ledger.Actor,
    note: str | None = None,
    origin: ledger.Origin | None = None,
    region: str | None = None,
    max_bytes: int | None = None,
    chunk_size: int = CHUNK,
    layout: dict | None = None,
    on_row: Callable[[RowResult], None] | None = None,
    report: ImportReport | None = None,
    on_chunk: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Opt out every good row of the file on the chosen channels, committing per chunk.

    Records an ImportBatch (counts and the bounded report) and returns the report. A file that
    cannot be read at all raises ImportFileError before anything is written; one that breaks
    part-way keeps the chunks already imported and says where it stopped (`report.stopped`).

    To resume (a job whose worker died), pass the `report` as of its last committed chunk: the
    rows up to `report.last_row` are skipped, the rest imported into the same batch. With
    `on_chunk`, it is called after each chunk's writes and commits them (with the job's
    progress); otherwise each chunk is committed here.
    """
    if choice not in CHANNEL_CHOICES:
        raise ValueError(f"unknown channel choice {choice!r}")
    rows = _read(stream, filename, org, region, max_bytes, layout)
    if report is None or report.batch_id is None:
        batch = ImportBatch(
            organization_id=org.id,
            filename=filename[:300],
            channels=choice,
            created_by_user_id=actor.user_id,
        )
        # SQLite: each write unit takes the write lock before it writes (see begin_write); a
        # read transaction that starts writing after another writer committed fails as "locked".
        begin_write()
        db.session.add(batch)
        db.session.commit()
        report = ImportReport(filename=filename, choice=choice, batch_id=batch.id)
    start = report.last_row
    note = (note or "").strip() or None
    chunks = _chunks((r for r in rows if r.row_number > start), chunk_size)
    ahead = _LookAhead(_planned(chunk, choice, report.batch_id, filename, note) for chunk in chunks)
    try:
        for planned in ahead:
            begin_write()
            results = _import_chunk(org, planned, actor, origin, meanwhile=ahead.fill)
            report.add(results)
            if on_row:
                for result in results:
                    on_row(result)
            if on_chunk:
                on_chunk(report)
            else:
                db.session.commit()
    except (ImportFileError, ImportRefused) as exc:
        db.session.rollback()
        report.stopped = str(exc)
    begin_write()
    batch = db.session.get(ImportBatch, report.batch_id)
    batch.imported, batch.already, batch.rejected = report.imported, report.already, report.rejected
    batch.report = report.as_dict()
    db.session.commit()
    return report


def _limit(max_bytes: int | None) -> dict:
    return {"max_bytes": max_bytes} if max_bytes else {}


class _LookAhead:
    """An iterator one item ahead of its caller: `fill()` takes the next item (and keeps the
    exception taking it raised) and iterating hands it over, raising that exception in the
    caller's thread, in its place. The import gives `fill` to the ledger, which runs it in a
    thread of its own while PostgreSQL finishes a chunk's rows: the next chunk is read from
    the file then, not after. One thread at a time: the ledger joins it before returning."""

    _EMPTY = object()

    def __init__(self, items: Iterator):
        self._items = items
        self._next: tuple = (self._EMPTY, None)

    def fill(self) -> None:
        if self._next[0] is self._EMPTY:
            try:
                self._next = (next(self._items, None), None)
            except Exception as exc:  # raised where the caller takes this item
                self._next = (None, exc)

    def __iter__(self) -> Iterator:
        while True:
            self.fill()
            (item, error), self._next = self._next, (self._EMPTY, None)
            if error is not None:
                raise error
            if item is None:
                return
            yield item


@dataclass
class _Planned:
    """A chunk of the file's rows, each with its channels or the reason it is rejected, and the
    opt-outs it asks of each channel."""

    rows: list[ImportRow]
    wanted: list[tuple[tuple[Channel, ...], str | None]]
    per_channel: dict[Channel, list[ledger.BulkRow]]


def _planned(chunk: list[ImportRow], choice, batch_id, filename, note) -> _Planned:
    per_channel: dict[Channel, list[ledger.BulkRow]] = {channel: [] for channel in Channel}
    wanted = []
    for row in chunk:
        channels, reason = _wanted(row, choice)
        wanted.append((channels, reason))
        if reason or row.ignored:
            continue
        row_note = "; ".join(part for part in (note, row.note) if part) or None
        evidence = {"file": filename, "row": row.row_number, "batch": batch_id}
        if row.channel:
            evidence["type"] = row.channel
        if row.date:
            evidence["date"] = row.date[:40]
        bulk = ledger.BulkRow(row.address, evidence, row_note)
        for channel in channels:
            per_channel[channel].append(bulk)
    return _Planned(chunk, wanted, per_channel)


def _import_chunk(org, planned: _Planned, actor, origin, meanwhile=None) -> list[RowResult]:
    """Write a planned chunk's opt-outs; its rows' results. `meanwhile` is handed to the
    ledger (see _LookAhead)."""
    outcomes: dict[Channel, ledger.BulkOutcome] = {}
    for channel, bulk_rows in planned.per_channel.items():
        if bulk_rows:
            outcomes[channel] = ledger.opt_out_many(
                org, channel, bulk_rows, source=Source.IMPORT, actor=actor, origin=origin,
                meanwhile=meanwhile,
            )  # fmt: skip
            if outcomes[channel].refused:
                raise ImportRefused(outcomes[channel].reason)
    results = []
    for row, (channels, reason) in zip(planned.rows, planned.wanted, strict=True):
        if row.ignored:
            results.append(_result(row, IGNORED))
            continue
        if reason:
            results.append(_result(row, REJECTED, reason))
            continue
        done = [outcomes[channel].get(row.address) for channel in channels]
        outcome = IMPORTED if "imported" in done else ALREADY
        results.append(_result(row, outcome))
    return results


# --- remembered column mappings ------------------------------------------------------------


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def saved_roles(org: Organization, layout: Layout) -> list[str] | None:
    """The column roles staff chose for the last file with these same headers, if any."""
    found = db.session.scalars(
        sa.select(ImportMapping).where(
            ImportMapping.organization_id == org.id,
            ImportMapping.headers_digest == _digest(layout.key),
        )
    ).first()
    return list(found.roles) if found else None


def remember_roles(org: Organization, layout: Layout, roles: list[str]) -> None:
    """Keep the mapping for the next file with the same headers (the caller commits)."""
    digest = _digest(layout.key)
    found = db.session.scalars(
        sa.select(ImportMapping).where(
            ImportMapping.organization_id == org.id, ImportMapping.headers_digest == digest
        )
    ).first()
    if found is None:
        found = ImportMapping(organization_id=org.id, headers_digest=digest)
        db.session.add(found)
    found.headers = list(layout.headers)
    found.roles = list(roles)


# --- as a background job -------------------------------------------------------------------


def count_rows(content, filename: str) -> int:
    """The file's rows (for a job's progress bar), read without normalizing anything: of
    bytes, or of a binary file read from where it is (and left open)."""
    stream = io.BytesIO(content) if isinstance(content, bytes | bytearray) else content
    start = stream.tell()
    size = stream.seek(0, io.SEEK_END) - start
    stream.seek(start)
    records, close = _records(stream, filename, size + 1)
    try:
        last = 0
        for number, _cells in records:
            last = number
        return last
    finally:
        close()


def preview_in_background(content: bytes, filename: str, rows_limit: int | None = None) -> bool:
    """Whether this file's preview is a job: over PREVIEW_INLINE_BYTES, or over
    `rows_limit` (PREVIEW_JOB_ROWS) rows."""
    if len(content) > PREVIEW_INLINE_BYTES:
        return True
    limit = PREVIEW_JOB_ROWS if rows_limit is None else rows_limit
    return count_rows(content, filename) > limit


def enqueue(
    org: Organization,
    content: bytes,
    filename: str,
    choice: str,
    *,
    dry_run: bool,
    layout: dict | None = None,
    note: str | None = None,
    user=None,
    origin: ledger.Origin | None = None,
    file_id: int | None = None,
):
    """Queue a preview (dry run) or an import of this file as a job (the caller commits)."""
    from consent.models import JobFile

    stored = db.session.get(JobFile, file_id) if file_id else None
    if stored is None:
        stored = jobs.store_file(org.id, filename, content)
    # A big file's rows are counted by the worker, not in the request (0: not counted yet).
    if stored.size > PREVIEW_INLINE_BYTES:
        total = 0
    else:
        with jobs.file_reader(stored.id) as source:
            total = count_rows(source, filename)
    origin = origin or ledger.Origin()
    return jobs.enqueue(
        JOB_KIND,
        org.id,
        params={
            "dry_run": dry_run,
            "filename": filename,
            "choice": choice,
            "layout": layout or {},
            "note": note or "",
            **origin.as_params(),
        },
        created_by_user_id=user.id if user else None,
        file=stored,
        total=total,
    )


@jobs.register(JOB_KIND)
def _run_job(job_run: jobs.JobRun) -> dict:
    from consent.models import User

    job = job_run.job
    params = job_run.params
    org = db.session.get(Organization, job.organization_id)
    user = db.session.get(User, job.created_by_user_id) if job.created_by_user_id else None
    actor = ledger.Actor.for_user(user) if user else ledger.Actor.system("opt-out import")
    origin = ledger.Origin.of_params(params)
    filename = params.get("filename") or "import"
    choice = params.get("choice") or "all"
    layout = params.get("layout") or None
    # The upload, read back part by part into a spooled temporary file (not held whole).
    with job_run.file_reader() as source:
        return _run_on(job_run, org, source, filename, choice, layout, actor, origin)


def _run_on(job_run, org, source, filename, choice, layout, actor, origin) -> dict:
    """The import (or preview) of the job's file, read from `source`."""
    from flask import current_app

    job = job_run.job
    params = job_run.params
    size = source.seek(0, io.SEEK_END)
    source.seek(0)
    total = job.total or None
    try:
        if total is None:
            total = count_rows(source, filename)
            source.seek(0)
            job_run.progress(job_run.resumed_from, total=total)
        if params.get("dry_run"):
            # A preview writes nothing: a resumed one starts again from the top.
            report = preview_file(
                org, source, filename, choice, layout=layout,
                max_bytes=size + 1,
                on_chunk=lambda r: job_run.progress(r.last_row, total=total),
            )  # fmt: skip
            db.session.rollback()
            result = report.as_dict() | {"dry_run": True}
            job_run.progress(report.total, total=report.total, result=result)
            return result
        saved = job_run.saved_result
        report = ImportReport.from_dict(saved) if saved.get("batch_id") else None
        report = import_file(
            org,
            source,
            filename,
            choice,
            actor=actor,
            note=params.get("note"),
            origin=origin,
            layout=layout,
            max_bytes=size + 1,
            chunk_size=current_app.config.get("IMPORT_CHUNK", CHUNK),
            report=report,
            on_chunk=lambda r: job_run.progress(r.last_row, total=total, result=r.as_dict()),
        )
    except ImportFileError as exc:
        raise jobs.JobError(str(exc)) from None
    job_run.progress(report.total, total=report.total, result=report.as_dict())
    return report.as_dict()
