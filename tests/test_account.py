"""The parent's account pages: who may see them, and what each toggle does to consent, the
activity log, and the messages that go out."""

from __future__ import annotations

import html
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from consent import ledger
from consent.extensions import db
from consent.ledger import Actor
from consent.models import (
    Channel,
    EmailAddress,
    OutboxMessage,
    Phone,
    PhoneKind,
    Role,
    Source,
    Status,
)
from tests.conftest import csrf_token
from tests.factories import PASSWORD, make_family, make_org, make_site, make_user
from tests.helpers import events_of, status_of


@pytest.fixture
def family(app):
    """Two families of one organization: the Riveras (Ana signs in; Parent2 and a student
    with a cell and an email) and the Others, plus an organization admin."""
    org = make_org()
    site = make_site(org)
    rivera = make_family(org, site, "Rivera", contacts=2, students=1)
    other = make_family(org, site, "Other", contacts=1, students=1)
    ana, luis = rivera.contacts
    kid = rivera.students[0]
    kid.emails.append(EmailAddress(address="kid.rivera@students.example.org"))
    luis.language = "en"
    parent = make_user(org, "ana@example.org", Role.PARENT, contact=ana, name="Ana Rivera")
    make_user(org, "olga@example.org", Role.PARENT, contact=other.contacts[0], name="Olga Other")
    make_user(org, "admin@example.org", Role.ORG, name="Dana Admin")
    db.session.commit()
    return SimpleNamespace(
        org=org, site=site, rivera=rivera, other=other, ana=ana, luis=luis, kid=kid, parent=parent
    )


def login(auth, email="ana@example.org"):
    response = auth.login(email, PASSWORD)
    assert response.status_code == 302
    return response


def outbox_to(address):
    db.session.expire_all()
    return db.session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.to_address == address)
        .order_by(OutboxMessage.id)
    ).all()


def toggle(client, path, target, channel, allow):
    return client.post(
        path,
        data={
            "csrf_token": csrf_token(client, "/enroll"),
            "target": target,
            "channel": channel,
            "allow": allow,
        },
    )


def page(client, path) -> str:
    return html.unescape(client.get(path).get_data(as_text=True))


def person_paths(f):
    return {
        "settings": "/account/settings",
        "contacts": "/account/contacts",
        "contact": f"/account/contacts/{f.luis.id}",
        "students": "/account/students",
        "student": f"/account/students/{f.kid.id}",
    }


ROUTES = ["settings", "contacts", "contact", "students", "student"]


# --- who may see what ---------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_signed_out_visitor_is_sent_to_sign_in(client, family, route):
    """Every account page sends a signed-out visitor to sign in, and back afterwards."""
    path = person_paths(family)[route]
    response = client.get(path)
    assert response.status_code == 302
    assert response.location.startswith("/login?next=")
    assert path.replace("/", "%2F") in response.location


@pytest.mark.parametrize("route", ["contact", "student"])
def test_parent_of_another_family_gets_404(client, auth, family, route):
    """Another family's parent gets a 404 for this family's contact and student, GET and POST."""
    login(auth, "olga@example.org")
    path = person_paths(family)[route]
    assert client.get(path).status_code == 404
    target = f"phone-{(family.luis if route == 'contact' else family.kid).phones[0].id}"
    assert toggle(client, path, target, "text", "off").status_code == 404
    assert events_of((family.luis if route == "contact" else family.kid).phones[0].number) == []


@pytest.mark.parametrize("route", ["settings", "contacts", "students"])
def test_parent_of_another_family_sees_only_their_own(client, auth, family, route):
    """The list pages show another parent their own family, never this one."""
    login(auth, "olga@example.org")
    text = page(client, person_paths(family)[route])
    assert "Rivera" not in text
    if route == "settings":
        assert "Olga Other" in text or "Parent1 Other" in text


def test_parent_cannot_toggle_another_familys_address_through_own_page(client, auth, family):
    """Naming another family's phone on one's own settings page is a 404 and changes nothing."""
    login(auth)
    foreign = family.other.contacts[0].phones[0]
    response = toggle(client, "/account/settings", f"phone-{foreign.id}", "text", "off")
    assert response.status_code == 404
    assert events_of(foreign.number) == []


