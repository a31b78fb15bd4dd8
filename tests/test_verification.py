"""A new phone or email is proven its owner's before the portal may change its consent: a code
sent by text to a cell (or read out in a call to a landline), a link sent to an email. What a
stranger could try with each form and link, and the journey in Chromium."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import ledger, outbox, verification
from consent.extensions import db
from consent.ledger import Actor
from consent.models import (
    AddressVerification,
    Channel,
    Contact,
    EmailAddress,
    Family,
    Organization,
    OutboxMessage,
    Phone,
    Source,
    Status,
    User,
    utcnow,
)
from tests.conftest import csrf_token
from tests.factories import PASSWORD, make_org, make_site
from tests.live import look
from tests.profile_helpers import (
    STRANGER_CELL,
    STRANGER_SHOWN,
    all_outbox,
    code_in,
    email_by_address,
    events_for,
    login,
    make_world,
    outbox_to,
    page,
    phone_by_number,
    post,
    state_of,
    toggle,
    verifications,
)


@pytest.fixture
def family(app):
    """Two families (Ana and Olga sign in) and an admin."""
    return make_world()


def add_phone(client, person, number=STRANGER_CELL, kind="cell"):
    kind_path = "students" if not isinstance(person, Contact) else "contacts"
    response = post(
        client, f"/account/{kind_path}/{person.id}/phones/new", {"number": number, "kind": kind}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return phone_by_number(person, number)


def add_email(client, person, address):
    response = post(client, f"/account/contacts/{person.id}/emails/new", {"address": address})
    assert response.status_code == 302
    return email_by_address(person, address)


def send_code(client, phone):
    return post(client, f"/account/verify-phone/{phone.id}/send")


def enter_code(client, phone, code):
    return post(client, f"/account/verify-phone/{phone.id}", {"code": code})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --- the stranger's number ------------------------------------------------------------------


def test_a_parent_cannot_turn_off_calls_of_someone_elses_cell_until_it_is_confirmed(
    client, auth, family
):
    """Ana adds a stranger's cell to her record and turns off its calls: refused, with why;
    no event. Confirm sends the code to that number (an outbox text), not to Ana; a wrong
    code changes nothing; the right one (which only the number's owner has) confirms it, and
    then the toggle works."""
    login(auth)
    phone = add_phone(client, family.ana)
    response = toggle(client, "/account/settings", f"phone-{phone.id}", "voice", "off")
    assert response.status_code == 302
    text = page(client, "/account/settings")
    assert "This number is not confirmed yet, so its choices cannot be changed here." in text
    assert state_of(family.org, Channel.VOICE, STRANGER_CELL) is None
    assert events_for(STRANGER_CELL) == []

    response = send_code(client, phone)
    assert response.status_code == 302
    assert response.location == f"/account/verify-phone/{phone.id}"
    assert f"We sent a code by text to {STRANGER_SHOWN}." in page(client, response.location)
    (message,) = all_outbox()
    assert (message.to_address, message.channel, message.purpose) == (
        STRANGER_CELL,
        "text",
        "verify_code",
    )
    assert message.status == "sent"  # recorded: no SMS provider in tests
    assert "Maple Valley School District" in message.body
    code = code_in(message)
    assert outbox_to(family.ana.phones[0].number) == []
    assert outbox_to(family.ana.emails[0].address) == []

    response = enter_code(client, phone, wrong(code))
    assert response.status_code == 400
    assert "That code is not right." in response.get_data(as_text=True)
    db.session.expire_all()
    assert phone.verified_at is None
    toggle(client, "/account/settings", f"phone-{phone.id}", "voice", "off")
    assert events_for(STRANGER_CELL) == []

    response = enter_code(client, phone, code)
    assert response.status_code == 302 and response.location == "/account/settings"
    text = page(client, "/account/settings")
    assert f"Thank you: {STRANGER_SHOWN} is confirmed." in text
    db.session.expire_all()
    assert phone.verified_at is not None and phone.verified_by == "text_code"
    toggle(client, "/account/settings", f"phone-{phone.id}", "voice", "off")
    assert state_of(family.org, Channel.VOICE, STRANGER_CELL) == Status.OPTED_OUT


def test_someone_elses_cell_on_another_contact_cannot_be_turned_on_or_off(client, auth, family):
    """On Luis's record as well: an unconfirmed cell's texts cannot be turned on or off."""
    login(auth)
    phone = add_phone(client, family.luis)
    path = f"/account/contacts/{family.luis.id}"
    for channel, allow in (("text", "on"), ("text", "off"), ("voice", "off")):
        toggle(client, path, f"phone-{phone.id}", channel, allow)
    assert events_for(STRANGER_CELL) == [] and all_outbox() == []
    assert "Not confirmed yet" in page(client, path)


def test_too_many_wrong_codes_kill_the_code(client, auth, family):
    """Five wrong codes, then the right one: refused; a new code must be asked for."""
    login(auth)
    phone = add_phone(client, family.ana)
    send_code(client, phone)
    code = code_in(all_outbox()[-1])
    for _ in range(verification.MAX_ATTEMPTS):
        assert enter_code(client, phone, wrong(code)).status_code == 400
    response = enter_code(client, phone, code)
    assert "Too many wrong codes. Ask for a new one." in response.get_data(as_text=True)
    db.session.expire_all()
    assert phone.verified_at is None
    (row,) = verifications()
    assert row.attempts == verification.MAX_ATTEMPTS


def test_a_used_code_cannot_be_replayed_after_the_number_changes(client, auth, family):
    """The code confirmed the number; the number is then changed back and forth: the old code
    confirms nothing again."""
    login(auth)
    phone = add_phone(client, family.ana)
    send_code(client, phone)
    code = code_in(all_outbox()[-1])
    enter_code(client, phone, code)
    post(client, f"/account/phones/{phone.id}", {"number": "202-555-0198", "kind": "cell"})
    post(client, f"/account/phones/{phone.id}", {"number": STRANGER_CELL, "kind": "cell"})
    db.session.expire_all()
    assert phone.verified_at is None
    response = enter_code(client, phone, code)
    assert "No code is waiting for this number." in response.get_data(as_text=True)
    db.session.expire_all()
    assert phone.verified_at is None


def test_a_code_for_ones_own_number_cannot_confirm_a_stranger_number(client, auth, family):
    """Ana asks for a code for a number she has, then changes the row to a stranger's number
    and enters her code: refused (a code proves the number it was sent to)."""
    login(auth)
    phone = add_phone(client, family.ana, number="+12025550198")
    send_code(client, phone)
    code = code_in(all_outbox()[-1])
    post(client, f"/account/phones/{phone.id}", {"number": STRANGER_CELL, "kind": "cell"})
    enter_code(client, phone, code)
    db.session.expire_all()
    assert phone.number == STRANGER_CELL and phone.verified_at is None


def test_a_code_for_one_phone_cannot_confirm_another(client, auth, family):
    """Two new phones: the first one's code does nothing for the second."""
    login(auth)
    first = add_phone(client, family.ana, number="+12025550198")
    second = add_phone(client, family.ana)
    send_code(client, first)
    code = code_in(all_outbox()[-1])
    send_code(client, second)
    enter_code(client, second, code)
    db.session.expire_all()
    assert second.verified_at is None and first.verified_at is None
    enter_code(client, first, code)
    db.session.expire_all()
    assert first.verified_at is not None


def test_an_expired_code_confirms_nothing(client, auth, family):
    """A code past its time: "No code is waiting"; nothing changes."""
    login(auth)
    phone = add_phone(client, family.ana)
    send_code(client, phone)
    code = code_in(all_outbox()[-1])
    db.session.execute(
        sa.update(AddressVerification).values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    response = enter_code(client, phone, code)
    assert "No code is waiting for this number." in response.get_data(as_text=True)
    db.session.expire_all()
    assert phone.verified_at is None


def test_a_new_code_replaces_the_one_before(client, auth, family):
    """Send, send again: only the newest code works."""
    login(auth)
    phone = add_phone(client, family.ana)
    send_code(client, phone)
    first = code_in(all_outbox()[-1])
    send_code(client, phone)
    second = code_in(all_outbox()[-1])
    if first != second:
        enter_code(client, phone, first)
        db.session.expire_all()
        assert phone.verified_at is None
    enter_code(client, phone, second)
    db.session.expire_all()
    assert phone.verified_at is not None


def test_codes_are_kept_only_as_an_hmac(client, auth, family):
    """The database holds no code: only a SHA-256 HMAC bound to the row and the number."""
    login(auth)
    phone = add_phone(client, family.ana)
    send_code(client, phone)
    code = code_in(all_outbox()[-1])
    (row,) = verifications()
    assert code not in row.secret_hash and len(row.secret_hash) == 64
    assert row.address == STRANGER_CELL and row.sent_to == STRANGER_CELL and row.method == "text"
    assert row.requested_by_user_id == family.parent.id


def test_sending_codes_is_limited(client, auth, family):
    """Three codes an hour per number: the fourth is refused, with words, and not sent."""
    login(auth)
    phone = add_phone(client, family.ana)
    for _ in range(verification.SENDS_PER_HOUR):
        send_code(client, phone)
    response = send_code(client, phone)
    assert response.status_code == 302
    text = page(client, response.location)
    assert "We have sent several already. Wait an hour" in text
    assert len(all_outbox()) == verification.SENDS_PER_HOUR


def test_one_parent_cannot_send_codes_to_many_numbers(client, auth, family):
    """A parent's codes a day are limited too, whatever the numbers."""
    login(auth)
    for index in range(verification.SENDS_PER_DAY_PER_USER + 1):
        phone = add_phone(client, family.ana, number=f"+1202555{1100 + index:04d}")
        send_code(client, phone)
    assert len(all_outbox()) == verification.SENDS_PER_DAY_PER_USER


def test_verify_page_shows_what_was_sent_and_a_labelled_field(client, auth, family):
    """The code page says where the code went; GET sends nothing."""
    login(auth)
    phone = add_phone(client, family.ana)
    text = page(client, f"/account/verify-phone/{phone.id}")
    assert "No code is waiting for this number." in text and 'for="code"' in text
    assert all_outbox() == []


def test_a_confirmed_number_needs_no_code(client, auth, family):
    """A number from the district's records is confirmed: its code page goes back, and asking
    for a code sends nothing."""
    login(auth)
    phone = family.ana.phones[0]
    assert client.get(f"/account/verify-phone/{phone.id}").status_code == 302
    send_code(client, phone)
    assert all_outbox() == []


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(typed=st.text(max_size=25))
def test_any_text_as_a_code_never_crashes_and_confirms_nothing(client, auth, family, typed):
    """Whatever is typed into the code field: a page, never a crash, and (but for the code
    itself) the number stays unconfirmed."""
    if client.get("/account/settings").status_code != 200:
        login(auth)
    phone = next((p for p in family.ana.phones if p.number == STRANGER_CELL), None)
    if phone is None:
        phone = add_phone(client, family.ana)
        send_code(client, phone)
    db.session.execute(sa.update(AddressVerification).values(attempts=0))
    db.session.commit()
    code = code_in(all_outbox()[-1])
    response = enter_code(client, phone, typed)
    assert response.status_code in (302, 400)
    db.session.expire_all()
    assert (phone.verified_at is not None) == ("".join(typed.split()) == code)


# --- landlines: a call ----------------------------------------------------------------------


def test_a_landline_code_goes_out_as_a_call(client, auth, family):
    """A home phone: the code is read out in a call, a voice message in the outbox (recorded
    without a provider), and works like a texted one."""
    login(auth)
    phone = add_phone(client, family.luis, kind="home")
    response = send_code(client, phone)
    assert f"We are calling {STRANGER_SHOWN} to read out a code." in page(client, response.location)
    (message,) = all_outbox()
    assert (message.channel, message.purpose, message.to_address) == (
        "voice",
        "verify_code",
        STRANGER_CELL,
    )
    assert message.status == "sent" and message.provider_id.startswith("recorded:")
    assert "Your code to confirm this phone number is" in message.body
    code = code_in(message)
    enter_code(client, phone, code)
    db.session.expire_all()
    assert phone.verified_by == "call_code"


def test_a_call_through_twilio_says_the_code(app, client, auth, family, monkeypatch):
    """With Twilio configured, the outbox places the call with TwiML <Say>."""
    placed = []

    class FakeCalls:
        def create(self, **kwargs):
            placed.append(kwargs)
            return type("Call", (), {"sid": "CA123"})()

    class FakeClient:
        def __init__(self, *args):
            self.calls = FakeCalls()

    monkeypatch.setattr("twilio.rest.Client", FakeClient)
    monkeypatch.setitem(app.config, "TWILIO_ACCOUNT_SID", "AC-test")
    monkeypatch.setitem(app.config, "TWILIO_AUTH_TOKEN", "token")
    login(auth)
    phone = add_phone(client, family.ana, kind="work")
    send_code(client, phone)
    (call,) = placed
    assert call["to"] == STRANGER_CELL and call["from_"] == family.org.texting_number
    assert call["twiml"].count("<Say") == 2 and "Your code to confirm" in call["twiml"]
    (message,) = all_outbox()
    assert message.provider_id == "CA123"
    assert code_in(message).replace("", ", ")[2:-2] in call["twiml"]


def test_without_calls_a_landline_code_goes_to_the_owners_confirmed_email(
    app, client, auth, family, mailbox, monkeypatch
):
    """Calls off: the code goes by email to the owner's confirmed address, and works."""
    monkeypatch.setitem(app.config, "VERIFY_BY_CALL", False)
    login(auth)
    phone = add_phone(client, family.luis, kind="home")
    response = send_code(client, phone)
    luis_email = family.luis.emails[0].address
    assert f"so we emailed its code to {luis_email}" in page(client, response.location)
    (message,) = mailbox.to(luis_email)
    body = mailbox.text(message)
    assert STRANGER_SHOWN in body and "enter this code" in body
    enter_code(client, phone, code_in(all_outbox()[-1]))
    db.session.expire_all()
    assert phone.verified_by == "email_code"


def test_without_calls_or_a_confirmed_email_the_school_confirms(
    app, client, auth, family, monkeypatch
):
    """No call and no confirmed email: nothing is sent; the page says to ask the school."""
    monkeypatch.setitem(app.config, "VERIFY_BY_CALL", False)
    login(auth)
    phone = add_phone(client, family.kid, kind="home")
    response = send_code(client, phone)
    assert "Ask the school to confirm it for you." in page(client, response.location)
    assert all_outbox() == []


def test_a_cell_that_turned_texts_off_gets_its_code_by_call(client, auth, family):
    """A cell that replied STOP is not texted a code: it is called instead."""
    ledger.opt_out(
        family.org,
        Channel.TEXT,
        STRANGER_CELL,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient(STRANGER_CELL),
        carrier_block=True,
        confirm=False,
        notify_org=False,
    )
    db.session.commit()
    login(auth)
    phone = add_phone(client, family.ana)
    send_code(client, phone)
    (message,) = all_outbox()
    assert message.channel == "voice"


def test_outbox_does_not_send_a_code_to_a_number_that_opted_out_meanwhile(app, family):
    """Queued, then the number opted out of calls before delivery: suppressed, not called."""
    outbox.queue(
        organization_id=family.org.id,
        channel="voice",
        purpose="verify_code",
        to=STRANGER_CELL,
        body="Your code is 1, 2, 3, 4, 5, 6.",
        key="verify:test",
    )
    ledger.opt_out(
        family.org, Channel.VOICE, STRANGER_CELL, source=Source.ADMIN, actor=Actor.system()
    )
    db.session.commit()
    outbox.deliver()
    message = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.idempotency_key == "verify:test")
    ).one()
    assert message.status == "suppressed"


