"""Staff edit a person's record: add, correct or remove a phone (with its type) or an email.

A record says which addresses a contact or student has; consent is a fact about each address,
kept in the ledger. So editing a record never changes consent by itself: a number corrected or
removed keeps its state and its events, and a number or email added keeps whatever state it
already has. The only consent changes here are those seed 001's "Text Opt-In" checkbox beside
a cell asks for, and they go through the ledger: ticking it is a staff entry
(`ledger.record_staff_entry`: opted in only when the number has no choice yet, and only when
the organization's rule says so), unticking it an admin opt-out with a note.

Functions flush; the caller commits (or rolls back on RecordError). The core knows no request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consent import ledger
from consent.addresses import AddressError, format_phone, normalize_email, normalize_phone
from consent.extensions import db
from consent.i18n import gettext as _
from consent.ledger import Actor, Origin
from consent.models import (
    Channel,
    Contact,
    EmailAddress,
    Organization,
    Phone,
    PhoneKind,
    Source,
    Status,
    Student,
)

Person = Contact | Student


class RecordError(ValueError):
    """Input the record cannot take; `field` names the form field the message belongs to."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class NotOnRecord(LookupError):
    """The phone or email id is not one of this person's."""


@dataclass
class Done:
    """What an edit did, as sentences for the page: (category, words)."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    def say(self, category: str, words: str) -> None:
        self.messages.append((category, words))


@dataclass(frozen=True)
class Staff:
    """Who edits, and from where: kept on any consent event the edit makes."""

    actor: Actor
    origin: Origin


# --- phones ---------------------------------------------------------------------------------


def add_phone(
    org: Organization, person: Person, *, number: str, kind: str, text_opt_in: bool, by: Staff
) -> Done:
    """Add a phone to the record. A ticked Text Opt-In on a cell is a staff entry."""
    number, kind = _phone_input(org, person, number, kind)
    phone = Phone(number=number, kind=kind, is_primary=not person.phones)
    person.phones.append(phone)
    db.session.add(phone)
    db.session.flush()
    done = Done()
    done.say("success", _("%(number)s is added to the record.", number=format_phone(number)))
    if kind == PhoneKind.CELL and text_opt_in:
        _tick(org, person, number, by, done)
    return done


def change_phone(
    org: Organization,
    person: Person,
    phone_id: int,
    *,
    number: str,
    kind: str,
    text_opt_in: bool,
    note: str | None,
    by: Staff,
) -> Done:
    """Correct a phone's number or type, and apply its Text Opt-In checkbox.

    A corrected number is a new address: the old one keeps its consent in the ledger, the new
    one keeps whatever it has (a ticked box is a staff entry for it). On the same number,
    ticking is a staff entry and unticking an opted-in cell an admin opt-out.
    """
    phone = _phone_of(person, phone_id)
    number, kind = _phone_input(org, person, number, kind, but=phone)
    done = Done()
    same_number = number == phone.number
    if not same_number or kind != phone.kind:
        old = format_phone(phone.number)
        phone.number, phone.kind = number, kind
        db.session.flush()
        if same_number:
            done.say("success", _("%(number)s is saved.", number=format_phone(number)))
        else:
            done.say(
                "success",
                _(
                    "%(old)s is corrected to %(new)s. The choices on record for %(old)s stay "
                    "in the activity log.",
                    old=old,
                    new=format_phone(number),
                ),
            )
    if kind != PhoneKind.CELL:
        return done
    was_on = same_number and _opted_in(org, number)
    if text_opt_in and not was_on:
        _tick(org, person, number, by, done)
    elif not text_opt_in and was_on:
        _untick(org, person, number, note, by, done)
    elif not done.messages:
        done.say("info", _("Nothing changed."))
    return done


def remove_phone(org: Organization, person: Person, phone_id: int) -> Done:
    """Take a phone off the record; its consent stays in the ledger."""
    phone = _phone_of(person, phone_id)
    rest = [p for p in person.phones if p is not phone]
    db.session.delete(phone)
    if phone.is_primary and rest:
        rest[0].is_primary = True
    db.session.flush()
    db.session.expire(person, ["phones"])
    done = Done()
    done.say(
        "success",
        _(
            "%(number)s is removed from the record. Its choices stay in the activity log.",
            number=format_phone(phone.number),
        ),
    )
    return done


def _phone_input(
    org: Organization, person: Person, number: str, kind: str, but: Phone | None = None
) -> tuple[str, PhoneKind]:
    try:
        kind = PhoneKind(kind)
    except ValueError:
        raise RecordError("kind", _("Choose Cell, Home or Work.")) from None
    try:
        number = normalize_phone(number or "", org.default_region or "US")
    except AddressError as error:
        raise RecordError(
            "number",
            _(
                "This is not a phone number (%(why)s). Type it with its area code, like "
                "202-555-0123.",
                why=error.why,
            ),
        ) from None
    if any(p.number == number for p in person.phones if p is not but):
        raise RecordError(
            "number", _("%(name)s already has this number on record.", name=person.name)
        )
    return number, kind


def _phone_of(person: Person, phone_id: int) -> Phone:
    phone = next((p for p in person.phones if p.id == phone_id), None)
    if phone is None:
        raise NotOnRecord(phone_id)
    return phone


def _opted_in(org: Organization, number: str) -> bool:
    state = ledger.current(org, Channel.TEXT, number)
    return bool(state and state.status == Status.OPTED_IN)


def _evidence(person: Person, by: Staff, control: str) -> dict:
    return {
        "page": "admin record",
        "record": f"{'contact' if isinstance(person, Contact) else 'student'} {person.id}",
        "person": person.name,
        "staff": by.actor.label,
        "control": control,
    }


def _tick(org: Organization, person: Person, number: str, by: Staff, done: Done) -> None:
    """Text Opt-In ticked: a staff entry, which the ledger turns into an opt-in only for a
    number with no choice yet."""
    shown = format_phone(number)
    outcome = ledger.record_staff_entry(
        org,
        number,
        actor=by.actor,
        origin=by.origin,
        evidence=_evidence(person, by, "Text Opt-In ticked"),
    )
    if outcome.refused:
        done.say("error", outcome.reason or "")
    elif outcome.changed:
        done.say(
            "success", _("Text Opt-In: %(number)s is opted in to text messages.", number=shown)
        )
    elif outcome.code == "staff_entry_off":
        done.say(
            "info",
            _(
                "Text Opt-In is not recorded: this organization starts a cell entered by staff "
                "with no choice."
            ),
        )
    elif outcome.state is not None and outcome.state.status == Status.OPTED_OUT:
        done.say(
            "warning",
            _(
                "%(number)s stays opted out of text messages: staff entry never overrides a "
                "choice. If the person asked to opt back in, send them a confirmation.",
                number=shown,
            ),
        )


def _untick(
    org: Organization, person: Person, number: str, note: str | None, by: Staff, done: Done
) -> None:
    """Text Opt-In unticked on an opted-in cell: an admin opt-out on the person's behalf."""
    outcome = ledger.opt_out(
        org,
        Channel.TEXT,
        number,
        source=Source.ADMIN,
        actor=by.actor,
        origin=by.origin,
        note=(note or "").strip() or f"Text Opt-In unticked on the record of {person.name}",
        evidence=_evidence(person, by, "Text Opt-In unticked"),
    )
    if outcome.refused:
        done.say("error", outcome.reason or "")
    else:
        done.say(
            "success",
            _(
                "Text Opt-In unticked: %(number)s is opted out of text messages.",
                number=format_phone(number),
            ),
        )


