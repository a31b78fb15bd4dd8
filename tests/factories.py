"""Test data builders: organizations, families, users, all through the models and the ledger."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from consent.extensions import db
from consent.models import (
    Contact,
    EmailAddress,
    Family,
    Organization,
    Phone,
    PhoneKind,
    Role,
    Site,
    Student,
    User,
    utcnow,
)

PASSWORD = "correct-horse-battery"
_hash_cache: dict[str, str] = {}
_numbers = itertools.count(1000)


def password_hash(password: str = PASSWORD) -> str:
    if password not in _hash_cache:
        _hash_cache[password] = generate_password_hash(password, method="scrypt")
    return _hash_cache[password]


def next_number() -> str:
    """A fresh valid US cell number in E.164."""
    n = next(_numbers)
    return f"+1415{200 + (n // 10000) % 700}{n % 10000:04d}"


def make_org(**overrides) -> Organization:
    values = dict(
        name="Maple Valley School District",
        texting_number="+12025550100",
        notification_email="office@example.org",
        help_contact="office@example.org",
    )
    values.update(overrides)
    org = Organization(**values)
    db.session.add(org)
    db.session.flush()
    return org


def make_site(org: Organization, name: str = "Maple Valley Elementary") -> Site:
    site = Site(organization=org, name=name)
    db.session.add(site)
    db.session.flush()
    return site


def make_family(
    org: Organization,
    site: Site,
    name: str = "Test",
    contacts: int = 2,
    students: int = 1,
    cells: bool = True,
    emails: bool = True,
) -> Family:
    family = Family(organization=org, name=name)
    for position in range(1, contacts + 1):
        contact = Contact(
            family=family, first_name=f"Parent{position}", last_name=name, position=position
        )
        if cells:
            contact.phones.append(Phone(number=next_number(), kind=PhoneKind.CELL, is_primary=True))
        if emails:
            contact.emails.append(
                EmailAddress(
                    address=f"parent{position}.{name.lower()}.{next(_numbers)}@example.org"
                )
            )
    for index in range(students):
        student = Student(
            family=family, site=site, first_name=f"Kid{index}", last_name=name, grade="3"
        )
        if cells:
            student.phones.append(Phone(number=next_number(), kind=PhoneKind.CELL))
        db.session.add(student)
    db.session.add(family)
    db.session.flush()
    return family


def make_user(
    org: Organization,
    email: str,
    role: Role,
    *,
    contact: Contact | None = None,
    site: Site | None = None,
    password: str = PASSWORD,
    name: str = "",
) -> User:
    user = User(
        organization=org,
        email=email,
        role=role,
        contact=contact,
        site=site,
        name=name,
        password_hash=password_hash(password),
        email_verified_at=utcnow(),
    )
    db.session.add(user)
    db.session.flush()
    return user


@dataclass
class Demo:
    """Handles on the demo data of CONTRACT.md."""

    org: Organization
    elementary: Site
    high: Site
    parent: User
    admin: User
    site_admin: User
    staff: User

    @classmethod
    def load(cls) -> Demo:
        org = db.session.scalars(sa.select(Organization)).first()
        sites = {s.name: s for s in org.sites}
        users = {u.email: u for u in db.session.scalars(sa.select(User))}
        return cls(
            org=org,
            elementary=sites["Maple Valley Elementary"],
            high=sites["Maple Valley High"],
            parent=users["parent@example.org"],
            admin=users["admin@example.org"],
            site_admin=users["site@example.org"],
            staff=users["staff@example.org"],
        )
