"""Staff edit records: add, correct or remove a contact's or student's phone (with its type)
and email, with seed 001's Text Opt-In checkbox beside a cell. Consent changes only through
the ledger (a staff entry, an admin opt-out); a number's state stays with the number."""

from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import ledger, records
from consent.addresses import format_phone
from consent.extensions import db
from consent.ledger import Actor, Origin
from consent.models import (
    Channel,
    ConsentEvent,
    EmailAddress,
    Phone,
    PhoneKind,
    Source,
    Status,
)
from tests import factories
from tests.admin_world import session_token
from tests.conftest import Auth, csrf_token


def state_of(org, channel, address):
    db.session.expire_all()
    return ledger.current(org, channel, address)


def events_of(address):
    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(ConsentEvent).where(ConsentEvent.address == address).order_by(ConsentEvent.id)
        )
    )


def text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", response.get_data(as_text=True)))


def submit(client, path, prefix, fields, token_page=None, **extra):
    """POST one of the record page's forms: its prefixed fields and CSRF token."""
    token = csrf_token(client, token_page) if token_page else session_token(client)
    data = {f"{prefix}-{name}": value for name, value in fields.items()}
    data.update({f"{prefix}-csrf_token": token, "csrf_token": token}, **extra)
    return client.post(path, data=data)


def no_cell_contact(world):
    """The near family's second contact, without phones (to add one)."""
    contact = world.near.contacts[1]
    for phone in list(contact.phones):
        db.session.delete(phone)
    db.session.commit()
    return contact


def add_phone(client, contact, number, kind="cell", tick=True, kind_path="contacts"):
    fields = {"number": number, "kind": kind}
    if tick:
        fields["text_opt_in"] = "y"
    page = f"/admin/{kind_path}/{contact.id}/"
    return submit(client, f"{page}phones/", "new-phone", fields, token_page=page)


# --- adding a cell: Text Opt-In ---------------------------------------------------------------


def test_adding_a_cell_with_text_opt_in_is_a_staff_entry_in_the_activity_log(client, world):
    """A new cell with the box ticked: opted in, source staff_entry, evidence names the page,
    the staff member and the person; the record's log and the Activity Log show it."""
    contact = no_cell_contact(world)
    number = factories.next_number()
    world.login(client, "org")
    response = add_phone(client, contact, format_phone(number))
    assert response.status_code == 302
    page = text(client.get(f"/admin/contacts/{contact.id}/"))
    assert f"Text Opt-In: {format_phone(number)} is opted in to text messages" in page
    state = state_of(world.org, Channel.TEXT, number)
    assert state.status == Status.OPTED_IN and state.source == Source.STAFF_ENTRY
    (event,) = events_of(number)
    assert event.actor_user_id == world.users["org"].id
    assert event.evidence["person"] == contact.name and event.evidence["page"] == "admin record"
    assert "Olga Org" in event.evidence["staff"]
    assert "no choice yet → allowed by staff entry" in page  # the record's own log, in words
    log = text(client.get("/admin/activity/", query_string={"flt0_address_equals": number}))
    assert "Texts: no choice yet → allowed by staff entry" in log


def test_adding_a_cell_unticked_records_no_choice(client, world):
    """Unticked on a new cell: the number is saved, and its consent stays unknown."""
    contact = no_cell_contact(world)
    number = factories.next_number()
    world.login(client, "org")
    add_phone(client, contact, number, tick=False)
    assert db.session.scalars(sa.select(Phone).where(Phone.number == number)).one()
    assert state_of(world.org, Channel.TEXT, number) is None