# --- emails: a link -------------------------------------------------------------------------


def verify_links(mailbox, address):
    (message,) = mailbox.to(address)
    links = mailbox.links(message, "/account/verify-email/")
    assert links
    return links[0].replace("https://consent.example.org", "")


def test_a_new_email_is_confirmed_by_the_link_sent_to_it(client, auth, family, mailbox):
    """Ana adds an email for Luis: its toggle is refused until the link in the email that
    arrived is opened and its button pressed (GET changes nothing); then the toggle works."""
    login(auth)
    email = add_email(client, family.luis, "luis.work@example.org")
    path = f"/account/contacts/{family.luis.id}"
    toggle(client, path, f"email-{email.id}", "email", "off")
    assert events_for("luis.work@example.org") == []
    response = post(client, f"/account/emails/{email.id}/send-link")
    assert response.location == path
    assert "We sent a link to luis.work@example.org." in page(client, path)
    link = verify_links(mailbox, "luis.work@example.org")

    visitor = client.application.test_client()  # Luis, in his own browser, signed out
    shown = page(visitor, link)
    assert "Press Confirm if luis.work@example.org is your email address." in shown
    db.session.expire_all()
    assert email.verified_at is None
    response = post(visitor, link)
    assert response.status_code == 200
    assert "Thank you: luis.work@example.org is confirmed." in response.get_data(as_text=True)
    db.session.expire_all()
    assert email.verified_by == "email_link"
    toggle(client, path, f"email-{email.id}", "email", "off")
    assert state_of(family.org, Channel.EMAIL, "luis.work@example.org") == Status.OPTED_OUT


