"""No one acts for someone else: a stranger's "Yes" never lifts an opt-out, confirmations go
only to the address itself or to its owner's email on record, a preferences link is spent by
any choice it covers, and a site team sees only its own site's names.

Each test is a stranger's journey that today's code lets through (or would, without its check).
"""

from __future__ import annotations

import csv
import html
import io
import re

import pytest
import sqlalchemy as sa

from consent import ledger, notifications
from consent.extensions import db
from consent.ledger import Actor, BulkRow
from consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    EmailAddress,
    Family,
    OutboxMessage,
    Phone,
    PhoneKind,
    Role,
    Source,
    Status,
    Student,
)
from tests import factories
from tests.conftest import Auth, csrf_token
from tests.test_enroll import valid_form

KEY = {"Authorization": "Bearer test-api-key"}
OUR_NUMBER = "+12025550100"
STOP_SAYS = (
    "a number that replied STOP to our texts before gets them again only after it texts START"
)


def api_reason(client, channel: str, address: str) -> str:
    """What the eligibility API answers for one address."""
    response = client.get(
        "/api/v1/eligibility", query_string={"channel": channel, "address": address}, headers=KEY
    )
    assert response.status_code == 200
    return response.get_json()["reason"]


def state_of(org, channel, address):
    db.session.expire_all()
    return ledger.current(org, channel, address)


def sent_to(address: str, purpose: str | None = None) -> list[OutboxMessage]:
    db.session.expire_all()
    stmt = sa.select(OutboxMessage).where(OutboxMessage.to_address == address)
    if purpose:
        stmt = stmt.where(OutboxMessage.purpose == purpose)
    return list(db.session.scalars(stmt.order_by(OutboxMessage.id)))


def requests_of(address: str) -> list[ConsentEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(ConsentEvent).where(
                ConsentEvent.address == address, ConsentEvent.kind == "request"
            )
        )
    )


def inbound_text(client, sender: str, body: str):
    """A text from `sender` to the district's number, as the SMS provider posts it."""
    return client.post(
        "/sms/inbound",
        data={"From": sender, "To": OUR_NUMBER, "Body": body, "MessageSid": f"SM{sender}{body}"},
    )


def flashes(page: str) -> list[str]:
    return [
        html.unescape(re.sub(r"\s+", " ", m)).strip()
        for m in re.findall(r'<p class="flash[^"]*">(.*?)</p>', page, re.S)
    ]


@pytest.fixture
def org(app):
    """An organization with two schools and an office email."""
    org = factories.make_org()
    factories.make_site(org, "Maple Valley Elementary")
    factories.make_site(org, "Maple Valley High")
    db.session.commit()
    return org


# --- how a number came to be opted out ------------------------------------------------------


def by_plain_words(client, org, number):
    inbound_text(client, number, "please stop texting me")