@pytest.mark.parametrize("route", ROUTES)
def test_admin_who_is_not_a_parent_gets_404(client, auth, family, route):
    """An admin login has no family: every account page is a 404."""
    login(auth, "admin@example.org")
    assert client.get(person_paths(family)[route]).status_code == 404


@pytest.mark.parametrize("route", ["settings", "contact", "student"])
def test_post_without_csrf_token_is_refused_and_changes_nothing(client, auth, family, route):
    """A toggle posted without its CSRF token answers 400 and the state stays as it was."""
    login(auth)
    person = {"settings": family.ana, "contact": family.luis, "student": family.kid}[route]
    phone = person.phones[0]
    response = client.post(
        person_paths(family)[route],
        data={"target": f"phone-{phone.id}", "channel": "voice", "allow": "off"},
    )
    assert response.status_code == 400
    assert status_of(family.org, Channel.VOICE, phone.number) is None
    assert events_of(phone.number) == []


def test_get_changes_nothing(client, auth, family):
    """Query parameters on a GET never toggle anything."""
    login(auth)
    phone = family.ana.phones[0]
    client.get(f"/account/settings?target=phone-{phone.id}&channel=voice&allow=off")
    assert events_of(phone.number) == []


def test_wrong_channel_for_an_address_is_404(client, auth, family):
    """Texts on a home phone, or email on a phone, are not toggles that exist."""
    family.ana.phones.append(Phone(number="+12025550177", kind=PhoneKind.HOME))
    db.session.commit()
    login(auth)
    home = family.ana.phones[1]
    assert toggle(client, "/account/settings", f"phone-{home.id}", "text", "on").status_code == 404
    assert (
        toggle(client, "/account/settings", f"phone-{home.id}", "email", "off").status_code == 404
    )
    assert events_of(home.number) == []


# --- the pages ----------------------------------------------------------------------------


def test_settings_page_shows_each_address_with_its_toggles_and_words(client, auth, family):
    """Own cell: texts and calls; own email: email; statuses in words."""
    ledger.opt_in(
        family.org,
        Channel.TEXT,
        family.ana.phones[0].number,
        source=Source.ENROLLMENT,
        actor=Actor.system(),
    )
    db.session.commit()
    login(auth)
    text = page(client, "/account/settings")
    assert "Allow text messaging" in text and "Allow calls" in text and "Allow email" in text
    assert "Texts allowed" in text
    assert "No choice yet: calls allowed" in text
    assert "Msg & data rates may apply" in text and "+1 202-555-0100" in text
    assert "Ana Rivera" in text or "Parent1 Rivera" in text


def test_contacts_and_students_lists_link_to_each_person(client, auth, family):
    """The lists name each other contact and each student and link to their pages."""
    login(auth)
    contacts = page(client, "/account/contacts")
    assert family.luis.name in contacts
    assert f"/account/contacts/{family.luis.id}" in contacts
    students = page(client, "/account/students")
    assert family.kid.name in students and f"/account/students/{family.kid.id}" in students
    assert "kid.rivera@students.example.org" in students


def test_carrier_block_shows_toggle_off_and_disabled_with_how_to_lift_it(client, auth, family):
    """A number that replied STOP: toggle disabled, the START sentence, and no way round it."""
    cell = family.ana.phones[0].number
    ledger.opt_out(
        family.org,
        Channel.TEXT,
        cell,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient(cell),
        carrier_block=True,
        confirm=False,
        notify_org=False,
    )
    db.session.commit()
    login(auth)
    text = page(client, "/account/settings")
    assert "Blocked by STOP reply" in text
    assert (
        "You replied STOP to our texts. To get them again, text START to +1 202-555-0100." in text
    )
    assert (
        "disabled" in text.split(f"phone-{family.ana.phones[0].id}-text", 1)[1].split("</div>")[1]
    )
    before = len(events_of(cell))
    response = toggle(client, "/account/settings", f"phone-{family.ana.phones[0].id}", "text", "on")
    assert response.status_code == 302
    after = page(client, "/account/settings")
    assert "text START to +1 202-555-0100" in after
    assert status_of(family.org, Channel.TEXT, cell) == Status.OPTED_OUT
    assert len(events_of(cell)) == before