def test_an_email_link_is_spent_once_used(client, auth, family, mailbox):
    """The second press of the same link: "already been used", 410, nothing changes."""
    login(auth)
    email = add_email(client, family.ana, "ana.two@example.org")
    post(client, f"/account/emails/{email.id}/send-link")
    link = verify_links(mailbox, "ana.two@example.org")
    assert post(client, link).status_code == 200
    again = post(client, link)
    assert again.status_code == 410
    assert "This link has already been used" in again.get_data(as_text=True)


def test_a_link_for_one_address_cannot_confirm_another(client, auth, family, mailbox):
    """Ana adds her own address, gets its link, then changes that row to Luis's work address
    (a stranger's, for her) and opens her link: refused; the new address stays unconfirmed.
    And the link of one row leaves another row alone."""
    login(auth)
    mine = add_email(client, family.ana, "ana.two@example.org")
    other = add_email(client, family.ana, "ana.three@example.org")
    post(client, f"/account/emails/{mine.id}/send-link")
    link = verify_links(mailbox, "ana.two@example.org")
    post(client, f"/account/emails/{mine.id}", {"address": "victim@example.org"})
    response = post(client, link)
    assert response.status_code == 410
    db.session.expire_all()
    assert mine.address == "victim@example.org" and mine.verified_at is None
    assert other.verified_at is None


