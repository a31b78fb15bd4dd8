"""The admin's reports and its dashboard's counts. Read-only.

- Students with Parent 1-4's primary phone and its text status, by site and enrollment status:
  a page costs a fixed number of queries (students, their families' contacts and phones, the
  states of those phones), never one per student.
- Parents opted out of texts, and parents opted in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from consent.addresses import format_phone
from consent.export import when
from consent.extensions import db
from consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    Contact,
    Family,
    OutboxMessage,
    Phone,
    Status,
    Student,
    utcnow,
)
from consent.people import Page
from consent.status import Shown, StatusBook

PAGE_SIZE = 100
EXPORT_CHUNK = 500
PARENT_SLOTS = (1, 2, 3, 4)


@dataclass(frozen=True)
class ParentCell:
    """Parent N of a student's family: the contact, its primary phone and that phone's text
    status (None where the family has no Parent N, or Parent N no phone)."""

    contact: Contact | None
    phone: Phone | None
    status: Shown | None

    @property
    def shown_number(self) -> str:
        return format_phone(self.phone.number) if self.phone else ""


@dataclass(frozen=True)
class StudentRow:
    student: Student
    parents: tuple[ParentCell, ...]


def student_statement(org_id: int, site_id: int | None = None, enrollment: str | None = None):
    """Students of the organization, optionally of one site and enrollment status, by name."""
    stmt = (
        sa.select(Student)
        .join(Family, Student.family_id == Family.id)
        .where(Family.organization_id == org_id)
        .order_by(Student.last_name, Student.first_name, Student.id)
    )
    if site_id:
        stmt = stmt.where(Student.site_id == site_id)
    if enrollment:
        stmt = stmt.where(Student.enrollment_status == enrollment)
    return stmt


def enrollment_statuses(org_id: int) -> list[str]:
    """The enrollment statuses in use, for the filter."""
    return list(
        db.session.scalars(
            sa.select(Student.enrollment_status)
            .join(Family, Student.family_id == Family.id)
            .where(Family.organization_id == org_id)
            .distinct()
            .order_by(Student.enrollment_status)
        )
    )


def _student_rows(org_id: int, students: list[Student]) -> list[StudentRow]:
    """Parent 1-4 of each student, in three queries for the whole batch."""
    family_ids = {s.family_id for s in students}
    contacts = (
        db.session.scalars(
            sa.select(Contact)
            .where(Contact.family_id.in_(family_ids), Contact.position.in_(PARENT_SLOTS))
            .options(selectinload(Contact.phones))
            .order_by(Contact.id)
        ).all()
        if family_ids
        else []
    )
    by_slot: dict[tuple[int, int], Contact] = {}
    for contact in contacts:
        by_slot.setdefault((contact.family_id, contact.position), contact)
    primaries = [c.primary_phone for c in contacts]
    book = StatusBook(org_id, phones=[p.number for p in primaries if p is not None])
    rows = []
    for student in students:
        cells = []
        for slot in PARENT_SLOTS:
            contact = by_slot.get((student.family_id, slot))
            phone = contact.primary_phone if contact else None
            status = book.shown(Channel.TEXT, phone.number) if phone else None
            cells.append(ParentCell(contact, phone, status))
        rows.append(StudentRow(student, tuple(cells)))
    return rows


def student_report(
    org_id: int,
    site_id: int | None = None,
    enrollment: str | None = None,
    page: int = 1,
    per_page: int = PAGE_SIZE,
) -> Page:
    """A page of the student report (no COUNT: the page knows only whether another follows)."""
    page = max(page, 1)
    stmt = student_statement(org_id, site_id, enrollment).options(selectinload(Student.site))
    students = list(db.session.scalars(stmt.offset((page - 1) * per_page).limit(per_page + 1)))
    has_next = len(students) > per_page
    return Page(_student_rows(org_id, students[:per_page]), page, has_next)


def student_report_rows(
    org_id: int, site_id: int | None = None, enrollment: str | None = None
) -> Iterator[list[str]]:
    """The whole student report for export, header first, read in chunks."""
    header = ["Student ID", "Student", "Site", "Grade", "Enrollment status"]
    for n in PARENT_SLOTS:
        header += [f"Parent {n}", f"Parent {n} primary phone", f"Parent {n} text status"]
    yield header
    stmt = (
        student_statement(org_id, site_id, enrollment)
        .options(selectinload(Student.site))
        .execution_options(yield_per=EXPORT_CHUNK)
    )
    # One server-side cursor in name order, read a chunk at a time; each chunk costs the same
    # few queries as a page.
    for partition in db.session.scalars(stmt).partitions():
        chunk = list(partition)
        for row in _student_rows(org_id, chunk):
            student = row.student
            line = [
                student.external_id or f"S{student.id}",
                student.name,
                student.site.name,
                student.grade,
                student.enrollment_status,
            ]
            for cell in row.parents:
                line += [
                    cell.contact.name if cell.contact else "",
                    cell.phone.number if cell.phone else "",
                    cell.status.words if cell.status else "",
                ]
            yield line


# --- parents by text status -----------------------------------------------------------------

PARENT_STATUSES = {"opted_out": Status.OPTED_OUT, "opted_in": Status.OPTED_IN}


def parents_statement(org_id: int, status: Status):
    """(contact, phone, state) for every contact's phone whose text status is `status`."""
    return (
        sa.select(Contact, Phone, ConsentState)
        .join(Family, Contact.family_id == Family.id)
        .join(Phone, Phone.contact_id == Contact.id)
        .join(
            ConsentState,
            sa.and_(
                ConsentState.organization_id == org_id,
                ConsentState.channel == Channel.TEXT,
                ConsentState.address == Phone.number,
            ),
        )
        .where(Family.organization_id == org_id, ConsentState.status == status)
        .options(sa.orm.contains_eager(Contact.family))
        .order_by(Contact.last_name, Contact.first_name, Contact.id, Phone.id)
    )