def test_bounced_address_says_bounced(client, auth, family):
    """A bounced email shows "Bounced" and can be turned on again by its owner."""
    email = family.ana.emails[0].address
    ledger.mark_bounced(family.org, Channel.EMAIL, email)
    db.session.commit()
    login(auth)
    assert "Bounced" in page(client, "/account/settings")
    toggle(client, "/account/settings", f"email-{family.ana.emails[0].id}", "email", "on")
    assert status_of(family.org, Channel.EMAIL, email) == Status.OPTED_IN


def test_number_shared_by_two_people_says_a_change_applies_to_both(client, auth, family):
    """A cell both Ana and Luis have: both pages say the change applies to both."""
    shared = family.ana.phones[0].number
    family.luis.phones.append(Phone(number=shared, kind=PhoneKind.CELL))
    db.session.commit()
    login(auth)
    own = page(client, "/account/settings")
    assert f"{family.luis.name} has this too: a change here applies to both." in own
    theirs = page(client, f"/account/contacts/{family.luis.id}")
    assert f"{family.ana.name} has this too: a change here applies to both." in theirs


# --- toggles: self ------------------------------------------------------------------------


def test_own_text_off_then_on(client, auth, family, mailbox):
    """Own cell, texts off: opted out at once, event by the parent, one confirmation text,
    the office told by email; on again: the number gets a confirmation, still opted out."""
    phone = family.ana.phones[0]
    login(auth)
    response = toggle(client, "/account/settings", f"phone-{phone.id}", "text", "off")
    assert response.status_code == 302
    text = page(client, "/account/settings")
    assert "Texts off" in text and "Text messages to +1 415" in text
    assert status_of(family.org, Channel.TEXT, phone.number) == Status.OPTED_OUT
    (event,) = events_of(phone.number)
    assert event.source == Source.PORTAL and event.actor_user_id == family.parent.id
    assert event.to_status == Status.OPTED_OUT and event.ip == "127.0.0.1"
    sent = outbox_to(phone.number)
    assert [(m.channel, m.purpose, m.status) for m in sent] == [
        ("text", "optout_confirmation", "sent")
    ]
    assert "unsubscribed" in sent[0].body
    (notice,) = mailbox.to("office@example.org")
    body = mailbox.text(notice)
    assert "Opt-out" in notice["Subject"] and family.ana.name in notice["Subject"]
    assert f"{family.ana.name} (" in body and "opted out of text messages" in body
    assert "the parent portal" in body and "Ana Rivera (parent)" in body

    # On again: an opt-out is lifted only by the number itself, so it gets a confirmation.
    toggle(client, "/account/settings", f"phone-{phone.id}", "text", "on")
    text = page(client, "/account/settings")
    assert "we sent a confirmation to +1 415" in text and "Texts off" in text
    assert status_of(family.org, Channel.TEXT, phone.number) == Status.OPTED_OUT
    last = events_of(phone.number)[-1]
    assert last.kind == "request" and last.source == Source.PORTAL
    assert "Msg & data rates may apply" in last.evidence["disclosure"]
    assert last.evidence["sent_to"] == phone.number
    assert [m.purpose for m in outbox_to(phone.number)][-1] == "confirm_request"
    assert len(mailbox.to("office@example.org")) == 1  # asking is not an office notice


def test_own_calls_off_then_on(client, auth, family, mailbox):
    """Own cell, calls off: the person hears by email, the office by email; on again: a
    confirmation link by email, nothing changes until it is used."""
    phone = family.ana.phones[0]
    own_email = family.ana.emails[0].address
    login(auth)
    toggle(client, "/account/settings", f"phone-{phone.id}", "voice", "off")
    assert status_of(family.org, Channel.VOICE, phone.number) == Status.OPTED_OUT
    assert "Calls off" in page(client, "/account/settings")
    (confirmation,) = mailbox.to(own_email)
    assert "no longer receive calls" in mailbox.text(confirmation)
    (notice,) = mailbox.to("office@example.org")
    assert "opted out of calls" in mailbox.text(notice)

    toggle(client, "/account/settings", f"phone-{phone.id}", "voice", "on")
    assert status_of(family.org, Channel.VOICE, phone.number) == Status.OPTED_OUT
    assert "Calls off" in page(client, "/account/settings")
    request_mail = mailbox.to(own_email)[-1]
    assert mailbox.links(request_mail, "/confirm/")