def test_a_link_confirms_only_its_own_row(client, auth, family, mailbox):
    """Two new addresses, one link pressed: only that one is confirmed."""
    login(auth)
    first = add_email(client, family.ana, "ana.two@example.org")
    second = add_email(client, family.ana, "ana.three@example.org")
    post(client, f"/account/emails/{first.id}/send-link")
    assert post(client, verify_links(mailbox, "ana.two@example.org")).status_code == 200
    db.session.expire_all()
    assert first.verified_at is not None and second.verified_at is None


def test_a_changed_or_cut_link_is_not_valid(client, auth, family, mailbox):
    """A link with a character changed, or cut short: 400 "not valid", nothing changes."""
    login(auth)
    email = add_email(client, family.ana, "ana.two@example.org")
    post(client, f"/account/emails/{email.id}/send-link")
    link = verify_links(mailbox, "ana.two@example.org")
    token = link.rsplit("/", 1)[1]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (flipped, token[:20], "x"):
        response = post(client, f"/account/verify-email/{bad}")
        assert response.status_code == 400
        assert "This link is not valid" in response.get_data(as_text=True)
    db.session.expire_all()
    assert email.verified_at is None


def test_an_old_link_is_spent_once_a_new_one_is_sent(client, auth, family, mailbox):
    """Send twice: the first link is spent, the second works."""
    login(auth)
    email = add_email(client, family.ana, "ana.two@example.org")
    post(client, f"/account/emails/{email.id}/send-link")
    post(client, f"/account/emails/{email.id}/send-link")
    first, second = (
        mailbox.links(m, "/account/verify-email/")[0].replace("https://consent.example.org", "")
        for m in mailbox.to("ana.two@example.org")
    )
    assert post(client, first).status_code == 410
    assert post(client, second).status_code == 200


