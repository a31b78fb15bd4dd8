"""Shared set-up of the profile and verification tests: two families and an admin, and helpers
that post the account pages' forms and read what went out."""

from __future__ import annotations

import html
import re
from types import SimpleNamespace

import sqlalchemy as sa

from consent import ledger
from consent.extensions import db
from consent.models import (
    AddressVerification,
    ConsentEvent,
    EmailAddress,
    OutboxMessage,
    Phone,
    Role,
)
from tests.conftest import csrf_token
from tests.factories import PASSWORD, make_family, make_org, make_site, make_user

STRANGER_CELL = "+12025550199"  # nobody in the family: someone else's number
STRANGER_SHOWN = "+1 202-555-0199"


def make_world():
    """The Riveras (Ana signs in; Parent2 "Luis" and a student, each with a cell; the adults
    with an email), the Others (Olga signs in) and an organization admin."""
    org = make_org()
    site = make_site(org)
    rivera = make_family(org, site, "Rivera", contacts=2, students=1)
    other = make_family(org, site, "Other", contacts=1, students=1)
    ana, luis = rivera.contacts
    kid = rivera.students[0]
    parent = make_user(org, "ana@example.org", Role.PARENT, contact=ana, name="Ana Rivera")
    make_user(org, "olga@example.org", Role.PARENT, contact=other.contacts[0], name="Olga Other")
    make_user(org, "admin@example.org", Role.ORG, name="Dana Admin")
    db.session.commit()
    return SimpleNamespace(
        org=org, site=site, rivera=rivera, other=other, ana=ana, luis=luis, kid=kid, parent=parent
    )


def login(auth, email="ana@example.org"):
    response = auth.login(email, PASSWORD)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return response


def post(client, path, data=None, *, token=True, **kwargs):
    """POST a form, with the session's CSRF token unless told not to."""
    data = dict(data or {})
    if token:
        data["csrf_token"] = csrf_token(client, "/enroll")
    return client.post(path, data=data, **kwargs)


def page(client, path) -> str:
    return html.unescape(client.get(path).get_data(as_text=True))


def toggle(client, path, target, channel, allow):
    return post(client, path, {"target": target, "channel": channel, "allow": allow})


def state_of(org, channel, address):
    db.session.expire_all()
    state = ledger.current(org, channel, address)
    return state.status if state else None


def events_for(address):
    return db.session.scalars(
        sa.select(ConsentEvent).where(ConsentEvent.address == address).order_by(ConsentEvent.id)
    ).all()


def outbox_to(address):
    db.session.expire_all()
    return db.session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.to_address == address)
        .order_by(OutboxMessage.id)
    ).all()


def all_outbox():
    db.session.expire_all()
    return db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()


def code_in(message: OutboxMessage) -> str:
    """The six-digit code of a text or email, or the spoken one of a call ("1, 2, 3, …")."""
    spoken = re.search(r"(\d(?:, \d){5})", message.body)
    if spoken:
        return spoken.group(1).replace(", ", "")
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def phone_by_number(person, number) -> Phone:
    db.session.expire_all()
    return next(p for p in person.phones if p.number == number)


def email_by_address(person, address) -> EmailAddress:
    db.session.expire_all()
    return next(e for e in person.emails if e.address == address)


def verifications():
    db.session.expire_all()
    return db.session.scalars(sa.select(AddressVerification).order_by(AddressVerification.id)).all()


def person_path(f, who: str) -> tuple[str, str]:
    """(path segment of the add routes, the person's page) for "ana", "luis" or "kid"."""
    person = getattr(f, who)
    if who == "kid":
        return f"students/{person.id}", f"/account/students/{person.id}"
    if who == "ana":
        return f"contacts/{person.id}", "/account/settings"
    return f"contacts/{person.id}", f"/account/contacts/{person.id}"


def verify_email_token(org, user) -> str:
    """A live link token that confirms a new email of the user's contact (for page tests)."""
    from consent import verification

    email = EmailAddress(
        address="new.address@example.org", contact=user.contact, **verification.UNVERIFIED
    )
    db.session.add(email)
    db.session.flush()
    assert verification.send_email_link(org, user, email).ok
    db.session.commit()
    (message,) = outbox_to("new.address@example.org")
    return re.search(r"/account/verify-email/(\S+)", message.body).group(1)
