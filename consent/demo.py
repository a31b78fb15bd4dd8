"""Demo data: the organization, logins and families the README lists, and a few hundred more
families with choices on every channel from every source, all made through the ledger."""

from __future__ import annotations

import random

import sqlalchemy as sa

from consent import ledger, purposes
from consent.addresses import AddressError, normalize_phone
from consent.extensions import db
from consent.ledger import Actor, Origin
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
    Status,
    Student,
    User,
    utcnow,
)

ORG_NAME = "Maple Valley School District"
TEXTING_NUMBER = "+12025550100"
SITES = ("Maple Valley Elementary", "Maple Valley High")
LOGINS = [
    ("parent@example.org", "parent-demo-pass", "parent: Ana Rivera, family Rivera"),
    ("admin@example.org", "admin-demo-pass", "organization communication team"),
    ("site@example.org", "site-demo-pass", "site communication team, Maple Valley Elementary"),
    ("staff@example.org", "staff-demo-pass", "staff, Maple Valley Elementary"),
]
FAMILY_COUNT = 300
LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Martinez Lopez Gonzalez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green "
    "Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner"
).split()
FIRST_ADULT = (
    "Maria Jose James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth Carlos "
    "Sara Ana Luis Juan Carmen Wei Mei Ahmed Fatima Olga Ivan Grace Daniel Rosa Miguel Laura"
).split()
FIRST_CHILD = (
    "Sofia Liam Emma Noah Olivia Mateo Ava Lucas Mia Elijah Isabella Leo Camila Ethan Valentina "
    "Mason Luna Diego Aria Santiago Chloe Benjamin Zoe Gabriel Lily"
).split()
AREA_CODES = ("202", "301", "703", "312", "415", "617")


def load_demo(seed: int = 7, families: int = FAMILY_COUNT) -> bool:
    """Create the demo data unless it is there; True when it was created."""
    if db.session.scalars(sa.select(Organization).where(Organization.name == ORG_NAME)).first():
        return False
    rng = random.Random(seed)
    org = Organization(
        name=ORG_NAME,
        texting_number=TEXTING_NUMBER,
        notification_email="office@example.org",
        help_contact="office@example.org or +1 202-555-0100",
    )
    db.session.add(org)
    sites = [Site(organization=org, name=name) for name in SITES]
    db.session.add_all(sites)
    db.session.flush()
    elementary, high = sites

    admin = _user(org, "admin@example.org", "admin-demo-pass", Role.ORG, "Dana Okafor")
    _user(org, "site@example.org", "site-demo-pass", Role.SITE, "Sam Patel", site=elementary)
    _user(org, "staff@example.org", "staff-demo-pass", Role.STAFF, "Terry Chen", site=elementary)

    rivera = Family(organization=org, name="Rivera")
    ana = _contact(rivera, "Ana", "Rivera", 1, "parent@example.org", "+12025550123", "P-1001")
    luis = _contact(
        rivera, "Luis", "Rivera", 2, "luis.rivera@example.org", "+12025550124", "P-1002"
    )
    sofia = Student(
        family=rivera,
        site=elementary,
        first_name="Sofia",
        last_name="Rivera",
        grade="3",
        external_id="S-1001",
    )
    sofia.phones.append(Phone(number="+12025550125", kind=PhoneKind.CELL, is_primary=True))
    sofia.emails.append(EmailAddress(address="sofia.rivera@students.example.org"))
    db.session.add_all([rivera, sofia])
    db.session.flush()
    parent = _user(org, "parent@example.org", "parent-demo-pass", Role.PARENT, "Ana Rivera")
    parent.contact = ana
    db.session.flush()

    disclosure = _disclosure(org)
    quiet = dict(confirm=False, notify_org=False)
    for number in ("+12025550123", "+12025550124", "+12025550125"):
        ledger.opt_in(
            org,
            Channel.TEXT,
            number,
            source=Source.ENROLLMENT,
            actor=Actor.for_user(parent),
            evidence={"disclosure": disclosure, "demo": True},
            origin=Origin("127.0.0.1", "demo"),
            **quiet,
        )
    # The tour's per-purpose choices: Ana turned General email off and Attendance calls to
    # Luis's cell off in the portal (docs/purposes.md); Emergency still reaches both.
    for channel, address, key, who in (
        (Channel.EMAIL, "parent@example.org", "general", ana),
        (Channel.VOICE, "+12025550124", "attendance", luis),
    ):
        ledger.change_purpose(
            org,
            channel,
            address,
            purposes.by_key(org, key),
            Status.OPTED_OUT,
            source=Source.PORTAL,
            actor=Actor.for_user(parent),
            evidence={"demo": True, "page": "account", "person": who.name},
            origin=Origin("127.0.0.1", "demo"),
        )

    _many_families(rng, org, sites, admin, disclosure, families)
    db.session.commit()
    return True