def test_an_expired_link_says_so(client, auth, family, mailbox):
    """Past its time: 410 "expired", and how to get a new one."""
    login(auth)
    email = add_email(client, family.ana, "ana.two@example.org")
    post(client, f"/account/emails/{email.id}/send-link")
    link = verify_links(mailbox, "ana.two@example.org")
    db.session.execute(
        sa.update(AddressVerification).values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    response = post(client, link)
    assert response.status_code == 410
    text = response.get_data(as_text=True)
    assert "This link has expired" in text and "press Confirm beside the address" in text


def test_the_link_page_without_its_csrf_token_changes_nothing(client, auth, family, mailbox):
    """The button's POST without its token: 400, still unconfirmed."""
    login(auth)
    email = add_email(client, family.ana, "ana.two@example.org")
    post(client, f"/account/emails/{email.id}/send-link")
    link = verify_links(mailbox, "ana.two@example.org")
    assert post(client, link, token=False).status_code == 400
    db.session.expire_all()
    assert email.verified_at is None


# --- where verified rows come from ----------------------------------------------------------


def test_enrollment_leaves_typed_addresses_unconfirmed(client, app):
    """The enrollment form's phones and login email start "not confirmed yet"."""
    org = make_org()
    site = make_site(org)
    db.session.commit()
    data = {
        "family_name": "Nguyen",
        "guardians-0-first_name": "Mai",
        "guardians-0-last_name": "Nguyen",
        "guardians-0-relationship": "Mother",
        "guardians-0-email": "mai.nguyen@example.org",
        "guardians-0-phones-0-number": "(202) 555-0199",
        "guardians-0-phones-0-kind": "cell",
        "guardians-0-phones-0-texts": "yes",
        "guardians-0-phones-1-number": "(202) 555-0198",
        "guardians-0-phones-1-kind": "home",
        "students-0-first_name": "Kim",
        "students-0-last_name": "Nguyen",
        "students-0-site": str(site.id),
        "students-0-grade": "3",
        "password": "long-enough-pass",
        "confirm": "long-enough-pass",
        "csrf_token": csrf_token(client, "/enroll"),
    }
    assert client.post("/enroll", data=data).status_code == 302
    family = db.session.scalars(sa.select(Family)).one()
    rows = [row for c in family.contacts for row in (*c.phones, *c.emails)]
    assert len(rows) == 3
    assert all(row.verified_at is None and row.verified_by is None for row in rows)


def test_records_from_the_district_are_verified_as_they_are_made(app, family):
    """Phones and emails made by the district's own code (demo, staff, roster) are verified."""
    assert all(verification.is_verified(p) for p in family.luis.phones)
    assert family.luis.emails[0].verified_by == "records"


def test_demo_addresses_are_confirmed(demo):
    """The demo's Riveras can change their choices at once."""
    parent = db.session.scalars(sa.select(User).where(User.email == "parent@example.org")).one()
    rows = [*parent.contact.phones, *parent.contact.emails]
    assert rows and all(verification.is_verified(row) for row in rows)


def test_mark_verified_records_the_method_and_spends_open_codes(client, auth, family):
    """The function other code calls (the account email link): verified, by that method, and
    any code waiting for the row is spent."""
    login(auth)
    phone = add_phone(client, family.ana)
    send_code(client, phone)
    verification.mark_verified(phone, verification.Method.STAFF)
    db.session.commit()
    db.session.expire_all()
    assert phone.verified_by == "staff" and verification.open_code(phone) is None
    email = EmailAddress(address="x@example.org", **verification.UNVERIFIED)
    family.ana.emails.append(email)
    db.session.commit()
    assert not verification.is_verified(email)
    verification.mark_verified(email, "account_email")
    db.session.commit()
    assert email.verified_by == "account_email"


def test_existing_rows_are_verified_by_the_migration(tmp_path):
    """Upgrading a database that has phones and emails marks them verified by records."""
    from flask_migrate import upgrade

    from consent import create_app

    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(revision="0008_owner_indexes")
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO organizations (id, name, texting_number, notification_email,"
                " help_contact, texts_about, message_frequency, default_region,"
                " text_requires_consent, stop_blocks_voice, start_opts_in,"
                " admin_may_record_opt_out, staff_cell_starts_opted_in, created_at)"
                " VALUES (1, 'o', '+12025550100', 'a@b.org', '', '', '', 'US', 1, 0, 1, 1, 1,"
                " '2026-01-01')"
            )
            conn.exec_driver_sql(
                "INSERT INTO families (id, organization_id, name, created_at)"
                " VALUES (1, 1, 'f', '2026-01-01')"
            )
            conn.exec_driver_sql(
                "INSERT INTO contacts (id, family_id, first_name, last_name,"
                " relationship_to_student, position, language, created_at)"
                " VALUES (1, 1, 'a', 'b', 'Parent', 1, 'en', '2026-01-01')"
            )
            conn.exec_driver_sql(
                "INSERT INTO phones (contact_id, number, kind, is_primary)"
                " VALUES (1, '+12025550123', 'cell', 1)"
            )
            conn.exec_driver_sql(
                "INSERT INTO email_addresses (contact_id, address) VALUES (1, 'a@b.org')"
            )
        upgrade()
        with db.engine.connect() as conn:
            for table in ("phones", "email_addresses"):
                row = conn.exec_driver_sql(f"SELECT verified_at, verified_by FROM {table}").one()  # noqa: S608
                assert row[0] is not None and row[1] == "records"
        db.engine.dispose()


# --- in Chromium ----------------------------------------------------------------------------


@pytest.mark.browser
def test_parent_adds_a_new_cell_and_confirms_it_with_the_code(app, family, live_server, pages):
    """Ana adds a cell, sees "Not confirmed yet" with its toggles disabled, presses Confirm,
    types the code the text carried (read from the outbox), and then turns its calls off."""
    page = pages.new()
    page.goto(live_server.url("/login"))
    page.fill("#email", "ana@example.org")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/account/settings")

    page.get_by_role("link", name="Add a phone number").click()
    page.wait_for_load_state()
    look(page, "account-add-phone")
    page.get_by_label("Phone number").fill("(202) 555-0199")
    page.get_by_label("Type").select_option("cell")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/account/settings")
    assert "Confirm it to change its choices" in page.inner_text(".flashes")

    phone_id = _phone_id(STRANGER_CELL)
    card = page.locator(f"#unconfirmed-phone-{phone_id}")
    assert "Not confirmed yet" in card.inner_text()
    calls = page.locator(f"#toggle-phone-{phone_id}-voice")
    assert calls.get_by_role("button", name="Turn off").is_disabled()
    look(page, "account-settings-unconfirmed")

    card.get_by_role("button", name="Confirm").click()
    page.wait_for_url(f"**/account/verify-phone/{phone_id}")
    assert "We sent a code by text" in page.inner_text("main")
    look(page, "account-verify-phone")
    page.get_by_label("Code").fill(_code_sent_to(STRANGER_CELL))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/account/settings")
    assert f"{STRANGER_SHOWN} is confirmed" in page.inner_text(".flashes")

    calls = page.locator(f"#toggle-phone-{phone_id}-voice")
    calls.get_by_role("button", name="Turn off").click()
    page.wait_for_load_state()
    calls = page.locator(f"#toggle-phone-{phone_id}-voice")
    assert calls.locator(".status").inner_text() == "Calls off"
    db.session.rollback()
    org_id = db.session.scalar(sa.select(Organization.id))
    assert ledger.current(org_id, Channel.VOICE, STRANGER_CELL).status == Status.OPTED_OUT
    db.session.rollback()


def _phone_id(number: str) -> int:
    db.session.rollback()
    phone_id = db.session.scalar(sa.select(Phone.id).where(Phone.number == number))
    db.session.rollback()
    return phone_id


def _code_sent_to(number: str) -> str:
    db.session.rollback()
    message = db.session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.to_address == number, OutboxMessage.purpose == "verify_code")
        .order_by(OutboxMessage.id.desc())
    ).first()
    db.session.rollback()
    return code_in(message)
