"""The database part of an opt-out import: preview a file without writing, then import it.

The file is read by consent/import_reader.py (streamed, row by row). Phones go to text and/or voice,
emails to email; "all" means every channel that fits the address. The import writes through
`ledger.opt_out_many` in chunks of CHUNK rows with a commit per chunk, so a 100,000-row
file never holds one long transaction (on SQLite, another writer waits at most one chunk); an
ImportBatch keeps the counts and a bounded report (every count, plus the first rejected rows
with their reasons). Each event's evidence names the file, the row and the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import BinaryIO

import sqlalchemy as sa

from consent import ledger
from consent.database import begin_write, org_is
from consent.extensions import db
from consent.import_reader import ImportFileError, ImportRow, read_rows
from consent.models import Channel, ConsentState, ImportBatch, Organization, Source, Status
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

IMPORTED = "imported"
ALREADY = "already"
REJECTED = "rejected"
WORDS = {IMPORTED: "Imported", ALREADY: "Already opted out", REJECTED: "Rejected"}
PREVIEW_WORDS = {IMPORTED: "Will be imported", ALREADY: "Already opted out", REJECTED: "Rejected"}


@cache
def channels_for(kind: str, choice: str) -> tuple[Channel, ...]:
    """The channels a row of this kind ("phone" or "email") is opted out of for the chosen channels."""
    if choice not in CHANNEL_CHOICES:
        raise ValueError(f"unknown channel choice {choice!r}")
    if kind == "email":
        return (Channel.EMAIL,) if choice in ("email", "all") else ()
    if choice == "all":
        return (Channel.TEXT, Channel.VOICE)
    return (Channel(choice),) if choice in ("text", "voice") else ()


def _mismatch(kind: str, choice: str) -> str:
    if kind == "email":
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
    """Counts of a preview or an import, and the rows worth showing (bounded)."""

    filename: str
    choice: str
    imported: int = 0
    already: int = 0
    rejected: int = 0
    rows: list[RowResult] = field(default_factory=list)
    shown_good: int = 0
    kept_rejected: int = 0
    batch_id: int | None = None
    stopped: str | None = None  # the file's error when it broke part-way through

    @property
    def total(self) -> int:
        return self.imported + self.already + self.rejected

    def count(self, result: RowResult, keep_good: int = 0) -> None:
        if result.outcome == IMPORTED:
            self.imported += 1
        elif result.outcome == ALREADY:
            self.already += 1
        else:
            self.rejected += 1
        if result.outcome == REJECTED:
            if self.kept_rejected < REPORT_ROWS:
                self.kept_rejected += 1
                self.rows.append(result)
        elif self.shown_good < keep_good:
            self.shown_good += 1
            self.rows.append(result)

    def as_dict(self) -> dict:
        return {
            "imported": self.imported,
            "already": self.already,
            "rejected": self.rejected,
            "stopped": self.stopped,
            "rejected_rows": [r.as_dict() for r in self.rows if r.outcome == REJECTED],
            "rejected_rows_kept": REPORT_ROWS,
        }


def _chunks(rows: Iterable[ImportRow], size: int) -> Iterator[list[ImportRow]]:
    chunk: list[ImportRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
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
                ConsentState.address.in_(addresses),
                ConsentState.status == Status.OPTED_OUT,
            )
        )
    )


def _wanted(row: ImportRow, choice: str) -> tuple[tuple[Channel, ...], str | None]:
    """The channels for a row, or the reason it is rejected."""
    if row.problem:
        return (), row.problem
    channels = channels_for(row.kind or "", choice)
    if not channels:
        return (), _mismatch(row.kind or "", choice)
    return channels, None


def preview_file(
    org: Organization,
    stream: BinaryIO,
    filename: str,
    choice: str,
    *,
    region: str | None = None,
    max_bytes: int | None = None,
    on_row: Callable[[RowResult], None] | None = None,
) -> ImportReport:
    """What an import of this file would do, row by row, without writing anything.

    Raises ImportFileError for a file that cannot be read (its message is for staff).
    """
    report = ImportReport(filename=filename, choice=choice)
    rows = read_rows(stream, filename, region=region or org.default_region, **_limit(max_bytes))
    for chunk in _chunks(rows, CHUNK):
        wanted = [_wanted(row, choice) for row in chunk]
        done: dict[Channel, set[str]] = {}
        for channel in Channel:
            addresses = [
                r.address for r, (chs, _) in zip(chunk, wanted, strict=True) if channel in chs
            ]
            done[channel] = _opted_out(org.id, channel, addresses)
        for row, (channels, reason) in zip(chunk, wanted, strict=True):
            if reason:
                result = RowResult(row.row_number, row.raw, row.address, REJECTED, reason)
            elif all(row.address in done[ch] for ch in channels):
                result = RowResult(row.row_number, row.raw, row.address, ALREADY)
            else:
                result = RowResult(row.row_number, row.raw, row.address, IMPORTED)
            report.count(result, keep_good=PREVIEW_GOOD_ROWS)
            if on_row:
                on_row(result)
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
    on_row: Callable[[RowResult], None] | None = None,
) -> ImportReport:
    """Opt out every good row of the file on the chosen channels, committing per chunk.

    Records an ImportBatch (counts and the bounded report) and returns the report. A file that
    cannot be read at all raises ImportFileError before anything is written; one that breaks
    part-way keeps the chunks already imported and says where it stopped (`report.stopped`).
    """
    if choice not in CHANNEL_CHOICES:
        raise ValueError(f"unknown channel choice {choice!r}")
    rows = read_rows(stream, filename, region=region or org.default_region, **_limit(max_bytes))
    batch = ImportBatch(
        organization_id=org.id,
        filename=filename[:300],
        channels=choice,
        created_by_user_id=actor.user_id,
    )
    # SQLite: each write unit takes the write lock before it writes (see begin_write); a read
    # transaction that starts writing after another writer committed fails as "locked".
    begin_write()
    db.session.add(batch)
    db.session.commit()
    report = ImportReport(filename=filename, choice=choice, batch_id=batch.id)
    note = (note or "").strip() or None
    try:
        for chunk in _chunks(rows, chunk_size):
            for result in _import_chunk(
                org, chunk, choice, batch.id, filename, actor, note, origin
            ):
                report.count(result)
                if on_row:
                    on_row(result)
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


def _import_chunk(org, chunk, choice, batch_id, filename, actor, note, origin) -> list[RowResult]:
    per_channel: dict[Channel, list[ledger.BulkRow]] = {channel: [] for channel in Channel}
    wanted = []
    for row in chunk:
        channels, reason = _wanted(row, choice)
        wanted.append((channels, reason))
        if reason:
            continue
        row_note = "; ".join(part for part in (note, row.note) if part) or None
        bulk = ledger.BulkRow(
            row.address, {"file": filename, "row": row.row_number, "batch": batch_id}, row_note
        )
        for channel in channels:
            per_channel[channel].append(bulk)
    outcomes: dict[Channel, ledger.BulkOutcome] = {}
    for channel, bulk_rows in per_channel.items():
        if bulk_rows:
            outcomes[channel] = ledger.opt_out_many(
                org, channel, bulk_rows, source=Source.IMPORT, actor=actor, origin=origin
            )
            if outcomes[channel].refused:
                raise ImportRefused(outcomes[channel].reason)
    results = []
    for row, (channels, reason) in zip(chunk, wanted, strict=True):
        if reason:
            results.append(RowResult(row.row_number, row.raw, row.address, REJECTED, reason))
            continue
        done = [outcomes[channel].get(row.address) for channel in channels]
        outcome = IMPORTED if "imported" in done else ALREADY
        results.append(RowResult(row.row_number, row.raw, row.address, outcome))
    return results