def _user(org, email, password, role, name, site=None) -> User:
    user = User(
        organization=org, email=email, role=role, name=name, site=site, email_verified_at=utcnow()
    )
    user.set_password(password)
    db.session.add(user)
    return user


def _contact(family, first, last, position, email, cell, external_id=None) -> Contact:
    contact = Contact(
        family=family,
        first_name=first,
        last_name=last,
        position=position,
        external_id=external_id,
        relationship_to_student="Parent",
    )
    if cell:
        contact.phones.append(Phone(number=cell, kind=PhoneKind.CELL, is_primary=True))
    if email:
        contact.emails.append(EmailAddress(address=email))
    return contact


def _disclosure(org: Organization) -> str:
    return (
        f"Yes, send me text messages from {org.name} at +1 202-555-0100 about "
        f"{org.texts_about}, {org.message_frequency}. Msg & data rates may apply. "
        "Reply STOP to opt out, HELP for help."
    )


def _number(rng: random.Random, used: set[str]) -> str:
    while True:
        raw = f"+1{rng.choice(AREA_CODES)}{rng.randint(201, 989)}{rng.randint(0, 9999):04d}"
        try:
            number = normalize_phone(raw)
        except AddressError:
            continue
        if number not in used:
            used.add(number)
            return number


def _many_families(rng, org, sites, admin, disclosure, count) -> None:
    used: set[str] = {"+12025550123", "+12025550124", "+12025550125", TEXTING_NUMBER}
    admin_actor = Actor.for_user(admin)
    staff_actor = Actor.system("SIS sync (staff entry)")
    families = []
    for i in range(count):
        last = rng.choice(LAST_NAMES)
        family = Family(organization=org, name=last)
        for position in range(1, rng.choice((1, 2, 2, 2, 3)) + 1):
            first = rng.choice(FIRST_ADULT)
            email = f"{first}.{last}.{i}{position}@example.{rng.choice(('org', 'net', 'com'))}"
            contact = _contact(
                family,
                first,
                last,
                position,
                email.lower(),
                _number(rng, used),
                f"P-{2000 + i * 4 + position}",
            )
            if rng.random() < 0.3:
                contact.phones.append(Phone(number=_number(rng, used), kind=PhoneKind.HOME))
            if rng.random() < 0.15:
                contact.phones.append(Phone(number=_number(rng, used), kind=PhoneKind.WORK))
            contact.language = "es" if rng.random() < 0.25 else "en"
        for _ in range(rng.choice((1, 1, 2, 3))):
            site = rng.choice(sites)
            student = Student(
                family=family,
                site=site,
                first_name=rng.choice(FIRST_CHILD),
                last_name=last,
                grade=str(rng.randint(0, 5) if site is sites[0] else rng.randint(9, 12)),
                enrollment_status=rng.choice(("enrolled",) * 9 + ("withdrawn",)),
                external_id=f"S-{2000 + len(families) * 3 + _}",
            )
            if site is sites[1] and rng.random() < 0.6:
                student.phones.append(Phone(number=_number(rng, used), kind=PhoneKind.CELL))
        families.append(family)
        db.session.add(family)
    db.session.flush()

    quiet = dict(confirm=False, notify_org=False)
    origin = Origin("127.0.0.1", "demo")
    general = purposes.general(org)
    texting = 0  # every fifth family texting turns General texts off (per-purpose choice)
    for family in families:
        for contact in family.contacts:
            cell = contact.primary_phone.number
            roll = rng.random()
            evidence = {"demo": True}
            if roll < 0.55:
                ledger.opt_in(
                    org,
                    Channel.TEXT,
                    cell,
                    source=Source.ENROLLMENT,
                    actor=Actor.recipient(contact.name),
                    evidence={**evidence, "disclosure": disclosure},
                    origin=origin,
                    **quiet,
                )
                texting += 1
                if general is not None and texting % 5 == 0:
                    ledger.change_purpose(
                        org,
                        Channel.TEXT,
                        cell,
                        general,
                        Status.OPTED_OUT,
                        source=Source.PORTAL,
                        actor=Actor.recipient(contact.name),
                        evidence=evidence,
                        origin=origin,
                    )
            elif roll < 0.65:
                ledger.record_staff_entry(org, cell, actor=staff_actor, evidence=evidence)
            elif roll < 0.70:
                ledger.opt_out(
                    org,
                    Channel.TEXT,
                    cell,
                    source=Source.ENROLLMENT,
                    actor=Actor.recipient(contact.name),
                    evidence={**evidence, "disclosure": disclosure},
                    origin=origin,
                    **quiet,
                )
            elif roll < 0.76:
                ledger.opt_in(
                    org,
                    Channel.TEXT,
                    cell,
                    source=Source.ENROLLMENT,
                    actor=Actor.recipient(contact.name),
                    evidence=evidence,
                    origin=origin,
                    **quiet,
                )
                ledger.opt_out(
                    org,
                    Channel.TEXT,
                    cell,
                    source=Source.SMS_KEYWORD,
                    actor=Actor.recipient(cell),
                    evidence={**evidence, "sms_body": "STOP"},
                    carrier_block=True,
                    **quiet,
                )
            elif roll < 0.79:
                ledger.opt_out(
                    org,
                    Channel.TEXT,
                    cell,
                    source=Source.SMS_REPLY,
                    actor=Actor.recipient(cell),
                    evidence={**evidence, "sms_body": "please stop texting me"},
                    **quiet,
                )
            elif roll < 0.81:
                ledger.opt_out(
                    org,
                    Channel.TEXT,
                    cell,
                    source=Source.CARRIER,
                    actor=Actor.system("carrier"),
                    evidence={**evidence, "error_code": "21610"},
                    carrier_block=True,
                    **quiet,
                )
            elif roll < 0.84:
                ledger.mark_bounced(
                    org, Channel.TEXT, cell, evidence={**evidence, "error_code": "30006"}
                )
            elif roll < 0.88:
                ledger.opt_out(
                    org,
                    Channel.TEXT,
                    cell,
                    source=Source.PORTAL,
                    actor=Actor.recipient(contact.name),
                    evidence=evidence,
                    origin=origin,
                    **quiet,
                )
            elif roll < 0.91:
                ledger.opt_out(
                    org,
                    Channel.TEXT,
                    cell,
                    source=Source.ADMIN,
                    actor=admin_actor,
                    evidence=evidence,
                    note="Asked at the front desk",
                    **quiet,
                )
            if rng.random() < 0.08:
                ledger.opt_out(
                    org,
                    Channel.VOICE,
                    cell,
                    source=rng.choice((Source.ADMIN, Source.IMPORT)),
                    actor=admin_actor,
                    evidence=evidence,
                    note="Do not call",
                    **quiet,
                )
            email = contact.emails[0].address
            roll = rng.random()
            if roll < 0.05:
                ledger.opt_out(
                    org,
                    Channel.EMAIL,
                    email,
                    source=Source.ONE_CLICK,
                    actor=Actor.recipient(email),
                    evidence=evidence,
                    **quiet,
                )
            elif roll < 0.08:
                ledger.opt_out(
                    org,
                    Channel.EMAIL,
                    email,
                    source=Source.EMAIL_LINK,
                    actor=Actor.recipient(email),
                    evidence=evidence,
                    **quiet,
                )
            elif roll < 0.10:
                ledger.mark_bounced(
                    org, Channel.EMAIL, email, evidence={**evidence, "smtp": "550 no such user"}
                )
            elif roll < 0.12:
                ledger.opt_out(
                    org,
                    Channel.EMAIL,
                    email,
                    source=Source.IMPORT,
                    actor=admin_actor,
                    evidence={
                        **evidence,
                        "file": "old-system-optouts.csv",
                        "row": rng.randint(2, 400),
                    },
                    **quiet,
                )
        for student in family.students:
            for phone in student.phones:
                if rng.random() < 0.7:
                    ledger.opt_in(
                        org,
                        Channel.TEXT,
                        phone.number,
                        source=Source.PORTAL,
                        actor=Actor.recipient(family.contacts[0].name),
                        evidence={"demo": True, "disclosure": disclosure},
                        origin=origin,
                        **quiet,
                    )
                else:
                    ledger.opt_out(
                        org,
                        Channel.TEXT,
                        phone.number,
                        source=Source.PORTAL,
                        actor=Actor.recipient(family.contacts[0].name),
                        evidence={"demo": True},
                        origin=origin,
                        **quiet,
                    )
