"""Admin Contacts and Students: search, status per channel, toggles through the ledger, site
scoping, staff read-only, each record's activity log."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import ledger
from consent.addresses import format_phone
from consent.extensions import db
from consent.ledger import Actor
from consent.models import (
    Channel,
    Phone,
    PhoneKind,
    Source,
    Status,
)
from tests import factories
from tests.conftest import csrf_token
from tests.helpers import events_of, state_of


def _post_consent(client, kind, record_id, **data):
    token = csrf_token(client, f"/admin/{kind}/{record_id}/")
    return client.post(f"/admin/{kind}/{record_id}/consent", data={"csrf_token": token, **data})


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


# --- the lists and search -------------------------------------------------------------------


def test_contact_list_shows_each_address_status_in_words(client, world):
    """The contact list shows each phone's text status in words, and "No choice yet"."""
    world.login(client, "org")
    page = _text(client.get("/admin/contacts/"))
    contact = world.near.contacts[0]
    assert format_phone(contact.phones[0].number) in page
    assert "Opted in" in page
    assert "No choice yet" in page  # calls and email have no choice on record
    assert "badge-success" in page and "badge-secondary" in page


@pytest.mark.parametrize(
    "shape",
    [
        lambda n: n,  # E.164
        lambda n: n[2:],  # digits
        lambda n: f"{n[2:5]}-{n[5:8]}-{n[8:]}",  # dashed
        lambda n: f"({n[2:5]}) {n[5:8]}-{n[8:]}",
    ],
    ids=["e164", "digits", "dashed", "parens"],
)
def test_search_finds_contact_by_phone_however_typed(client, world, shape):
    """A phone search finds the contact whether typed as digits, dashed or E.164."""
    world.login(client, "org")
    wanted = world.near.contacts[1]
    other = world.near.contacts[0]
    page = _text(client.get("/admin/contacts/", query_string={"q": shape(wanted.phones[0].number)}))
    assert f"{wanted.last_name}, {wanted.first_name}" in page
    assert f"{other.last_name}, {other.first_name}" not in page


def test_search_finds_by_name_and_by_email(client, world):
    """A search by name (any order, any case) and by email finds the right records."""
    world.login(client, "org")
    page = _text(client.get("/admin/contacts/", query_string={"q": "okafor parent2"}))
    assert "Okafor, Parent2" in page and "Okafor, Parent1" not in page and "Rivera" not in page
    email = world.far.contacts[0].emails[0].address
    page = _text(client.get("/admin/contacts/", query_string={"q": email.upper()}))
    assert "Okafor, Parent1" in page and "Okafor, Parent2" not in page
    page = _text(client.get("/admin/students/", query_string={"q": "Kid0 Rivera"}))
    assert "Rivera, Kid0" in page and "Okafor" not in page


def test_search_with_no_match_says_so(client, world):
    """A search that matches nothing says so in words."""
    world.login(client, "org")
    page = _text(client.get("/admin/students/", query_string={"q": "Nobody"}))
    assert "No students match" in page


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.text(max_size=60))
def test_search_answers_any_text(client, world, query):
    """Any search text gets a page (never a server error)."""
    if not getattr(client, "_signed_in", False):
        world.login(client, "org")
        client._signed_in = True
    for kind in ("contacts", "students"):
        assert client.get(f"/admin/{kind}/", query_string={"q": query}).status_code == 200


def test_list_pages_take_the_same_number_of_queries_for_more_rows(client, world, count_queries):
    """The contact and student lists run a fixed number of queries, however many rows."""
    world.login(client, "org")
    counts = {}
    for size in ("small", "large"):
        if size == "large":
            for index in range(12):
                factories.make_family(world.org, world.high, name=f"Extra{index}", contacts=3)
            db.session.commit()
        for kind in ("contacts", "students"):
            with count_queries() as queries:
                assert client.get(f"/admin/{kind}/").status_code == 200
            counts[(kind, size)] = queries.count
    assert counts[("contacts", "small")] == counts[("contacts", "large")]
    assert counts[("students", "small")] == counts[("students", "large")]


