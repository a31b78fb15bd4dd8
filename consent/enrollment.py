"""Enrolling a family: the family, its contacts with their phones and emails, its students,
the parent's login, and each cell number's text-message choice through the ledger, all in
one transaction. The caller commits, or rolls back when this refuses."""

from __future__ import annotations

from dataclasses import dataclass, field

from consent import accounts, ledger, verification
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
    Source,
    Student,
    User,
)


@dataclass
class PhoneEntry:
    number: str
    kind: str
    texts: str | None  # "yes" / "no" for a cell; None otherwise
    field: str  # the form field an error about this phone belongs to


@dataclass
class GuardianEntry:
    position: int
    first_name: str
    last_name: str
    relationship: str
    email: str | None
    phones: list[PhoneEntry] = field(default_factory=list)
    email_field: str = ""


@dataclass
class StudentEntry:
    first_name: str
    last_name: str
    site_id: int
    grade: str
    index: int = 0


@dataclass
class Enrollment:
    family_name: str
    guardians: list[GuardianEntry]
    students: list[StudentEntry]
    password: str
    login_email: str
    language: str = "en"


class EnrollmentRefused(Exception):
    """Something the form could not know: the error belongs at `field`. Nothing is saved."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def enroll(
    org: Organization,
    enrollment: Enrollment,
    *,
    disclosure: str,
    choice_words: dict[str, str],
    origin: Origin,
) -> User | None:
    """Create the family and the parent's login, and record each cell's text choice.

    "Yes" opts a number with no choice in (source enrollment, the disclosure as evidence) and
    queues the one confirmation text; a number that opted out only gets a text asking it to
    confirm, and one that replied STOP nothing (ledger.opt_in_or_confirm). "No" records an
    opt-out with no text (the person just asked for none). Raises EnrollmentRefused before or
    during the writes; the caller then rolls back.

    The login cannot sign in until the link sent to its email is opened. A login email that
    is already on record (an account, a contact, a student) creates nothing: the address is
    told instead, and None is returned; the visitor's page is the same either way.
    """
    if accounts.email_on_record(org, enrollment.login_email):
        accounts.spend_equal_time(enrollment.password)  # as long as making the login would take
        accounts.tell_owner_of_enrollment_attempt(org, enrollment.login_email)
        return None
    family = Family(organization_id=org.id, name=enrollment.family_name)
    db.session.add(family)
    contacts: list[tuple[Contact, GuardianEntry]] = []
    for entry in enrollment.guardians:
        contact = Contact(
            family=family,
            first_name=entry.first_name,
            last_name=entry.last_name,
            relationship_to_student=entry.relationship,
            position=entry.position,
            language=enrollment.language,
        )
        # Typed by the person enrolling: not proven to be anyone's until confirmed.
        for i, phone in enumerate(entry.phones):
            contact.phones.append(
                Phone(
                    number=phone.number,
                    kind=PhoneKind(phone.kind),
                    is_primary=i == 0,
                    **verification.UNVERIFIED,
                )
            )
        if entry.email:
            contact.emails.append(EmailAddress(address=entry.email, **verification.UNVERIFIED))
        db.session.add(contact)  # no cascade along a backref in SQLAlchemy 2
        contacts.append((contact, entry))
    for entry in enrollment.students:
        db.session.add(
            Student(
                family=family,
                site_id=entry.site_id,
                first_name=entry.first_name,
                last_name=entry.last_name,
                grade=entry.grade,
                language=enrollment.language,
            )
        )
    first = contacts[0][0]
    user = User(
        organization_id=org.id,
        email=enrollment.login_email,
        name=first.name,
        role=Role.PARENT,
        contact=first,
        email_verified_at=None,  # until the link sent to the email is opened
    )
    user.set_password(enrollment.password)
    db.session.add(user)
    db.session.flush()
    accounts.send_verification(org, user)

    actor = Actor.for_user(user)
    for contact, entry in contacts:
        for phone in entry.phones:
            if phone.texts is None:
                continue
            evidence = {
                "form": "enrollment",
                "field": phone.field,
                "person": contact.name,
                "disclosure": disclosure,
                "choice": choice_words[phone.texts],
            }
            if phone.texts == "yes":
                # An opted-out number is not opted in by a form anyone can fill: it gets its
                # own confirmation (a STOP-blocked one nothing); the page says the same.
                outcome = ledger.opt_in_or_confirm(
                    org,
                    Channel.TEXT,
                    phone.number,
                    source=Source.ENROLLMENT,
                    actor=actor,
                    evidence=evidence,
                    origin=origin,
                    language=enrollment.language,
                )
                if outcome.code == "carrier_block":
                    continue  # only START from the phone lifts it; the success page says so
            else:
                outcome = ledger.opt_out(
                    org,
                    Channel.TEXT,
                    phone.number,
                    source=Source.ENROLLMENT,
                    actor=actor,
                    evidence=evidence,
                    origin=origin,
                    confirm=False,
                )
            if not outcome.ok:
                raise EnrollmentRefused(phone.field, outcome.reason or "")
    return user
