"""Finding contacts and students for the admin: search by name, phone or email, scoped to what
the signed-in admin may see, a page at a time in a fixed number of queries."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from consent.addresses import AddressError, normalize_phone
from consent.extensions import db
from consent.models import (
    ConsentEvent,
    Contact,
    EmailAddress,
    Family,
    Phone,
    Role,
    Student,
    User,
)

PAGE_SIZE = 50
EVENTS_SHOWN = 200
_PHONE_CHARS = re.compile(r"^[\d\s().+\-]+$")


@dataclass
class Page:
    """One page of results: the rows, and whether there are pages either side."""

    rows: list
    page: int
    has_next: bool

    @property
    def has_prev(self) -> bool:
        return self.page > 1


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def site_scope(user: User) -> int | None:
    """The site an admin is limited to, or None for the organization team."""
    return None if user.role == Role.ORG else user.site_id


def contact_scope(user: User) -> sa.ColumnElement[bool]:
    """Contacts this admin may see: all for the organization team; for a site team or staff,
    those with a student of the family at their site."""
    site_id = site_scope(user)
    org_families = sa.select(Family.id).where(Family.organization_id == user.organization_id)
    if site_id is None:
        return Contact.family_id.in_(org_families)
    return Contact.family_id.in_(sa.select(Student.family_id).where(Student.site_id == site_id))


def student_scope(user: User) -> sa.ColumnElement[bool]:
    """Students this admin may see: all of the organization, or those at the admin's site."""
    site_id = site_scope(user)
    if site_id is None:
        return Student.family_id.in_(
            sa.select(Family.id).where(Family.organization_id == user.organization_id)
        )
    return Student.site_id == site_id


def search_clause(model: type[Contact] | type[Student], query: str, region: str = "US"):
    """A WHERE clause for a search box: an email (has @), a phone (digits, dashed or E.164;
    a partial number matches anywhere in it) or a name (every word starts a first or last name)."""
    text = "".join(ch for ch in query if ch.isprintable()).strip()  # no NULs or controls
    if not text:
        return None
    owner = Phone.contact_id if model is Contact else Phone.student_id
    email_owner = EmailAddress.contact_id if model is Contact else EmailAddress.student_id
    if "@" in text:
        pattern = _like_escape(text.lower()) + "%"
        return model.id.in_(
            sa.select(email_owner).where(EmailAddress.address.like(pattern, escape="\\"))
        )
    digits = re.sub(r"\D", "", text)
    if digits and _PHONE_CHARS.match(text):
        try:
            number = normalize_phone(text, region)
        except AddressError:
            number = None
        matches = Phone.number.like("%" + digits + "%")
        if number:
            matches = sa.or_(Phone.number == number, matches)
        return model.id.in_(sa.select(owner).where(matches))
    words = [w for w in re.split(r"[\s,]+", text) if w][:5]
    return sa.and_(
        sa.true(),
        *(
            sa.or_(
                model.first_name.ilike(_like_escape(w) + "%", escape="\\"),
                model.last_name.ilike(_like_escape(w) + "%", escape="\\"),
            )
            for w in words
        ),
    )


def find_contacts(
    user: User,
    query: str = "",
    page: int = 1,
    per_page: int = PAGE_SIZE,
    *,
    include_inactive: bool = False,
) -> Page:
    """A page of the contacts this admin may see that match the search, by last name; those
    gone from the roster (inactive) only when asked for."""
    stmt = (
        sa.select(Contact)
        .where(contact_scope(user), sa.true() if include_inactive else Contact.active)
        .options(
            selectinload(Contact.phones),
            selectinload(Contact.emails),
            selectinload(Contact.family).selectinload(Family.students).selectinload(Student.site),
        )
        .order_by(Contact.last_name, Contact.first_name, Contact.id)
    )
    return _page(stmt, search_clause(Contact, query), page, per_page)


def find_students(
    user: User,
    query: str = "",
    page: int = 1,
    per_page: int = PAGE_SIZE,
    *,
    include_inactive: bool = False,
) -> Page:
    """A page of the students this admin may see that match the search, by last name; those
    gone from the roster (inactive) only when asked for."""
    stmt = (
        sa.select(Student)
        .where(student_scope(user), sa.true() if include_inactive else Student.active)
        .options(
            selectinload(Student.phones),
            selectinload(Student.emails),
            selectinload(Student.site),
        )
        .order_by(Student.last_name, Student.first_name, Student.id)
    )
    return _page(stmt, search_clause(Student, query), page, per_page)


def _page(stmt, clause, page: int, per_page: int) -> Page:
    page = max(page, 1)
    if clause is not None:
        stmt = stmt.where(clause)
    rows = list(db.session.scalars(stmt.offset((page - 1) * per_page).limit(per_page + 1)))
    return Page(rows[:per_page], page, len(rows) > per_page)


def get_contact(user: User, contact_id: int) -> Contact | None:
    """The contact, when this admin may see it; None otherwise (the page answers 404)."""
    return db.session.scalars(
        sa.select(Contact).where(Contact.id == contact_id, contact_scope(user))
    ).first()


def get_student(user: User, student_id: int) -> Student | None:
    """The student, when this admin may see it; None otherwise (the page answers 404)."""
    return db.session.scalars(
        sa.select(Student).where(Student.id == student_id, student_scope(user))
    ).first()


def addresses_of(person: Contact | Student) -> dict[str, str]:
    """{address: "phone" | "email"} for every address of a person."""
    found = {p.number: "phone" for p in person.phones}
    found.update({e.address: "email" for e in person.emails})
    return found


def events_of(
    org_id: int, person: Contact | Student, limit: int = EVENTS_SHOWN
) -> list[ConsentEvent]:
    """The record's own activity log: the events of all its addresses, newest first."""
    addresses = list(addresses_of(person))
    if not addresses:
        return []
    return list(
        db.session.scalars(
            sa.select(ConsentEvent)
            .where(ConsentEvent.organization_id == org_id, ConsentEvent.address.in_(addresses))
            .order_by(ConsentEvent.id.desc())
            .limit(limit)
        )
    )


def sites_of(contact: Contact) -> list[str]:
    """The names of the sites of a contact's students."""
    return sorted({s.site.name for s in contact.family.students})