def test_adding_an_opted_out_number_keeps_the_opt_out(client, world):
    """A number that opted out elsewhere stays opted out: ticking never overrides a choice,
    and the page says how to ask the person."""
    contact = no_cell_contact(world)
    number = factories.next_number()
    ledger.opt_out(world.org, Channel.TEXT, number, source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    world.login(client, "org")
    add_phone(client, contact, number)
    page = text(client.get(f"/admin/contacts/{contact.id}/"))
    assert "stays opted out of text messages: staff entry never overrides a choice" in page
    assert state_of(world.org, Channel.TEXT, number).status == Status.OPTED_OUT
    assert len(events_of(number)) == 1


def test_adding_a_cell_that_replied_stop_says_how_to_lift_it(client, world):
    """A STOP-blocked number: the carrier-block reason, with the texting number."""
    contact = no_cell_contact(world)
    number = factories.next_number()
    ledger.opt_out(
        world.org,
        Channel.TEXT,
        number,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient(),
        carrier_block=True,
    )
    db.session.commit()
    world.login(client, "site")
    add_phone(client, contact, number)
    assert "START to +1 202-555-0100" in text(client.get(f"/admin/contacts/{contact.id}/"))
    assert state_of(world.org, Channel.TEXT, number).carrier_block


def test_staff_entry_off_starts_the_cell_with_no_choice(client, world):
    """With the organization's rule off, a ticked box records nothing and says why."""
    world.org.staff_cell_starts_opted_in = False
    db.session.commit()
    contact = no_cell_contact(world)
    number = factories.next_number()
    world.login(client, "org")
    add_phone(client, contact, number)
    assert "Text Opt-In is not recorded" in text(client.get(f"/admin/contacts/{contact.id}/"))
    assert state_of(world.org, Channel.TEXT, number) is None


def test_a_student_gets_a_cell_the_same_way(client, world):
    """The student page has the same forms (seed 001: the Summary tab's Cell Phone)."""
    student = world.near.students[0]
    number = factories.next_number()
    world.login(client, "org")
    assert 'name="new-phone-text_opt_in"' in client.get(f"/admin/students/{student.id}/").text
    add_phone(client, student, number, kind_path="students")
    assert state_of(world.org, Channel.TEXT, number).status == Status.OPTED_IN


# --- correcting and unticking -----------------------------------------------------------------


def change(client, contact, phone, **fields):
    page = f"/admin/contacts/{contact.id}/"
    prefix = f"phone-{phone.id}"
    return submit(client, f"{page}phones/{phone.id}/", prefix, fields, token_page=page)


def test_the_box_shows_the_numbers_text_opt_in(client, world):
    """An opted-in cell's box is ticked on its form; an opted-out one's is not."""
    contact = world.near.contacts[0]
    phone = contact.phones[0]
    world.login(client, "org")
    page = client.get(f"/admin/contacts/{contact.id}/").get_data(as_text=True)
    box = re.search(rf'<input[^>]*name="phone-{phone.id}-text_opt_in"[^>]*>', page).group(0)
    assert "checked" in box


def test_unticking_text_opt_in_is_an_admin_opt_out_with_a_note(client, world):
    """Unticking an opted-in cell: opted out, source admin, the note kept, the event in the log."""
    contact = world.near.contacts[0]
    phone = contact.phones[0]
    world.login(client, "site")
    response = change(
        client, contact, phone, number=phone.number, kind="cell", note="Called the office"
    )
    assert response.status_code == 302
    page = text(client.get(f"/admin/contacts/{contact.id}/"))
    assert f"Text Opt-In unticked: {format_phone(phone.number)} is opted out" in page
    state = state_of(world.org, Channel.TEXT, phone.number)
    assert state.status == Status.OPTED_OUT and state.source == Source.ADMIN
    event = events_of(phone.number)[-1]
    assert event.note == "Called the office" and event.actor_user_id == world.users["site"].id
    assert event.evidence["control"] == "Text Opt-In unticked"
    assert "Called the office" in page  # the record's activity log


def test_ticking_an_opted_out_cell_again_does_not_opt_it_in(client, world):
    """After an opt-out, ticking the box is a staff entry the ledger keeps from overriding."""
    contact = world.near.contacts[0]
    phone = contact.phones[0]
    world.login(client, "org")
    change(client, contact, phone, number=phone.number, kind="cell")  # untick
    change(client, contact, phone, number=phone.number, kind="cell", text_opt_in="y")
    assert state_of(world.org, Channel.TEXT, phone.number).status == Status.OPTED_OUT
    assert [e.to_status for e in events_of(phone.number)][-1] == Status.OPTED_OUT


def test_correcting_a_number_leaves_the_old_numbers_choices_in_the_ledger(client, world):
    """A corrected number: the record has the new one; the old keeps its state and events."""
    contact = world.near.contacts[0]
    phone = contact.phones[0]
    old = phone.number
    old_events = len(events_of(old))
    new = factories.next_number()
    world.login(client, "org")
    response = change(client, contact, phone, number=new, kind="cell", text_opt_in="y")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Phone, phone.id).number == new
    assert state_of(world.org, Channel.TEXT, old).status == Status.OPTED_IN
    assert len(events_of(old)) == old_events
    assert state_of(world.org, Channel.TEXT, new).source == Source.STAFF_ENTRY
    assert "is corrected to" in text(client.get(f"/admin/contacts/{contact.id}/"))