def by_portal(client, org, number):
    ledger.opt_out(org, Channel.TEXT, number, source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()


def by_import(client, org, number):
    ledger.opt_out_many(
        org,
        Channel.TEXT,
        [BulkRow(number, {"file": "old-list.csv", "row": 2})],
        source=Source.IMPORT,
        actor=Actor.system("import"),
    )
    db.session.commit()


def by_admin(client, org, number):
    ledger.opt_out(org, Channel.TEXT, number, source=Source.ADMIN, actor=Actor.system("admin"))
    db.session.commit()


def by_stop(client, org, number):
    inbound_text(client, number, "STOP")


def never_seen(client, org, number):
    """No choice on record."""


OPTED_OUT_WAYS = [by_plain_words, by_portal, by_import, by_admin]


def enroll(client, org, number: str, email: str):
    """A stranger enrolls a family with `number` as a cell and "Yes" to texts; the page after."""
    data = valid_form(org, email=email)
    data["guardians-0-phones-0-number"] = number
    data["csrf_token"] = csrf_token(client, "/enroll")
    response = client.post("/enroll", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client.get(response.headers["Location"]).get_data(as_text=True)


# --- enrollment -----------------------------------------------------------------------------


@pytest.mark.parametrize("opted_out", OPTED_OUT_WAYS, ids=lambda f: f.__name__)
def test_enrolling_an_opted_out_number_with_yes_only_sends_it_a_confirmation(
    client, org, opted_out
):
    """The family is saved; the number stays opted out (the API says so) and gets one text
    asking it to confirm; only that confirmation could opt it in."""
    number = factories.next_number()
    opted_out(client, org, number)
    assert state_of(org, Channel.TEXT, number).status == Status.OPTED_OUT
    page = enroll(client, org, number, "stranger@example.org")
    assert STOP_SAYS in " ".join(flashes(page))
    assert state_of(org, Channel.TEXT, number).status == Status.OPTED_OUT
    assert api_reason(client, "text", number) == "opted_out"
    (confirmation,) = sent_to(number, "confirm_request")
    assert confirmation.channel == "text" and "/confirm/" in confirmation.body
    (request,) = requests_of(number)
    assert request.source == Source.ENROLLMENT and request.evidence["sent_to"] == number
    assert "Msg & data rates may apply" in request.evidence["disclosure"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Family)) == 1


def test_enrolling_a_number_that_replied_stop_texts_it_nothing(client, org):
    """A STOP-blocked number: the family is saved, nothing at all is texted to the number, the
    block stands, and the page tells every enroller how START works."""
    number = factories.next_number()
    by_stop(client, org, number)
    before = len(sent_to(number))
    page = enroll(client, org, number, "stranger@example.org")
    assert STOP_SAYS in " ".join(flashes(page)) and "+1 202-555-0100" in " ".join(flashes(page))
    assert "You replied STOP" not in page
    state = state_of(org, Channel.TEXT, number)
    assert state.status == Status.OPTED_OUT and state.carrier_block
    assert api_reason(client, "text", number) == "opted_out"
    assert len(sent_to(number)) == before
    assert requests_of(number) == []


def test_enrolling_a_number_never_seen_with_yes_opts_it_in(client, org):
    """A number with no choice is opted in by the form, the disclosure as evidence."""
    number = factories.next_number()
    enroll(client, org, number, "new@example.org")
    assert state_of(org, Channel.TEXT, number).status == Status.OPTED_IN
    assert api_reason(client, "text", number) == "ok"
    assert [m.purpose for m in sent_to(number)] == ["optin_confirmation"]


def test_enrollment_says_the_same_words_whatever_the_number_did_before(client, org):
    """Replied STOP, opted out some other way, or never seen: the same page after enrolling."""
    pages = {}
    for i, way in enumerate([*OPTED_OUT_WAYS, by_stop, never_seen]):
        number = factories.next_number()
        way(client, org, number)
        email = f"stranger{i}@example.org"
        page = enroll(client, org, number, email)
        pages[way.__name__] = [words.replace(email, "EMAIL") for words in flashes(page)]
    first = pages["never_seen"]
    assert any(STOP_SAYS in words for words in first)
    assert all(words == first for words in pages.values()), pages


# --- the portal -----------------------------------------------------------------------------


def test_parent_turning_on_their_own_opted_out_email_only_sends_it_a_confirmation(
    client, auth, org
):
    """Even a parent's own address: an opt-out (here from an import) is lifted only by a
    confirmation from the address; the page says one was sent."""
    family = factories.make_family(org, org.sites[0], name="Rivera", contacts=1, students=0)
    contact = family.contacts[0]
    factories.make_user(org, "ana@example.org", Role.PARENT, contact=contact)
    email = contact.emails[0]
    db.session.commit()
    ledger.opt_out(
        org, Channel.EMAIL, email.address, source=Source.IMPORT, actor=Actor.system("import")
    )
    db.session.commit()
    auth.login("ana@example.org", factories.PASSWORD)
    response = client.post(
        "/account/settings",
        data={
            "csrf_token": csrf_token(client, "/account/settings"),
            "target": f"email-{email.id}",
            "channel": "email",
            "allow": "on",
        },
        follow_redirects=True,
    )
    page = html.unescape(response.get_data(as_text=True))
    assert f"we sent a confirmation to {email.address}" in page
    assert state_of(org, Channel.EMAIL, email.address).status == Status.OPTED_OUT
    assert api_reason(client, "email", email.address) == "opted_out"
    (confirmation,) = sent_to(email.address, "confirm_request")
    assert confirmation.channel == "email"


# --- admin Opt Back In ----------------------------------------------------------------------


@pytest.fixture
def opted_out_phone(world):
    """The far family's first contact's cell, opted out of texts by an admin."""
    contact = world.far.contacts[0]
    number = contact.phones[0].number
    ledger.opt_out(world.org, Channel.TEXT, number, source=Source.ADMIN, actor=Actor.system())
    db.session.commit()
    state = ledger.current(world.org, Channel.TEXT, number)
    return contact, number, f"/admin/optouts/row/{state.id}/"


@pytest.mark.parametrize("whose", ["a stranger's", "another family's"])
def test_admin_cannot_send_a_phones_opt_back_in_to_another_email(
    client, world, opted_out_phone, mailbox, whose
):
    """Typed or posted, an email that is not on the number's owner's record is refused and
    nothing is sent or recorded."""
    _contact, number, url = opted_out_phone
    other = (
        "stranger@example.org"
        if whose == "a stranger's"
        else world.near.contacts[0].emails[0].address
    )
    world.login(client, "org")
    response = client.post(
        url, data={"attested": "y", "send_to": other, "csrf_token": csrf_token(client, url)}
    )
    page = html.unescape(response.get_data(as_text=True))
    assert "A confirmation goes only to the address itself" in page
    assert sent_to(other) == [] and sent_to(number, "confirm_request") == []
    assert mailbox.to(other) == []
    assert requests_of(number) == []
    assert state_of(world.org, Channel.TEXT, number).status == Status.OPTED_OUT


def test_admin_may_send_it_to_the_owners_email_and_the_event_says_where(
    client, world, opted_out_phone, mailbox
):
    """The email on the same contact's record is offered, and used; the request event names it."""
    contact, number, url = opted_out_phone
    own = contact.emails[0].address
    world.login(client, "org")
    assert f'value="{own}"' in client.get(url).get_data(as_text=True)
    client.post(url, data={"attested": "y", "send_to": own, "csrf_token": csrf_token(client, url)})
    (message,) = mailbox.to(own)
    assert mailbox.links(message, "/confirm/")
    (request,) = requests_of(number)
    assert request.evidence["sent_to"] == own and request.evidence["sent_by"] == "email"
    assert state_of(world.org, Channel.TEXT, number).status == Status.OPTED_OUT


def test_confirmations_never_go_to_an_opted_out_email(client, world, mailbox):
    """A person whose email opted out: a calls opt-out is not confirmed to that email, and the
    opt-back-in of calls is not offered or sent there."""
    contact = world.far.contacts[0]
    number, email = contact.phones[0].number, contact.emails[0].address
    org = world.org
    ledger.opt_out(org, Channel.EMAIL, email, source=Source.ADMIN, actor=Actor.system())
    ledger.opt_out(org, Channel.TEXT, number, source=Source.ADMIN, actor=Actor.system())
    db.session.commit()
    before = len(sent_to(email))
    ledger.opt_out(org, Channel.VOICE, number, source=Source.ADMIN, actor=Actor.system())
    db.session.commit()
    assert len(sent_to(email)) == before  # no "you will no longer get calls" to it
    assert notifications.confirmation_destinations(org, Channel.VOICE, number) == []
    state = state_of(org, Channel.VOICE, number)
    url = f"/admin/optouts/row/{state.id}/"
    world.login(client, "org")
    assert f'value="{email}"' not in client.get(url).get_data(as_text=True)
    client.post(
        url, data={"attested": "y", "send_to": email, "csrf_token": csrf_token(client, url)}
    )
    assert sent_to(email, "confirm_request") == [] and requests_of(number) == []


# --- the public opt-back-in page ------------------------------------------------------------


def ask(client, channel, address):
    return client.post(
        "/opt-back-in",
        data={
            "csrf_token": csrf_token(client, "/opt-back-in"),
            "channel": channel,
            "address": address,
        },
    ).get_data(as_text=True)


def test_public_opt_back_in_sends_nothing_to_a_phone(client, org):
    """Anyone can type a number: an opted-out one gets nothing, and the page says the same as
    for a number never seen."""
    number, stranger = factories.next_number(), factories.next_number()
    by_portal(client, org, number)
    for channel in ("text", "voice"):
        known, unknown = ask(client, channel, number), ask(client, channel, stranger)
        assert known.replace(number, "X") == unknown.replace(stranger, "X")
    assert sent_to(number) == [] or all(m.purpose != "confirm_request" for m in sent_to(number))
    assert requests_of(number) == []


def test_public_opt_back_in_emails_an_address_at_most_once_a_day(client, org, mailbox):
    """Three asks in a day: one confirmation email; the page says the same each time and the
    same as for an address never seen."""
    by_admin_email = "ana@example.org"
    ledger.opt_out(org, Channel.EMAIL, by_admin_email, source=Source.ADMIN, actor=Actor.system())
    db.session.commit()
    pages = [ask(client, "email", by_admin_email) for _ in range(3)]
    unknown = ask(client, "email", "nobody@example.org")
    assert len({p for p in pages}) == 1
    assert pages[0].replace(by_admin_email, "X") == unknown.replace("nobody@example.org", "X")
    assert "at most one confirmation a day to each address" in html.unescape(pages[0])
    assert len([m for m in mailbox.to(by_admin_email) if mailbox.links(m, "/confirm/")]) == 1
    assert sent_to("nobody@example.org") == []


# --- preferences links ----------------------------------------------------------------------


@pytest.fixture
def lopez(org):
    """A contact with an email and a cell, and the preferences link of that email."""
    family = factories.make_family(org, org.sites[0], name="Lopez", contacts=1, students=0)
    db.session.commit()
    contact = family.contacts[0]
    email, cell = contact.emails[0].address, contact.phones[0].number
    return email, cell, "/preferences/" + notifications.preferences_token(org, email)


def press(client, url, answer):
    words = {"yes": "Yes, send me text messages", "no": "No, do not send me text messages"}
    return client.post(
        url, data={"csrf_token": csrf_token(client, "/opt-back-in"), answer: words[answer]}
    )


def test_preferences_link_is_spent_when_a_covered_number_changes(client, org, lopez):
    """The email's own state did not move, but its cell replied STOP: the link is spent, and
    replaying "Yes" changes nothing."""
    email, cell, url = lopez
    assert client.get(url).status_code == 200
    by_stop(client, org, cell)
    assert client.get(url).status_code == 410
    replay = press(client, url, "yes")
    assert replay.status_code == 410
    state = state_of(org, Channel.TEXT, cell)
    assert state.status == Status.OPTED_OUT and state.carrier_block
    assert state_of(org, Channel.EMAIL, email) is None


def test_preferences_link_is_spent_when_a_number_is_added_to_the_person(client, org, lopez):
    """A new cell on the person's record is a choice the old link never showed: spent."""
    email, _cell, url = lopez
    contact = db.session.scalars(sa.select(EmailAddress).where(EmailAddress.address == email)).one()
    db.session.add(
        Phone(contact_id=contact.contact_id, number=factories.next_number(), kind=PhoneKind.CELL)
    )
    db.session.commit()
    assert client.get(url).status_code == 410


def test_preferences_yes_never_lifts_an_opt_out(client, org, lopez):
    """A number opted out some other way than STOP: "Yes" leaves it opted out and the page
    says only the phone can opt back in, by texting START."""
    email, cell, url = lopez
    by_portal(client, org, cell)
    url = "/preferences/" + notifications.preferences_token(org, email)
    page = html.unescape(press(client, url, "yes").get_data(as_text=True))
    assert "Only the phone itself can opt back in, by texting START to +1 202-555-0100" in page
    assert state_of(org, Channel.TEXT, cell).status == Status.OPTED_OUT
    assert api_reason(client, "text", cell) == "opted_out"


# --- site teams see their own site's names --------------------------------------------------


@pytest.fixture
def high_family(demo):
    """A demo family whose students are all at Maple Valley High, its first student's cell
    opted out of texts (and a contact's cell too)."""
    families = db.session.scalars(sa.select(Family).where(Family.organization_id == demo.org.id))
    family = next(
        f
        for f in families
        if f.students
        and all(s.site_id == demo.high.id for s in f.students)
        and any(s.phones for s in f.students)
        and any(c.phones for c in f.contacts)
    )
    student = next(s for s in family.students if s.phones)
    contact = next(c for c in family.contacts if c.phones)
    for number in (student.phones[0].number, contact.phones[0].number):
        ledger.opt_out(demo.org, Channel.TEXT, number, source=Source.ADMIN, actor=Actor.system())
    db.session.commit()
    return student, contact


def list_and_exports(client, number: str) -> dict[str, str]:
    return {
        "list": client.get("/admin/optouts/", query_string={"search": number}).get_data(
            as_text=True
        ),
        "row": client.get(
            "/admin/optouts/row/{}/".format(
                db.session.scalars(
                    sa.select(ConsentState.id).where(
                        ConsentState.address == number, ConsentState.channel == "text"
                    )
                ).one()
            )
        ).get_data(as_text=True),
        "csv": client.get("/admin/optouts/export.csv").get_data(as_text=True),
        "people csv": client.get("/admin/optouts/export-people.csv").get_data(as_text=True),
    }


def test_site_team_sees_no_names_of_another_sites_family(app, client, auth, demo, high_family):
    """Signed in as the Elementary site team: the High family's opt-outs are listed (opt-outs
    are organization-wide) but no name of theirs shows, on the list, the row or any export;
    the organization team sees the names."""
    student, contact = high_family
    number = student.phones[0].number
    auth.login("site@example.org", "site-demo-pass")
    seen = list_and_exports(client, number)
    assert "+1 " in seen["list"] and number in seen["csv"]
    for where, text in seen.items():
        assert student.name not in text, where
        assert contact.name not in text, where
    admin = app.test_client()
    Auth(admin).login("admin@example.org", "admin-demo-pass")
    seen = list_and_exports(admin, number)
    for where in ("list", "row", "csv", "people csv"):
        assert student.name in seen[where], where


def test_site_team_still_sees_its_own_sites_names(client, auth, demo):
    """The Elementary team sees the names of Elementary people in the list and exports."""
    student = next(
        s
        for s in db.session.scalars(sa.select(Student).where(Student.site_id == demo.elementary.id))
        if s.phones
    )
    number = student.phones[0].number
    ledger.opt_out(demo.org, Channel.TEXT, number, source=Source.ADMIN, actor=Actor.system())
    db.session.commit()
    auth.login("site@example.org", "site-demo-pass")
    rows = list(
        csv.reader(io.StringIO(client.get("/admin/optouts/export.csv").get_data(as_text=True)))
    )
    named = [row for row in rows if row and row[0] == "'" + number]  # neutralized
    assert named and student.name in named[0][-1]
    people = client.get("/admin/optouts/export-people.csv").get_data(as_text=True)
    assert student.name in people


# --- what the records prove, not what a parent typed -----------------------------------------


def test_a_number_typed_on_a_strangers_record_sends_its_confirmation_nowhere_near_them(world):
    """Someone types another person's number on their own record (never confirmed): the
    number's opt-back-in is never offered to that record's emails."""
    from consent import verification

    victim = world.far.contacts[0]
    number = victim.phones[0].number
    stranger = world.near.contacts[0]
    typed = Phone(number=number, kind=PhoneKind.CELL, is_primary=False)
    stranger.phones.append(typed)
    verification.mark_unverified(typed)
    ledger.opt_out(world.org, Channel.VOICE, number, source=Source.ADMIN, actor=Actor.system())
    db.session.commit()
    places = {d.to for d in notifications.confirmation_destinations(world.org, "voice", number)}
    assert not places & {e.address for e in stranger.emails}
    assert victim.emails[0].address in places


def test_an_email_a_parent_typed_and_confirmed_on_another_record_is_no_destination(world):
    """Proving a mailbox is the reader's proves nothing about whose record it is on: an email
    that only a link confirmed is not where another person's opt-back-in goes."""
    from consent import verification

    victim = world.far.contacts[0]
    number = victim.phones[0].number
    typed = EmailAddress(address="reader@example.net")
    victim.emails.append(typed)
    verification.mark_verified(typed, verification.Method.EMAIL_LINK)
    ledger.opt_out(world.org, Channel.VOICE, number, source=Source.ADMIN, actor=Actor.system())
    db.session.commit()
    places = {d.to for d in notifications.confirmation_destinations(world.org, "voice", number)}
    assert "reader@example.net" not in places
    assert victim.emails[0].address in places