def parents_report(org_id: int, status: Status, page: int = 1, per_page: int = PAGE_SIZE) -> Page:
    """A page of parents whose phone is opted in, or out, of texts."""
    page = max(page, 1)
    stmt = parents_statement(org_id, status).offset((page - 1) * per_page).limit(per_page + 1)
    rows = [
        (contact, phone, Shown(Channel.TEXT, phone.number, state))
        for contact, phone, state in db.session.execute(stmt)
    ]
    return Page(rows[:per_page], page, len(rows) > per_page)


def parents_report_rows(org_id: int, status: Status) -> Iterator[list[str]]:
    """The parents report for export (parent ID, name, number and type), header first."""
    yield ["Parent ID", "Parent", "Family", "Phone", "Type", "Text status", "Since (UTC)", "Source"]
    stmt = parents_statement(org_id, status).execution_options(yield_per=EXPORT_CHUNK)
    for contact, phone, state in db.session.execute(stmt):
        shown = Shown(Channel.TEXT, phone.number, state)
        yield [
            contact.external_id or f"C{contact.id}",
            contact.name,
            contact.family.name,
            phone.number,
            phone.kind.value,
            shown.words,
            when(state.changed_at),
            state.source.value,
        ]


# --- the dashboard --------------------------------------------------------------------------


@dataclass
class Counts:
    opted_out: dict[str, int]
    bounced: int
    carrier_blocks: int
    events_last_week: int
    outbox: dict[str, int]


def dashboard_counts(org_id: int) -> Counts:
    """The admin home's figures, a handful of indexed aggregate queries."""
    by_channel = dict.fromkeys((c.value for c in Channel), 0)
    rows = db.session.execute(
        sa.select(ConsentState.channel, sa.func.count())
        .where(ConsentState.organization_id == org_id, ConsentState.status == Status.OPTED_OUT)
        .group_by(ConsentState.channel)
    )
    for channel, count in rows:
        by_channel[Channel(channel).value] = count
    bounced = db.session.scalar(
        sa.select(sa.func.count()).where(
            ConsentState.organization_id == org_id, ConsentState.status == Status.BOUNCED
        )
    )
    blocks = db.session.scalar(
        sa.select(sa.func.count()).where(
            ConsentState.organization_id == org_id,
            ConsentState.status == Status.OPTED_OUT,
            ConsentState.carrier_block.is_(True),
        )
    )
    week = db.session.scalar(
        sa.select(sa.func.count()).where(
            ConsentEvent.organization_id == org_id,
            ConsentEvent.occurred_at >= utcnow() - timedelta(days=7),
        )
    )
    outbox = {"queued": 0, "failed": 0}
    for status, count in db.session.execute(
        sa.select(OutboxMessage.status, sa.func.count())
        .where(OutboxMessage.organization_id == org_id, OutboxMessage.status.in_(list(outbox)))
        .group_by(OutboxMessage.status)
    ):
        outbox[status] = count
    return Counts(by_channel, bounced or 0, blocks or 0, week or 0, outbox)
