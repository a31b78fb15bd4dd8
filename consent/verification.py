"""Proving that a phone or email on a record is its owner's, before the portal may change its
consent.

A row from the district's records (demo, staff entry, roster import, admin) is verified as it
is made; a row a parent types (enrollment, the profile page) starts unverified. A cell is
proven by a six-digit code sent to it by text, a landline by the same code read out in a call
(or, where calls are off, emailed to its owner's confirmed address), an email by a signed link
sent to it. Codes and links are kept only as an HMAC (SECRET_KEY), bound to the record and the
address they were sent to: a code or link for one address proves nothing about another, and
once used, expired or replaced it proves nothing at all. Nothing here changes consent.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from consent import notifications, tokens
from consent.addresses import format_phone
from consent.extensions import db
from consent.i18n import gettext as _
from consent.ledger import current
from consent.models import (
    AddressVerification,
    Channel,
    Contact,
    EmailAddress,
    Organization,
    Phone,
    PhoneKind,
    Student,
    User,
    utcnow,
)
from consent.tokens import TokenError

CODE_DIGITS = 6
CODE_MAX_AGE = timedelta(minutes=10)
MAX_ATTEMPTS = 5  # wrong codes before a code is dead
SENDS_PER_HOUR = 3  # codes or links per address row
SENDS_PER_DAY_PER_USER = 10  # so the portal cannot be used to flood other people's phones


class Method(enum.StrEnum):
    """How an address was verified (its `verified_by`)."""

    RECORDS = "records"  # the district's records: demo, staff entry, roster, admin
    TEXT_CODE = "text_code"
    CALL_CODE = "call_code"
    EMAIL_CODE = "email_code"  # a landline's code, emailed to its owner's confirmed address
    EMAIL_LINK = "email_link"
    STAFF = "staff"  # staff confirmed it with the person
    ACCOUNT_EMAIL = "account_email"  # the account's own email link proved it


# The method a verification row was sent by -> what proves the address when it is used.
_PROVES = {
    "text": Method.TEXT_CODE,
    "call": Method.CALL_CODE,
    "email": Method.EMAIL_CODE,
    "email_link": Method.EMAIL_LINK,
}

Row = Phone | EmailAddress
# Column values of a row a person typed (enrollment, the profile page): not verified. NULL
# as an SQL expression, because a plain None lets the column's default (verified) apply.
UNVERIFIED = {"verified_at": sa.null(), "verified_by": sa.null()}


def is_verified(row: Row) -> bool:
    value = row.verified_at
    return value is not None and not isinstance(value, sa.sql.elements.Null)


def mark_verified(row: Row, method: Method | str, *, at: datetime | None = None) -> None:
    """Record that the row's address is its owner's (the caller commits). Any codes or links
    still open for it are spent."""
    row.verified_at = at or utcnow()
    row.verified_by = str(Method(method))
    _spend_open(row)


def mark_unverified(row: Row) -> None:
    """A parent typed this address: it is not proven until a code or link comes back."""
    for name, value in UNVERIFIED.items():
        setattr(row, name, value)
    if row.id is not None:
        _spend_open(row)


def verified_emails(person: Contact | Student) -> list[str]:
    """A person's email addresses that are proven theirs, in record order."""
    return [e.address for e in person.emails if is_verified(e)]


def unverified_reason(person: Contact | Student, target: str) -> str | None:
    """Why the portal may not change the consent of this address of the person yet (None: it
    may). `target` is a toggle's "phone-<id>" or "email-<id>"."""
    kind, _sep, raw_id = target.partition("-")
    rows = person.phones if kind == "phone" else person.emails if kind == "email" else []
    row = next((r for r in rows if str(r.id) == raw_id), None)
    if row is None or is_verified(row):
        return None
    return not_confirmed_words(row)


def not_confirmed_words(row: Row) -> str:
    if isinstance(row, Phone):
        return _(
            "This number is not confirmed yet, so its choices cannot be changed here. "
            "Press Confirm: we send a code to the number itself."
        )
    return _(
        "This email address is not confirmed yet, so its choices cannot be changed here. "
        "Press Confirm: we send a link to the address itself."
    )


@dataclass
class Result:
    """What a request or a check did, as a sentence for the page."""

    ok: bool
    message: str


# --- secrets --------------------------------------------------------------------------------


def _keys() -> list[str]:
    config = current_app.config
    return [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]


def _digest(key: str, binding: str, address: str, secret: str) -> str:
    message = f"{binding}\n{address}\n{secret}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def _matches(stored: str, binding: str, address: str, secret: str) -> bool:
    """Does the secret match the stored HMAC (under the key or a fallback)? Constant time."""
    found = False
    for key in _keys():
        found |= hmac.compare_digest(stored, _digest(key, binding, address, secret))
    return found


def _binding(row: Row) -> str:
    return f"{'phone' if isinstance(row, Phone) else 'email'}:{row.id}"


