"""Test data builders, the one place that makes organizations, sites, families (contacts,
students, their phones and emails) and users, through the models and the ledger; and the
ready-made sets the fixtures hand out: `make_staff` (`staff`), `make_world` (`world`), `Demo`
(`demo`, over the demo loader's data)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import sqlalchemy as sa

from consent import ledger
from consent.extensions import db
from consent.models import (
    Channel,
    Contact,
    EmailAddress,
    Family,
    Organization,
    Phone,
    PhoneKind,
    Role,
    Site,
    Source,
    Student,
    User,
    utcnow,
)
from consent.passwords import hash_method, hash_password

PASSWORD = "correct-horse-battery"
_hash_cache: dict[tuple[str, str], str] = {}
_numbers = itertools.count(1000)


def password_hash(password: str = PASSWORD) -> str:
    """A hash of `password` with the app's PASSWORD_HASH_METHOD (cheap in tests), made once."""
    key = (hash_method(), password)
    if key not in _hash_cache:
        _hash_cache[key] = hash_password(password)
    return _hash_cache[key]


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


def make_staff() -> dict:
    """An organization with two sites, a family at Elementary and one login per role
    (password PASSWORD), committed: organization, elementary, high, org (admin@example.org),
    site, staff (both Elementary) and parent."""
    org = make_org()
    elementary = make_site(org)
    high = make_site(org, "Maple Valley High")
    family = make_family(org, elementary)
    users = {
        "org": make_user(org, "admin@example.org", Role.ORG),
        "site": make_user(org, "site@example.org", Role.SITE, site=elementary),
        "staff": make_user(org, "staff@example.org", Role.STAFF, site=elementary),
        "parent": make_user(org, "parent@example.org", Role.PARENT, contact=family.contacts[0]),
    }
    db.session.commit()
    return dict(organization=org, elementary=elementary, high=high, **users)


@dataclass
class World:
    """The admin tests' organization: two sites, an admin of each role, a family at each site
    with cells, emails and text opt-ins."""

    org: Organization
    elementary: Site
    high: Site
    users: dict[str, User]  # org, site, staff (Elementary), site_high, parent
    near: Family  # a family at Elementary
    far: Family  # a family at High

    def login(self, client, who: str):
        """Sign `client` in as one of the users ("org", "site", "staff", "site_high", "parent")."""
        from tests.helpers import Auth

        response = Auth(client).login(self.users[who].email, PASSWORD)
        assert response.status_code == 302, "sign-in failed"
        return response


def make_world() -> World:
    """Create the World and commit it."""
    org = make_org()
    elementary = make_site(org, "Maple Valley Elementary")
    high = make_site(org, "Maple Valley High")
    near = make_family(org, elementary, name="Rivera")
    far = make_family(org, high, name="Okafor")
    users = {
        "org": make_user(org, "org@example.org", Role.ORG, name="Olga Org"),
        "site": make_user(org, "site@example.org", Role.SITE, site=elementary, name="Sam Site"),
        "staff": make_user(
            org, "staff@example.org", Role.STAFF, site=elementary, name="Terry Staff"
        ),
        "site_high": make_user(org, "sitehigh@example.org", Role.SITE, site=high, name="Hal High"),
        "parent": make_user(
            org, "parent@example.org", Role.PARENT, contact=near.contacts[0], name="Ana Rivera"
        ),
    }
    actor = ledger.Actor.system("test set-up")
    for family in (near, far):
        for person in [*family.contacts, *family.students]:
            for phone in person.phones:
                ledger.opt_in(
                    org,
                    Channel.TEXT,
                    phone.number,
                    source=Source.ENROLLMENT,
                    actor=actor,
                    confirm=False,
                    notify_org=False,
                )
    db.session.commit()
    return World(org, elementary, high, users, near, far)