def test_own_email_off_then_on(client, auth, family, mailbox):
    """Own email off: one unsubscribe confirmation to it, an office notice; on again: a
    confirmation link to it."""
    email = family.ana.emails[0]
    login(auth)
    toggle(client, "/account/settings", f"email-{email.id}", "email", "off")
    assert status_of(family.org, Channel.EMAIL, email.address) == Status.OPTED_OUT
    assert "Email off" in page(client, "/account/settings")
    (confirmation,) = mailbox.to(email.address)
    assert "You will no longer receive email" in mailbox.text(confirmation)
    (notice,) = mailbox.to("office@example.org")
    assert "opted out of email" in mailbox.text(notice) and email.address in mailbox.text(notice)

    toggle(client, "/account/settings", f"email-{email.id}", "email", "on")
    assert status_of(family.org, Channel.EMAIL, email.address) == Status.OPTED_OUT
    assert "Email off" in page(client, "/account/settings")
    assert mailbox.links(mailbox.to(email.address)[-1], "/confirm/")


def test_turning_off_twice_changes_nothing_the_second_time(client, auth, family, mailbox):
    """A repeated opt-out adds no event and sends nothing more."""
    phone = family.ana.phones[0]
    login(auth)
    toggle(client, "/account/settings", f"phone-{phone.id}", "text", "off")
    toggle(client, "/account/settings", f"phone-{phone.id}", "text", "off")
    assert len(events_of(phone.number)) == 1
    assert len(outbox_to(phone.number)) == 1
    assert len(mailbox.to("office@example.org")) == 1


# --- toggles: another contact ---------------------------------------------------------------


def test_other_contacts_text_off_is_immediate(client, auth, family, mailbox):
    """Turning off Luis's texts opts him out at once and tells him and the office."""
    phone = family.luis.phones[0]
    path = f"/account/contacts/{family.luis.id}"
    login(auth)
    toggle(client, path, f"phone-{phone.id}", "text", "off")
    assert status_of(family.org, Channel.TEXT, phone.number) == Status.OPTED_OUT
    assert "Texts off" in page(client, path)
    (event,) = events_of(phone.number)
    assert event.actor_user_id == family.parent.id and event.evidence["person"] == family.luis.name
    assert [m.purpose for m in outbox_to(phone.number)] == ["optout_confirmation"]
    (notice,) = mailbox.to("office@example.org")
    assert family.luis.name in mailbox.text(notice) and "Ana Rivera (parent)" in mailbox.text(
        notice
    )


def test_other_contacts_text_on_sends_them_a_confirmation_instead(client, auth, family):
    """Turning on Luis's texts changes nothing yet: he gets a text asking him to confirm."""
    phone = family.luis.phones[0]
    path = f"/account/contacts/{family.luis.id}"
    login(auth)
    toggle(client, path, f"phone-{phone.id}", "text", "on")
    text = page(client, path)
    assert f"We sent {family.luis.name} a message to confirm" in text
    assert status_of(family.org, Channel.TEXT, phone.number) is None
    (event,) = events_of(phone.number)
    assert event.kind == "request" and event.source == Source.PORTAL
    assert event.evidence["attested"] is True
    (message,) = outbox_to(phone.number)
    assert message.purpose == "confirm_request" and "/confirm/" in message.body