def _open_filter(row: Row):
    column = (
        AddressVerification.phone_id if isinstance(row, Phone) else AddressVerification.email_id
    )
    return sa.and_(column == row.id, AddressVerification.used_at.is_(None))


def _spend_open(row: Row) -> None:
    """End every code or link still open for the row (it was proven, or its address changed)."""
    if row.id is None:
        return
    db.session.execute(
        sa.update(AddressVerification)
        .where(_open_filter(row))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def _sends_refused(row: Row, user: User | None) -> str | None:
    """Too many codes or links lately (per address row, and per parent)."""
    now = utcnow()
    column = (
        AddressVerification.phone_id if isinstance(row, Phone) else AddressVerification.email_id
    )
    recent = db.session.scalar(
        sa.select(sa.func.count()).where(
            column == row.id, AddressVerification.created_at > now - timedelta(hours=1)
        )
    )
    if recent >= SENDS_PER_HOUR:
        return _("We have sent several already. Wait an hour, then ask for a new one.")
    if user is not None:
        today = db.session.scalar(
            sa.select(sa.func.count()).where(
                AddressVerification.requested_by_user_id == user.id,
                AddressVerification.created_at > now - timedelta(days=1),
            )
        )
        if today >= SENDS_PER_DAY_PER_USER:
            return _("You have asked for many confirmations today. Try again tomorrow.")
    return None


def _new_row(org, row: Row, user, *, method: str, sent_to: str, lifetime: timedelta):
    _spend_open(row)  # a new code or link replaces the one before
    now = utcnow()
    verification = AddressVerification(
        organization_id=org.id,
        phone_id=row.id if isinstance(row, Phone) else None,
        email_id=row.id if isinstance(row, EmailAddress) else None,
        address=row.number if isinstance(row, Phone) else row.address,
        method=method,
        sent_to=sent_to,
        secret_hash="",
        attempts=0,
        requested_by_user_id=user.id if user is not None else None,
        created_at=now,
        expires_at=now + lifetime,
    )
    db.session.add(verification)
    db.session.flush()
    return verification


# --- phones: a code -------------------------------------------------------------------------


def calls_available() -> bool:
    """Whether a landline's code may be read out in a call (the provider makes calls)."""
    return bool(current_app.config.get("VERIFY_BY_CALL", True))


def _blocked(org: Organization, channel: str, address: str) -> bool:
    state = current(org, channel, address)
    return state is not None and (state.blocks_sending or state.carrier_block)


def code_route(org: Organization, phone: Phone) -> tuple[str, str] | None:
    """(method, where to) for this phone's code: a text to a cell, else a call to the number,
    else an email to its owner's confirmed address; None when none of them may be used."""
    if phone.kind == PhoneKind.CELL and not _blocked(org, Channel.TEXT, phone.number):
        return "text", phone.number
    if calls_available() and not _blocked(org, Channel.VOICE, phone.number):
        return "call", phone.number
    for address in verified_emails(phone.owner):
        if not _blocked(org, Channel.EMAIL, address):
            return "email", address
    return None


def send_phone_code(
    org: Organization, user: User | None, phone: Phone, *, language: str = "en"
) -> Result:
    """Send a new six-digit code for this phone (replacing any code before it). The caller
    commits; the outbox delivers after the commit."""
    if is_verified(phone):
        return Result(False, _("This number is confirmed already."))
    route = code_route(org, phone)
    if route is None:
        return Result(
            False,
            _(
                "We cannot send a code to this number: it has turned off our texts and calls. "
                "Ask the school to confirm it for you."
            ),
        )
    refused = _sends_refused(phone, user)
    if refused:
        return Result(False, refused)
    method, sent_to = route
    verification = _new_row(org, phone, user, method=method, sent_to=sent_to, lifetime=CODE_MAX_AGE)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    verification.secret_hash = _digest(_keys()[0], _binding(phone), phone.number, code)
    minutes = int(CODE_MAX_AGE.total_seconds() // 60)
    key = f"verify:{verification.id}"
    shown = format_phone(phone.number)
    if method == "text":
        notifications.queue_text(
            org,
            to=sent_to,
            purpose="verify_code",
            template="verify_code",
            key=key,
            language=language,
            code=code,
            minutes=minutes,
        )
        return Result(True, _("We sent a code by text to %(number)s.", number=shown))
    if method == "call":
        notifications.queue_call(
            org,
            to=sent_to,
            purpose="verify_code",
            template="verify_code",
            key=key,
            language=language,
            digits=", ".join(code),
            minutes=minutes,
        )
        return Result(True, _("We are calling %(number)s to read out a code.", number=shown))
    notifications.queue_email(
        org,
        to=sent_to,
        purpose="verify_code",
        template="verify_phone_code",
        key=key,
        language=language,
        code=code,
        minutes=minutes,
        shown=shown,
        name=phone.owner.name,
    )
    return Result(
        True,
        _(
            "We cannot call %(number)s, so we emailed its code to %(email)s.",
            number=shown,
            email=sent_to,
        ),
    )


def open_code(phone: Phone) -> AddressVerification | None:
    """The code waiting to be entered for this phone, if any (unused, unexpired, for its
    number as it is now)."""
    return db.session.scalars(
        sa.select(AddressVerification)
        .where(
            _open_filter(phone),
            AddressVerification.address == phone.number,
            AddressVerification.expires_at > utcnow(),
        )
        .order_by(AddressVerification.id.desc())
    ).first()


def check_phone_code(phone: Phone, code: str) -> Result:
    """Check a code typed for this phone. A right code verifies the phone; a wrong one counts
    as an attempt, and after MAX_ATTEMPTS the code is dead. The caller commits either way."""
    if is_verified(phone):
        return Result(True, _("This number is confirmed already."))
    verification = open_code(phone)
    if verification is None:
        return Result(False, _("No code is waiting for this number. Ask for a new one."))
    if verification.attempts >= MAX_ATTEMPTS:
        return Result(False, _("Too many wrong codes. Ask for a new one."))
    verification.attempts += 1
    typed = "".join(ch for ch in code if not ch.isspace())
    if not (
        len(typed) == CODE_DIGITS
        and typed.isascii()
        and typed.isdigit()
        and _matches(verification.secret_hash, _binding(phone), phone.number, typed)
    ):
        left = MAX_ATTEMPTS - verification.attempts
        if left <= 0:
            return Result(False, _("Too many wrong codes. Ask for a new one."))
        return Result(False, _("That code is not right. Check it and try again."))
    verification.used_at = utcnow()
    mark_verified(phone, _PROVES[verification.method])
    return Result(True, _("Thank you: %(number)s is confirmed.", number=format_phone(phone.number)))


# --- emails: a link -------------------------------------------------------------------------


def send_email_link(
    org: Organization, user: User | None, email: EmailAddress, *, language: str = "en"
) -> Result:
    """Email a signed link that proves this address of this record (replacing any link
    before it). The caller commits."""
    if is_verified(email):
        return Result(False, _("This email address is confirmed already."))
    if _blocked(org, Channel.EMAIL, email.address):
        return Result(
            False,
            _(
                "We cannot email %(email)s: it has turned off our email or bounced. "
                "Ask the school to confirm it for you.",
                email=email.address,
            ),
        )
    refused = _sends_refused(email, user)
    if refused:
        return Result(False, refused)
    lifetime = timedelta(seconds=current_app.config["TOKEN_MAX_AGE"]["verify_email"])
    verification = _new_row(
        org, email, user, method="email_link", sent_to=email.address, lifetime=lifetime
    )
    token = tokens.make(
        "verify_email", org.id, "email", email.address, 0, e=email.id, r=verification.id
    )
    verification.secret_hash = _digest(_keys()[0], _binding(email), email.address, token)
    notifications.queue_email(
        org,
        to=email.address,
        purpose="verify_email",
        template="verify_email",
        key=f"verify:{verification.id}",
        language=language,
        verify_url=notifications.link("/account/verify-email/" + token),
        name=email.owner.name,
    )
    return Result(
        True, _("We sent a link to %(email)s. Open it to confirm the address.", email=email.address)
    )


@dataclass
class EmailLink:
    """A verification link that may still be used: its row and the email it proves."""

    verification: AddressVerification
    email: EmailAddress


def open_email_link(token: str) -> EmailLink:
    """The email a link proves, or TokenError: "bad" (not ours, or not for this address on
    this record any more), "expired", or "spent" (used, replaced, or the address proven)."""
    claim = tokens.load("verify_email", token)
    try:
        email_id, row_id = int(claim.extra["e"]), int(claim.extra["r"])
    except (KeyError, TypeError, ValueError):
        raise TokenError("bad", "This link is not valid.") from None
    bad = TokenError("bad", "This link is not valid.")
    if not (0 < email_id < 2**31 and 0 < row_id < 2**31):
        raise bad
    verification = db.session.get(AddressVerification, row_id)
    email = db.session.get(EmailAddress, email_id)
    if (
        verification is None
        or email is None
        or verification.email_id != email.id
        or verification.method != "email_link"
        or verification.organization_id != claim.organization_id
        or email.owner.family.organization_id != claim.organization_id
        or not _matches(verification.secret_hash, _binding(email), claim.address, token)
    ):
        raise bad
    if email.address != claim.address or verification.address != claim.address:
        # The record's address was changed since: the link proves the old one only.
        raise TokenError("spent", "This link was for an address that is no longer on record.")
    if verification.used_at is not None or is_verified(email):
        raise TokenError("spent", "This link has already been used.")
    if verification.expires_at <= utcnow():
        raise TokenError("expired", "This link has expired.")
    return EmailLink(verification, email)


def use_email_link(link: EmailLink) -> Result:
    """The owner pressed the button: the email is verified (the caller commits)."""
    link.verification.used_at = utcnow()
    mark_verified(link.email, Method.EMAIL_LINK)
    return Result(True, _("Thank you: %(email)s is confirmed.", email=link.email.address))