def test_changing_a_cell_to_home_keeps_its_consent(client, world):
    """The type changes on the record; the number's text choice stays as it was."""
    contact = world.near.contacts[0]
    phone = contact.phones[0]
    world.login(client, "org")
    change(client, contact, phone, number=phone.number, kind="home")
    db.session.expire_all()
    assert db.session.get(Phone, phone.id).kind == PhoneKind.HOME
    assert state_of(world.org, Channel.TEXT, phone.number).status == Status.OPTED_IN


def test_removing_a_phone_keeps_its_consent_in_the_ledger(client, world):
    """Removed from the record; its state and events stay."""
    contact = world.near.contacts[0]
    phone = contact.phones[0]
    number = phone.number
    before = len(events_of(number))
    world.login(client, "org")
    page = f"/admin/contacts/{contact.id}/"
    response = client.post(
        f"{page}phones/{phone.id}/remove", data={"csrf_token": csrf_token(client, page)}
    )
    assert response.status_code == 302
    assert db.session.scalars(sa.select(Phone).where(Phone.id == phone.id)).first() is None
    assert state_of(world.org, Channel.TEXT, number).status == Status.OPTED_IN
    assert len(events_of(number)) == before
    assert "is removed from the record" in text(client.get(page))


# --- emails -----------------------------------------------------------------------------------


def test_add_correct_and_remove_an_email(client, world):
    """An email is added (normalized), corrected, and removed; its consent stays put."""
    contact = world.near.contacts[0]
    page = f"/admin/contacts/{contact.id}/"
    world.login(client, "org")
    submit(client, f"{page}emails/", "new-email", {"address": " Ana.New@Example.ORG "}, page)
    db.session.expire_all()
    email = db.session.scalars(
        sa.select(EmailAddress).where(EmailAddress.address == "ana.new@example.org")
    ).one()
    ledger.opt_out(
        world.org, Channel.EMAIL, email.address, source=Source.ADMIN, actor=Actor.system()
    )
    db.session.commit()
    submit(
        client, f"{page}emails/{email.id}/", f"email-{email.id}", {"address": "ana@new.org"}, page
    )
    db.session.expire_all()
    assert db.session.get(EmailAddress, email.id).address == "ana@new.org"
    assert state_of(world.org, Channel.EMAIL, "ana.new@example.org").status == Status.OPTED_OUT
    assert state_of(world.org, Channel.EMAIL, "ana@new.org") is None
    client.post(f"{page}emails/{email.id}/remove", data={"csrf_token": csrf_token(client, page)})
    assert db.session.get(EmailAddress, email.id) is None


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"number": "12", "kind": "cell"}, "This is not a phone number"),
        ({"number": "", "kind": "cell"}, "Enter the phone number."),
        ({"number": "202-555-0199", "kind": "fax"}, "Not a valid choice"),
    ],
    ids=["too short", "empty", "bad type"],
)
def test_bad_phone_input_says_why_beside_the_field_and_saves_nothing(client, world, fields, words):
    """The page again (422), the message at its field, nothing saved."""
    contact = no_cell_contact(world)
    before = snapshot(contact)
    page = f"/admin/contacts/{contact.id}/"
    world.login(client, "org")
    response = submit(client, f"{page}phones/", "new-phone", fields, page)
    assert response.status_code == 422
    assert words in text(response) and "Nothing was saved" in text(response)
    assert re.search(r'id="new-phone-(number|kind)-error"', response.text)
    assert snapshot(contact) == before


def test_a_number_the_person_already_has_is_refused(client, world):
    """The same number twice on one record, typed another way: refused at the field."""
    contact = world.near.contacts[0]
    number = contact.phones[0].number
    page = f"/admin/contacts/{contact.id}/"
    world.login(client, "org")
    dashed = f"({number[2:5]}) {number[5:8]}-{number[8:]}"
    response = submit(
        client, f"{page}phones/", "new-phone", {"number": dashed, "kind": "home"}, page
    )
    assert response.status_code == 422
    assert f"{contact.name} already has this number on record" in text(response)
    db.session.expire_all()
    assert len(db.session.get(type(contact), contact.id).phones) == 1


def test_an_email_the_person_already_has_is_refused(client, world):
    contact = world.near.contacts[0]
    address = contact.emails[0].address
    page = f"/admin/contacts/{contact.id}/"
    world.login(client, "org")
    response = submit(client, f"{page}emails/", "new-email", {"address": address.upper()}, page)
    assert response.status_code == 422
    assert "already has this email address on record" in text(response)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(number=st.text(max_size=50), address=st.text(max_size=80))
