"""A parent's edits of their family's records in the portal: add, correct or remove a
contact's or student's phone (with its type) and email, and the parent's saved language.

An address a parent types starts unverified (consent.verification), so the portal cannot
change its consent until it is proven. Correcting or removing an address never touches its
consent: that is a fact about the address, kept in the ledger. The caller commits.
"""

from __future__ import annotations

from consent import audit, verification
from consent.addresses import AddressError, format_phone, normalize_email, normalize_phone
from consent.extensions import db
from consent.i18n import gettext as _
from consent.models import (
    Contact,
    EmailAddress,
    Family,
    Organization,
    Phone,
    PhoneKind,
    Student,
    User,
)

LANGUAGES = ("en", "es")


class ProfileError(ValueError):
    """A value that cannot be saved; the message says why, for the form field."""


def find_phone(family: Family, phone_id: int) -> Phone | None:
    """A phone of a contact or student of this family, else None (others' look absent)."""
    phone = db.session.get(Phone, phone_id)
    if phone is None or phone.owner is None or phone.owner.family_id != family.id:
        return None
    return phone


def find_email(family: Family, email_id: int) -> EmailAddress | None:
    """An email of a contact or student of this family, else None."""
    email = db.session.get(EmailAddress, email_id)
    if email is None or email.owner is None or email.owner.family_id != family.id:
        return None
    return email


def _number(org: Organization, raw: str) -> str:
    try:
        return normalize_phone(raw, org.default_region or "US")
    except AddressError:
        raise ProfileError(_("Enter a phone number we can call, such as (202) 555-0123.")) from None


def _email(raw: str) -> str:
    try:
        return normalize_email(raw)
    except AddressError:
        raise ProfileError(_("Enter an email address such as name@example.org.")) from None


def _kind(raw: str) -> PhoneKind:
    try:
        return PhoneKind(raw)
    except ValueError:
        raise ProfileError(_("Choose cell, home or work.")) from None


def _who(person: Contact | Student) -> str:
    return f"{type(person).__name__.lower()} {person.id} ({person.name})"


def add_phone(
    org: Organization, user: User, person: Contact | Student, raw_number: str, kind: str
) -> Phone:
    """Add a phone the parent typed to the person: unverified, no consent change."""
    number, phone_kind = _number(org, raw_number), _kind(kind)
    if any(p.number == number for p in person.phones):
        raise ProfileError(
            _(
                "%(number)s is on record for %(name)s already.",
                number=format_phone(number),
                name=person.name,
            )  # fmt: skip
        )
    phone = Phone(number=number, kind=phone_kind, is_primary=not person.phones)
    verification.mark_unverified(phone)
    person.phones.append(phone)
    db.session.add(phone)
    db.session.flush()
    audit.record(user, f"the phones of {_who(person)}", {"added": (None, f"{number} {kind}")})
    return phone


def change_phone(org: Organization, user: User, phone: Phone, raw_number: str, kind: str) -> Phone:
    """Correct a phone's number or type. A new number is unverified again; the consent of the
    old number and of the new one stay as the ledger has them."""
    number, phone_kind = _number(org, raw_number), _kind(kind)
    person = phone.owner
    if number != phone.number and any(p.number == number for p in person.phones):
        raise ProfileError(
            _(
                "%(number)s is on record for %(name)s already.",
                number=format_phone(number),
                name=person.name,
            )  # fmt: skip
        )
    before = f"{phone.number} {phone.kind}"
    if number != phone.number:
        phone.number = number
        verification.mark_unverified(phone)
    phone.kind = phone_kind
    db.session.flush()
    audit.record(
        user, f"phone {phone.id} of {_who(person)}", {"phone": (before, f"{number} {kind}")}
    )
    return phone


def remove_phone(user: User, phone: Phone) -> None:
    """Take a phone off the record (its consent stays in the ledger, as a fact about it)."""
    person = phone.owner
    audit.record(user, f"the phones of {_who(person)}", {"removed": (phone.number, None)})
    was_primary = phone.is_primary
    person.phones.remove(phone)
    db.session.delete(phone)
    if was_primary and person.phones:
        person.phones[0].is_primary = True
    db.session.flush()


def add_email(user: User, person: Contact | Student, raw: str) -> EmailAddress:
    """Add an email the parent typed to the person: unverified, no consent change."""
    address = _email(raw)
    if any(e.address == address for e in person.emails):
        raise ProfileError(
            _("%(email)s is on record for %(name)s already.", email=address, name=person.name)
        )
    email = EmailAddress(address=address)
    verification.mark_unverified(email)
    person.emails.append(email)
    db.session.add(email)
    db.session.flush()
    audit.record(user, f"the emails of {_who(person)}", {"added": (None, address)})
    return email


def change_email(user: User, email: EmailAddress, raw: str) -> EmailAddress:
    """Correct an email address: the new one is unverified; consent stays with each address."""
    address = _email(raw)
    person = email.owner
    if address == email.address:
        return email
    if any(e.address == address for e in person.emails):
        raise ProfileError(
            _("%(email)s is on record for %(name)s already.", email=address, name=person.name)
        )
    before = email.address
    email.address = address
    verification.mark_unverified(email)
    db.session.flush()
    audit.record(user, f"email {email.id} of {_who(person)}", {"email": (before, address)})
    return email


def remove_email(user: User, email: EmailAddress) -> None:
    """Take an email off the record (its consent stays in the ledger)."""
    person = email.owner
    audit.record(user, f"the emails of {_who(person)}", {"removed": (email.address, None)})
    person.emails.remove(email)
    db.session.delete(email)
    db.session.flush()


def set_language(user: User, language: str) -> None:
    """Save the language the parent reads (pages, emails and texts to them)."""
    if language not in LANGUAGES:
        raise ProfileError(_("Choose English or Spanish."))
    contact = user.contact
    if contact.language != language:
        audit.record(user, _who(contact), {"language": (contact.language, language)})
        contact.language = language
        db.session.flush()