def test_other_contacts_email_off_then_on_by_confirmation(client, auth, family, mailbox):
    """Luis's email off: immediate with a confirmation; on: a confirmation link by email."""
    email = family.luis.emails[0]
    path = f"/account/contacts/{family.luis.id}"
    login(auth)
    toggle(client, path, f"email-{email.id}", "email", "off")
    assert status_of(family.org, Channel.EMAIL, email.address) == Status.OPTED_OUT
    (confirmation,) = mailbox.to(email.address)
    assert "You will no longer receive email" in mailbox.text(confirmation)

    toggle(client, path, f"email-{email.id}", "email", "on")
    assert status_of(family.org, Channel.EMAIL, email.address) == Status.OPTED_OUT
    request_mail = mailbox.to(email.address)[-1]
    assert "Confirm" in request_mail["Subject"]
    assert mailbox.links(request_mail, "/confirm/")


def test_other_contacts_calls_on_asks_them_by_email(client, auth, family, mailbox):
    """Calls back on for Luis: he gets the confirmation link at his email; nothing changes."""
    phone = family.luis.phones[0]
    path = f"/account/contacts/{family.luis.id}"
    login(auth)
    toggle(client, path, f"phone-{phone.id}", "voice", "off")
    toggle(client, path, f"phone-{phone.id}", "voice", "on")
    assert status_of(family.org, Channel.VOICE, phone.number) == Status.OPTED_OUT
    request_mail = mailbox.to(family.luis.emails[0].address)[-1]
    assert mailbox.links(request_mail, "/confirm/")


# --- toggles: a student -------------------------------------------------------------------


def test_student_text_off_then_on(client, auth, family, mailbox):
    """The student's cell: off at once (office told); on again: the number confirms itself."""
    phone = family.kid.phones[0]
    path = f"/account/students/{family.kid.id}"
    login(auth)
    toggle(client, path, f"phone-{phone.id}", "text", "off")
    assert status_of(family.org, Channel.TEXT, phone.number) == Status.OPTED_OUT
    assert "Texts off" in page(client, path)
    (notice,) = mailbox.to("office@example.org")
    assert family.kid.name in mailbox.text(notice)
    toggle(client, path, f"phone-{phone.id}", "text", "on")
    assert status_of(family.org, Channel.TEXT, phone.number) == Status.OPTED_OUT
    event = events_of(phone.number)[-1]
    assert event.kind == "request" and "disclosure" in event.evidence
    assert "Texts off" in page(client, path)
    assert [m.purpose for m in outbox_to(phone.number)][-1] == "confirm_request"


def test_turning_on_a_number_that_confirmed_meanwhile_says_it_is_allowed(
    client, auth, family, monkeypatch
):
    """The page read the number as opted out, but it confirmed (START) before the toggle took
    its lock: the answer is that texts are allowed, not an error (a race gunicorn found)."""
    from consent import choices

    phone = family.kid.phones[0]
    path = f"/account/students/{family.kid.id}"
    login(auth)
    toggle(client, path, f"phone-{phone.id}", "text", "off")
    stale = ledger.current(family.org, Channel.TEXT, phone.number)
    ledger.opt_in(
        family.org, Channel.TEXT, phone.number, source=Source.SMS_KEYWORD, actor=Actor.recipient()
    )
    db.session.commit()
    stale_status = SimpleNamespace(status=Status.OPTED_OUT, carrier_block=False, id=stale.id)
    monkeypatch.setattr(choices.ledger, "current", lambda *args: stale_status)
    response = toggle(client, path, f"phone-{phone.id}", "text", "on")
    assert response.status_code == 302
    monkeypatch.undo()
    assert "are allowed" in page(client, path)
    assert status_of(family.org, Channel.TEXT, phone.number) == Status.OPTED_IN


def test_student_email_off_then_on(client, auth, family, mailbox):
    """The student's email: off with a confirmation to it; on again: a confirmation link."""
    email = family.kid.emails[0]
    path = f"/account/students/{family.kid.id}"
    login(auth)
    toggle(client, path, f"email-{email.id}", "email", "off")
    assert status_of(family.org, Channel.EMAIL, email.address) == Status.OPTED_OUT
    assert len(mailbox.to(email.address)) == 1
    assert "opted out of email" in mailbox.text(mailbox.to("office@example.org")[0])
    toggle(client, path, f"email-{email.id}", "email", "on")
    assert status_of(family.org, Channel.EMAIL, email.address) == Status.OPTED_OUT
    assert mailbox.links(mailbox.to(email.address)[-1], "/confirm/")