# --- emails ---------------------------------------------------------------------------------


def add_email(org: Organization, person: Person, *, address: str) -> Done:
    """Add an email address to the record (its consent, if any, stays as it is)."""
    address = _email_input(person, address)
    email = EmailAddress(address=address)
    person.emails.append(email)
    db.session.add(email)
    db.session.flush()
    done = Done()
    done.say("success", _("%(email)s is added to the record.", email=address))
    return done


def change_email(org: Organization, person: Person, email_id: int, *, address: str) -> Done:
    """Correct an email address; the old one keeps its consent in the ledger."""
    email = _email_of(person, email_id)
    address = _email_input(person, address, but=email)
    done = Done()
    if address == email.address:
        done.say("info", _("Nothing changed."))
        return done
    old, email.address = email.address, address
    db.session.flush()
    done.say(
        "success",
        _(
            "%(old)s is corrected to %(new)s. The choices on record for %(old)s stay in the "
            "activity log.",
            old=old,
            new=address,
        ),
    )
    return done


def remove_email(org: Organization, person: Person, email_id: int) -> Done:
    """Take an email off the record; its consent stays in the ledger."""
    email = _email_of(person, email_id)
    db.session.delete(email)
    db.session.flush()
    db.session.expire(person, ["emails"])
    done = Done()
    done.say(
        "success",
        _(
            "%(email)s is removed from the record. Its choices stay in the activity log.",
            email=email.address,
        ),
    )
    return done


def _email_input(person: Person, address: str, but: EmailAddress | None = None) -> str:
    try:
        address = normalize_email(address or "")
    except AddressError as error:
        raise RecordError(
            "address",
            _("This is not an email address (%(why)s), like name@example.org.", why=error.why),
        ) from None
    if any(e.address == address for e in person.emails if e is not but):
        raise RecordError(
            "address", _("%(name)s already has this email address on record.", name=person.name)
        )
    return address


def _email_of(person: Person, email_id: int) -> EmailAddress:
    email = next((e for e in person.emails if e.id == email_id), None)
    if email is None:
        raise NotOnRecord(email_id)
    return email