def test_any_text_typed_is_saved_normalized_or_refused_clearly(world, number, address):
    """Whatever is typed, the core saves a normalized address or raises RecordError; nothing
    else (and never a consent change for a refused input)."""
    contact = world.near.contacts[0]
    by = records.Staff(Actor.system("test"), Origin())
    for call in (
        lambda: records.add_phone(
            world.org, contact, number=number, kind="cell", text_opt_in=True, by=by
        ),
        lambda: records.add_email(world.org, contact, address=address),
    ):
        try:
            call()
        except records.RecordError as refusal:
            assert refusal.field in ("number", "address") and refusal.message
        db.session.rollback()


# --- who may edit -----------------------------------------------------------------------------


def edit_routes(world):
    """Every new route for the far family's first contact (at Maple Valley High)."""
    contact = world.far.contacts[0]
    phone, email = contact.phones[0], contact.emails[0]
    base = f"/admin/contacts/{contact.id}/"
    return contact, [
        (f"{base}phones/", "new-phone", {"number": "202-555-0177", "kind": "cell"}),
        (
            f"{base}phones/{phone.id}/",
            f"phone-{phone.id}",
            {"number": phone.number, "kind": "cell"},
        ),
        (f"{base}phones/{phone.id}/remove", "x", {}),
        (f"{base}emails/", "new-email", {"address": "new@example.org"}),
        (f"{base}emails/{email.id}/", f"email-{email.id}", {"address": "fix@example.org"}),
        (f"{base}emails/{email.id}/remove", "x", {}),
    ]


def snapshot(contact):
    db.session.expire_all()
    person = db.session.get(type(contact), contact.id)
    return (
        sorted((p.number, p.kind.value) for p in person.phones),
        sorted(e.address for e in person.emails),
        len(db.session.scalars(sa.select(ConsentEvent)).all()),
    )


@pytest.mark.parametrize(
    ("who", "status"),
    [("site", 404), ("staff", 403), ("parent", 403), ("logged out", 302)],
)
def test_wrong_users_cannot_edit_a_record(client, world, who, status):
    """Another site's team: 404 (the record is not theirs to see); staff (read-only) and a
    parent: 403; signed out: sent to sign in. Nothing changes."""
    contact, routes = edit_routes(world)
    before = snapshot(contact)
    if who != "logged out":
        world.login(client, who)
    for path, prefix, fields in routes:
        response = submit(client, path, prefix, fields)
        assert response.status_code == status, (who, path)
    assert snapshot(contact) == before


def test_staff_see_no_edit_forms(client, world):
    """Staff read statuses only: the page has no record forms."""
    world.login(client, "staff")
    page = client.get(f"/admin/contacts/{world.near.contacts[0].id}/").get_data(as_text=True)
    assert "new-phone" not in page and "Text Opt-In" not in page


def test_the_other_sites_team_may_edit_its_own(client, world):
    """The High team edits the High family's record."""
    contact, routes = edit_routes(world)
    world.login(client, "site_high")
    path, prefix, fields = routes[0]
    assert submit(client, path, prefix, fields).status_code == 302
    assert ("+12025550177", "cell") in snapshot(contact)[0]


def test_every_new_form_needs_its_csrf_token(client, world):
    """Without a token: 400 and nothing changes, for each new form."""
    contact, routes = edit_routes(world)
    before = snapshot(contact)
    world.login(client, "org")
    for path, prefix, fields in routes:
        data = {f"{prefix}-{name}": value for name, value in fields.items()}
        assert client.post(path, data=data).status_code == 400, path
    assert snapshot(contact) == before


def test_a_phone_of_another_record_is_404(client, world):
    """A phone id of someone else, through this record's URL: 404."""
    contact = world.near.contacts[0]
    theirs = world.far.contacts[0].phones[0]
    world.login(client, "org")
    path = f"/admin/contacts/{contact.id}/phones/{theirs.id}/remove"
    assert client.post(path, data={"csrf_token": session_token(client)}).status_code == 404
    assert db.session.get(Phone, theirs.id) is not None


def test_admin_as_parent_is_not_an_editor(client, world):
    """A parent login reaching the admin routes is refused (its own family included)."""
    contact = world.near.contacts[0]
    Auth(client).login(world.users["parent"].email, factories.PASSWORD)
    path = f"/admin/contacts/{contact.id}/phones/"
    response = submit(client, path, "new-phone", {"number": "202-555-0166", "kind": "cell"})
    assert response.status_code == 403