def test_list_pages_move_forward_and_back(client, world):
    """More than a page of contacts gives a Next link, and the next page shows the rest."""
    from consent import people

    world.login(client, "org")
    for index in range(people.PAGE_SIZE // 2):
        factories.make_family(world.org, world.high, name=f"Zed{index:02d}", contacts=2)
    db.session.commit()
    first = _text(client.get("/admin/contacts/"))
    assert "Next" in first and "Previous" not in first
    second = _text(client.get("/admin/contacts/?page=2"))
    assert "Previous" in second and "Zed24, Parent2" in second


# --- site scoping and roles -----------------------------------------------------------------


@pytest.mark.parametrize("who", ["site", "staff"])
def test_site_roles_see_only_their_sites_people(client, world, who):
    """A site team or staff member lists only their site's contacts and students, and gets
    404 for a record of another site."""
    world.login(client, who)
    contacts = _text(client.get("/admin/contacts/"))
    students = _text(client.get("/admin/students/"))
    assert "Rivera" in contacts and "Okafor" not in contacts
    assert "Rivera" in students and "Okafor" not in students
    far_contact = world.far.contacts[0]
    far_student = world.far.students[0]
    assert client.get(f"/admin/contacts/{far_contact.id}/").status_code == 404
    assert client.get(f"/admin/students/{far_student.id}/").status_code == 404
    assert client.get(f"/admin/contacts/{world.near.contacts[0].id}/").status_code == 200


def test_site_admin_cannot_change_another_sites_contact(client, world):
    """A POST to the toggle of another site's contact answers 404 and changes nothing."""
    world.login(client, "site")
    contact = world.far.contacts[0]
    number = contact.phones[0].number
    near = world.near.contacts[0].id
    token = csrf_token(client, f"/admin/contacts/{near}/")
    response = client.post(
        f"/admin/contacts/{contact.id}/consent",
        data={"csrf_token": token, "address": number, "channel": "text", "action": "opt_out"},
    )
    assert response.status_code == 404, response.get_data(as_text=True)
    assert state_of(world.org, "text", number).status == Status.OPTED_IN


def test_org_team_sees_every_site(client, world):
    """The organization team lists both sites' contacts."""
    world.login(client, "org")
    page = _text(client.get("/admin/contacts/"))
    assert "Rivera" in page and "Okafor" in page


def test_staff_see_statuses_read_only(client, world):
    """Staff see the statuses without toggles, and a POST to a toggle is 403."""
    world.login(client, "staff")
    contact = world.near.contacts[0]
    number = contact.phones[0].number
    page = _text(client.get(f"/admin/contacts/{contact.id}/"))
    assert "Opted in" in page and "read-only" in page
    assert "Turn off" not in page and "/consent" not in page
    token = csrf_token(client)  # staff pages show no form
    response = client.post(
        f"/admin/contacts/{contact.id}/consent",
        data={"csrf_token": token, "address": number, "channel": "text", "action": "opt_out"},
    )
    assert response.status_code == 403
    assert state_of(world.org, "text", number).status == Status.OPTED_IN


# --- the toggles through the ledger ---------------------------------------------------------


def test_turning_off_texts_opts_out_with_admin_source_actor_and_note(client, world):
    """Turning a contact's texts off opts the number out: source admin, the admin as actor,
    the note kept; the page then shows "Opted out"."""
    world.login(client, "site")
    contact = world.near.contacts[0]
    number = contact.phones[0].number
    response = _post_consent(
        client,
        "contacts",
        contact.id,
        address=number,
        channel="text",
        action="opt_out",
        confirm="yes",
        note="Asked at the front desk",
    )
    assert response.status_code == 302
    state = state_of(world.org, "text", number)
    assert state.status == Status.OPTED_OUT and state.source == Source.ADMIN
    event = events_of(number)[-1]
    assert event.source == Source.ADMIN and event.to_status == Status.OPTED_OUT
    assert event.actor_user_id == world.users["site"].id
    assert "Sam Site" in event.actor_label and event.note == "Asked at the front desk"
    page = _text(client.get(response.headers["Location"]))
    assert "is opted out of text messages" in page and "Opted out" in page
    assert "Asked at the front desk" in page  # in the record's activity log


def test_turning_email_back_on_sends_a_confirmation_and_does_not_opt_in(client, world, mailbox):
    """Turning email back on (attested) emails the person a confirmation link; the status
    stays opted out until they confirm."""
    world.login(client, "org")
    contact = world.near.contacts[1]
    email = contact.emails[0].address
    ledger.opt_out(
        world.org,
        Channel.EMAIL,
        email,
        source=Source.PORTAL,
        actor=Actor.recipient(),
        confirm=False,
        notify_org=False,
    )
    db.session.commit()
    response = _post_consent(
        client,
        "contacts",
        contact.id,
        address=email,
        channel="email",
        action="opt_back_in",
        attested="y",
        note="Called us",
    )
    assert response.status_code == 302
    assert state_of(world.org, "email", email).status == Status.OPTED_OUT
    request_event = events_of(email)[-1]
    assert request_event.kind == "request" and request_event.source == Source.ADMIN
    assert request_event.evidence["attested"] is True and request_event.note == "Called us"
    assert request_event.actor_user_id == world.users["org"].id
    arrived = mailbox.to(email)
    assert len(arrived) == 1 and mailbox.links(arrived[0], "/confirm/")
    page = _text(client.get(response.headers["Location"]))
    assert "A confirmation was sent" in page and "Opted out" in page


def test_turning_on_without_attesting_is_refused(client, world, mailbox):
    """Without the attestation box ticked, nothing is sent and the page says why."""
    world.login(client, "org")
    contact = world.near.contacts[1]
    email = contact.emails[0].address
    ledger.opt_out(
        world.org,
        Channel.EMAIL,
        email,
        source=Source.PORTAL,
        actor=Actor.recipient(),
        confirm=False,
        notify_org=False,
    )
    db.session.commit()
    before = len(events_of(email))
    response = _post_consent(
        client, "contacts", contact.id, address=email, channel="email", action="opt_back_in"
    )
    page = _text(client.get(response.headers["Location"]))
    assert "This person asked me to opt them back in" in page
    assert len(events_of(email)) == before and mailbox.to(email) == []


def test_carrier_blocked_number_shows_the_reason_and_cannot_be_turned_on(client, world):
    """A number that replied STOP shows "Blocked by STOP reply" and the texting number, and
    an opt-back-in request is refused with that reason."""
    world.login(client, "org")
    student = world.near.students[0]
    number = student.phones[0].number
    ledger.opt_out(
        world.org,
        Channel.TEXT,
        number,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient(),
        carrier_block=True,
        confirm=False,
        notify_org=False,
    )
    db.session.commit()
    page = _text(client.get(f"/admin/students/{student.id}/"))
    assert "Blocked by STOP reply" in page and "texting START to +1 202-555-0100" in page
    before = len(events_of(number))
    response = _post_consent(
        client,
        "students",
        student.id,
        address=number,
        channel="text",
        action="opt_back_in",
        attested="y",
    )
    page = _text(client.get(response.headers["Location"]))
    assert "only the person can lift that".lower() in page.lower()
    assert len(events_of(number)) == before


def test_org_team_clears_a_bounce_and_site_team_may_not(client, world):
    """An amber "Bounced" address is cleared by the organization team (event source admin);
    the site team's POST is 403."""
    student = world.near.students[0]
    number = student.phones[0].number
    ledger.mark_bounced(world.org, Channel.VOICE, number)
    db.session.commit()
    world.login(client, "site")
    page = _text(client.get(f"/admin/students/{student.id}/"))
    assert "Bounced" in page and "badge-warning" in page and "Clear the bounce" not in page
    response = _post_consent(
        client, "students", student.id, address=number, channel="voice", action="clear_bounce"
    )
    assert response.status_code == 403
    assert state_of(world.org, "voice", number).status == Status.BOUNCED
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    world.login(client, "org")
    response = _post_consent(
        client,
        "students",
        student.id,
        address=number,
        channel="voice",
        action="clear_bounce",
        note="Number fixed",
    )
    assert response.status_code == 302
    assert state_of(world.org, "voice", number).status == Status.UNKNOWN
    event = events_of(number)[-1]
    assert event.source == Source.ADMIN and event.note == "Number fixed"
    assert event.actor_user_id == world.users["org"].id


def test_toggle_for_an_address_not_on_the_record_is_404(client, world):
    """A toggle naming an address that the record does not have answers 404."""
    world.login(client, "org")
    contact = world.near.contacts[0]
    other = world.far.contacts[0].phones[0].number
    response = _post_consent(
        client,
        "contacts",
        contact.id,
        address=other,
        channel="text",
        action="opt_out",
        confirm="yes",
    )
    assert response.status_code == 404
    assert state_of(world.org, "text", other).status == Status.OPTED_IN


def test_toggle_without_csrf_token_is_400_and_changes_nothing(client, world):
    """A toggle POST without a CSRF token answers 400 and changes nothing."""
    world.login(client, "org")
    contact = world.near.contacts[0]
    number = contact.phones[0].number
    response = client.post(
        f"/admin/contacts/{contact.id}/consent",
        data={"address": number, "channel": "text", "action": "opt_out"},
    )
    assert response.status_code == 400
    assert state_of(world.org, "text", number).status == Status.OPTED_IN
    assert len(events_of(number)) == 1


def test_record_activity_log_lists_its_addresses_events_newest_first(client, world):
    """A record's activity log shows the events of all its addresses, newest first, and no
    other record's events."""
    world.login(client, "org")
    contact = world.near.contacts[0]
    number = contact.phones[0].number
    email = contact.emails[0].address
    actor = Actor.for_user(world.users["org"])
    ledger.opt_out(
        world.org,
        Channel.TEXT,
        number,
        source=Source.ADMIN,
        actor=actor,
        note="first note",
        confirm=False,
    )
    ledger.opt_out(
        world.org,
        Channel.EMAIL,
        email,
        source=Source.ADMIN,
        actor=actor,
        note="second note",
        confirm=False,
    )
    db.session.commit()
    page = _text(client.get(f"/admin/contacts/{contact.id}/"))
    log = page[page.index("Activity log") :]
    assert log.index("second note") < log.index("first note") < log.index("enrollment")
    assert world.near.contacts[1].phones[0].number not in log


def test_student_record_shows_home_phone_on_voice_too(client, world):
    """Every phone shows both its text and its call status; an email shows its email status."""
    student = world.near.students[0]
    db.session.add(Phone(student=student, number=factories.next_number(), kind=PhoneKind.HOME))
    db.session.commit()
    world.login(client, "org")
    page = _text(client.get(f"/admin/students/{student.id}/"))
    assert "(home)" in page and page.count("Calls") >= 2 and "Texts" in page
