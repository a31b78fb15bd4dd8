"""Parents edit their family's records: add, correct and remove phones (with their type) and
emails of themselves, the other contacts and the students, and save their language. Only their
own family; a typed address starts "not confirmed yet"; consent stays with the address."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import ledger
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, EmailAddress, Phone, PhoneKind, Source, Status
from tests.profile_helpers import (
    STRANGER_CELL,
    STRANGER_SHOWN,
    all_outbox,
    email_by_address,
    events_for,
    login,
    make_world,
    page,
    person_path,
    phone_by_number,
    post,
    state_of,
    toggle,
)

PEOPLE = ["ana", "luis", "kid"]


@pytest.fixture
def family(app):
    """Two families (Ana and Olga sign in) and an admin."""
    return make_world()


def routes(f):
    """Every new route of a parent's own family: (method, path, form data)."""
    luis_phone, luis_email = f.luis.phones[0], f.luis.emails[0]
    return [
        ("GET", f"/account/contacts/{f.luis.id}/phones/new", None),
        ("POST", f"/account/contacts/{f.luis.id}/phones/new", {"number": STRANGER_CELL, "kind": "cell"}),
        ("GET", f"/account/students/{f.kid.id}/phones/new", None),
        ("POST", f"/account/students/{f.kid.id}/phones/new", {"number": STRANGER_CELL, "kind": "cell"}),
        ("GET", f"/account/phones/{luis_phone.id}", None),
        ("POST", f"/account/phones/{luis_phone.id}", {"number": STRANGER_CELL, "kind": "cell"}),
        ("POST", f"/account/phones/{luis_phone.id}/remove", {}),
        ("GET", f"/account/contacts/{f.luis.id}/emails/new", None),
        ("POST", f"/account/contacts/{f.luis.id}/emails/new", {"address": "new@example.org"}),
        ("GET", f"/account/students/{f.kid.id}/emails/new", None),
        ("POST", f"/account/students/{f.kid.id}/emails/new", {"address": "new@example.org"}),
        ("GET", f"/account/emails/{luis_email.id}", None),
        ("POST", f"/account/emails/{luis_email.id}", {"address": "new@example.org"}),
        ("POST", f"/account/emails/{luis_email.id}/remove", {}),
        ("POST", f"/account/verify-phone/{luis_phone.id}/send", {}),
        ("GET", f"/account/verify-phone/{luis_phone.id}", None),
        ("POST", f"/account/verify-phone/{luis_phone.id}", {"code": "123456"}),
        ("POST", f"/account/emails/{luis_email.id}/send-link", {}),
    ]  # fmt: skip


# The methods of routes(f), in order: tests are parametrized by index (ids exist only in a test).
METHODS = "GET POST GET POST GET POST POST GET POST GET POST GET POST POST POST GET POST POST"
ROUTE_COUNT = len(METHODS.split())
POSTS = [i for i, method in enumerate(METHODS.split()) if method == "POST"]


def snapshot():
    """What a wrong user must not be able to change: every phone, email and message."""
    db.session.expire_all()
    phones = db.session.execute(
        sa.select(Phone.id, Phone.number, Phone.kind, Phone.contact_id, Phone.student_id)
    ).all()
    emails = db.session.execute(
        sa.select(EmailAddress.id, EmailAddress.address, EmailAddress.contact_id)
    ).all()
    return sorted(phones), sorted(emails), len(all_outbox())


def _call(client, method, path, data):
    if method == "GET":
        return client.get(path)
    return post(client, path, data)


# --- who may use the new routes --------------------------------------------------------------


@pytest.mark.parametrize("index", range(ROUTE_COUNT))
def test_parent_of_another_family_gets_404_and_changes_nothing(client, auth, family, index):
    """Olga, signed in as the parent of another family, gets a 404 for every route that names
    this family's people, phones or emails, and nothing changes."""
    assert [method for method, _path, _data in routes(family)] == METHODS.split()
    method, path, data = routes(family)[index]
    before = snapshot()
    login(auth, "olga@example.org")
    assert _call(client, method, path, data).status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize("index", range(ROUTE_COUNT))
def test_admin_signed_in_as_a_parent_gets_404(client, auth, family, index):
    """An admin login has no family: every profile route is a 404."""
    method, path, data = routes(family)[index]
    before = snapshot()
    login(auth, "admin@example.org")
    assert _call(client, method, path, data).status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize("index", range(ROUTE_COUNT))
def test_signed_out_visitor_is_sent_to_sign_in(client, family, index):
    """Signed out: every route sends the visitor to sign in (a POST with no session is
    refused by its CSRF check first), and nothing changes."""
    method, path, data = routes(family)[index]
    before = snapshot()
    response = client.get(path) if method == "GET" else client.post(path, data=data or {})
    if method == "GET":
        assert response.status_code == 302 and response.location.startswith("/login?next=")
    else:
        assert response.status_code in (302, 400)
    assert snapshot() == before


@pytest.mark.parametrize("index", POSTS)
def test_posts_without_csrf_token_are_refused(client, auth, family, index):
    """Every POST without its CSRF token answers 400 and changes nothing."""
    _method, path, data = routes(family)[index]
    login(auth)
    before = snapshot()
    assert post(client, path, data, token=False).status_code == 400
    assert snapshot() == before


def test_language_post_needs_a_parent_and_a_csrf_token(client, auth, family):
    """Saving the language: signed out goes to sign in, an admin gets a 404, no token a 400."""
    response = client.post("/account/language", data={"language": "es"})
    assert response.status_code in (302, 400)
    login(auth, "admin@example.org")
    assert post(client, "/account/language", {"language": "es"}).status_code == 404
    post(client, "/logout")
    login(auth)
    assert post(client, "/account/language", {"language": "es"}, token=False).status_code == 400
    db.session.expire_all()
    assert family.ana.language == "en"


def test_unknown_kind_of_person_is_404(client, auth, family):
    """Only contacts and students have phones: any other word in the path is a 404."""
    login(auth)
    assert client.get(f"/account/families/{family.rivera.id}/phones/new").status_code == 404
    foreign = family.other.students[0].id
    assert client.get(f"/account/students/{foreign}/phones/new").status_code == 404
    assert (
        client.get(f"/account/contacts/{family.other.contacts[0].id}/emails/new").status_code == 404
    )


def test_own_page_cannot_name_another_familys_phone(client, auth, family):
    """The ids of another family's phone and email are 404s, as if they did not exist."""
    login(auth)
    foreign = family.other.contacts[0]
    assert client.get(f"/account/phones/{foreign.phones[0].id}").status_code == 404
    assert client.get(f"/account/emails/{foreign.emails[0].id}").status_code == 404
    assert client.get("/account/phones/999999").status_code == 404
    before = snapshot()
    assert post(client, f"/account/phones/{foreign.phones[0].id}/remove").status_code == 404
    assert snapshot() == before


# --- adding -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", PEOPLE)
@pytest.mark.parametrize("kind", ["cell", "home", "work"])
def test_add_a_phone_to_each_person(client, auth, family, who, kind):
    """A phone of each type added to oneself, another contact or a student: on their page,
    "Not confirmed yet" with a Confirm button, its toggles disabled, no consent change."""
    segment, person_page = person_path(family, who)
    login(auth)
    response = post(
        client, f"/account/{segment}/phones/new", {"number": "(202) 555-0199", "kind": kind}
    )
    assert response.status_code == 302 and response.location == person_page
    text = page(client, person_page)
    assert f"Added {STRANGER_SHOWN}. Confirm it to change its choices." in text
    phone = phone_by_number(getattr(family, who), STRANGER_CELL)
    assert phone.kind == kind and phone.verified_at is None
    section = text.split(f'id="addr-phone-{phone.id}"', 1)[1].split("</section>", 1)[0]
    assert "Not confirmed yet" in section and "Confirm" in section
    toggles, _, purposes = section.partition('class="purposes"')
    assert toggles.count("disabled") == (2 if kind == "cell" else 1)
    # the kinds of messages too: every button there waits for the confirmation
    assert purposes.count("<button") == purposes.count(" disabled ") > 0
    assert events_for(STRANGER_CELL) == []
    assert all_outbox() == []


@pytest.mark.parametrize("who", PEOPLE)
def test_add_an_email_to_each_person(client, auth, family, who):
    """An email added to anyone of the family: not confirmed yet, no email sent until asked."""
    segment, person_page = person_path(family, who)
    login(auth)
    response = post(client, f"/account/{segment}/emails/new", {"address": " New.One@Example.ORG "})
    assert response.status_code == 302
    text = page(client, person_page)
    assert "Added new.one@example.org. Confirm it to change its choices." in text
    email = email_by_address(getattr(family, who), "new.one@example.org")
    assert email.verified_at is None
    assert "Not confirmed yet" in text.split(f'id="addr-email-{email.id}"', 1)[1]
    assert events_for("new.one@example.org") == [] and all_outbox() == []


def test_add_phone_form_is_a_page_with_labels(client, auth, family):
    """The add page names the person and labels each field."""
    login(auth)
    text = page(client, f"/account/contacts/{family.luis.id}/phones/new")
    assert f"For {family.luis.name}." in text
    assert 'for="number"' in text and 'for="kind"' in text
    assert "Cell" in text and "Home" in text and "Work" in text


def test_invalid_or_duplicate_phone_is_refused_with_words(client, auth, family):
    """A number that is not one, or one the person has already: 400, the reason, nothing saved."""
    login(auth)
    path = f"/account/contacts/{family.ana.id}/phones/new"
    before = snapshot()
    response = post(client, path, {"number": "12", "kind": "cell"})
    assert response.status_code == 400
    assert "Enter a phone number we can call" in response.get_data(as_text=True)
    own = family.ana.phones[0].number
    response = post(client, path, {"number": own, "kind": "home"})
    assert response.status_code == 400
    assert "is on record for Parent1 Rivera already" in response.get_data(as_text=True)
    response = post(client, path, {"number": STRANGER_CELL, "kind": "fax"})
    assert response.status_code == 400
    assert snapshot() == before


def test_invalid_email_is_refused(client, auth, family):
    """Not an email address: 400 with the reason, nothing saved."""
    login(auth)
    before = snapshot()
    response = post(
        client, f"/account/contacts/{family.ana.id}/emails/new", {"address": "not an email"}
    )
    assert response.status_code == 400
    assert "Enter an email address such as name@example.org." in response.get_data(as_text=True)
    assert snapshot() == before


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(number=st.text(max_size=45), kind=st.text(max_size=6), email=st.text(max_size=60))
def test_any_text_in_the_forms_gives_a_page_never_a_crash(
    client, auth, family, number, kind, email
):
    """Whatever is typed: saved as a normalized address, or a 400 with nothing saved."""
    if client.get("/account/settings").status_code != 200:
        login(auth)
    before = snapshot()
    response = post(
        client, f"/account/contacts/{family.luis.id}/phones/new", {"number": number, "kind": kind}
    )
    assert response.status_code in (302, 400)
    if response.status_code == 400:
        assert snapshot() == before
    response = post(client, f"/account/students/{family.kid.id}/emails/new", {"address": email})
    assert response.status_code in (302, 400)
    db.session.rollback()


# --- changing -----------------------------------------------------------------------------


def test_change_a_phone_number_keeps_both_numbers_consent_and_needs_confirming(
    client, auth, family
):
    """Luis's cell had opted out of texts; Ana corrects it to another number. The old number
    stays opted out in the ledger, the new one has no choice and is not confirmed yet; no event."""
    phone = family.luis.phones[0]
    old = phone.number
    ledger.opt_out(
        family.org, Channel.TEXT, old, source=Source.PORTAL, actor=Actor.system(), confirm=False
    )
    db.session.commit()
    before_events = len(events_for(old))
    login(auth)
    response = post(
        client, f"/account/phones/{phone.id}", {"number": "202-555-0199", "kind": "cell"}
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert phone.number == STRANGER_CELL and phone.verified_at is None
    assert state_of(family.org, Channel.TEXT, old) == Status.OPTED_OUT
    assert len(events_for(old)) == before_events and events_for(STRANGER_CELL) == []
    text = page(client, f"/account/contacts/{family.luis.id}")
    assert "Saved." in text and "Not confirmed yet" in text and STRANGER_SHOWN in text


def test_change_only_the_type_keeps_the_number_confirmed(client, auth, family):
    """Cell to work, same number: still confirmed (nothing new was typed), toggles work."""
    phone = family.luis.phones[0]
    login(auth)
    post(client, f"/account/phones/{phone.id}", {"number": phone.number, "kind": "work"})
    db.session.expire_all()
    assert phone.kind == PhoneKind.WORK and phone.verified_at is not None
    path = f"/account/contacts/{family.luis.id}"
    assert "Not confirmed yet" not in page(client, path)
    toggle(client, path, f"phone-{phone.id}", "voice", "off")
    assert state_of(family.org, Channel.VOICE, phone.number) == Status.OPTED_OUT


def test_edit_page_shows_the_number_and_its_type(client, auth, family):
    """The edit page is filled in with the phone as it is, and offers to remove it."""
    phone = family.kid.phones[0]
    login(auth)
    text = page(client, f"/account/phones/{phone.id}")
    assert "Change a phone number" in text and f"For {family.kid.name}." in text
    assert 'value="cell" selected' in text or 'selected value="cell"' in text
    assert "Remove" in text


def test_change_an_email_needs_confirming_and_keeps_consent(client, auth, family):
    """An opted-out email corrected to another: the old one stays opted out; the new one is
    not confirmed yet."""
    email = family.luis.emails[0]
    old = email.address
    ledger.opt_out(
        family.org, Channel.EMAIL, old, source=Source.PORTAL, actor=Actor.system(), confirm=False
    )
    db.session.commit()
    login(auth)
    response = post(client, f"/account/emails/{email.id}", {"address": "luis.new@example.org"})
    assert response.status_code == 302
    db.session.expire_all()
    assert email.address == "luis.new@example.org" and email.verified_at is None
    assert state_of(family.org, Channel.EMAIL, old) == Status.OPTED_OUT
    assert state_of(family.org, Channel.EMAIL, "luis.new@example.org") is None


def test_saving_an_email_unchanged_keeps_it_confirmed(client, auth, family):
    """Saving the same address (in another case) changes nothing."""
    email = family.luis.emails[0]
    login(auth)
    post(client, f"/account/emails/{email.id}", {"address": email.address.upper()})
    db.session.expire_all()
    assert email.verified_at is not None


# --- removing -----------------------------------------------------------------------------


def test_remove_an_opted_out_phone_keeps_its_opt_out(client, auth, family):
    """Ana's cell opted out of texts, removed, and added again: still "Texts off" (the opt-out
    is a fact about the number), and the removal wrote no event."""
    phone = family.ana.phones[0]
    number = phone.number
    login(auth)
    toggle(client, "/account/settings", f"phone-{phone.id}", "text", "off")
    events = len(events_for(number))
    response = post(client, f"/account/phones/{phone.id}/remove")
    assert response.status_code == 302 and response.location == "/account/settings"
    text = page(client, "/account/settings")
    assert "Removed" in text
    db.session.expire_all()
    assert family.ana.phones == []
    assert state_of(family.org, Channel.TEXT, number) == Status.OPTED_OUT
    assert len(events_for(number)) == events
    post(
        client, f"/account/contacts/{family.ana.id}/phones/new", {"number": number, "kind": "cell"}
    )
    assert "Texts off" in page(client, "/account/settings")


@pytest.mark.parametrize("who", PEOPLE)
def test_remove_a_phone_and_an_email_of_each_person(client, auth, family, who):
    """Each person's phone (and an adult's email) can be removed from the family's pages."""
    person = getattr(family, who)
    _segment, person_page = person_path(family, who)
    login(auth)
    phone = person.phones[0]
    assert post(client, f"/account/phones/{phone.id}/remove").location == person_page
    if person.emails:
        email = person.emails[0]
        assert post(client, f"/account/emails/{email.id}/remove").location == person_page
    db.session.expire_all()
    assert person.phones == [] and person.emails == []
    assert "No phone numbers or email addresses on record." in page(client, person_page)


def test_remove_a_phone_with_a_code_waiting(client, auth, family):
    """A phone with a code sent can still be removed (its code goes with it)."""
    login(auth)
    post(
        client,
        f"/account/contacts/{family.ana.id}/phones/new",
        {"number": STRANGER_CELL, "kind": "cell"},
    )
    phone = phone_by_number(family.ana, STRANGER_CELL)
    post(client, f"/account/verify-phone/{phone.id}/send")
    assert post(client, f"/account/phones/{phone.id}/remove").status_code == 302
    db.session.expire_all()
    assert all(p.number != STRANGER_CELL for p in family.ana.phones)


# --- language -----------------------------------------------------------------------------


def test_saved_language_is_kept_and_shown(client, auth, family):
    """Ana chooses Español: saved on her record, and her pages are in Spanish."""
    login(auth)
    text = page(client, "/account/settings")
    assert 'name="language"' in text and "Save language" in text
    response = post(client, "/account/language", {"language": "es"})
    assert response.status_code == 302
    db.session.expire_all()
    assert family.ana.language == "es"
    assert 'lang="es"' in page(client, "/account/settings")


def test_the_settings_page_has_one_language_form_and_says_it_saved(client, auth, family, caplog):
    """One form saves the language (two blueprints once both answered POST /account/language,
    and the page showed two selects with the same id); after saving, the page says so in the
    language just chosen, and the change is audited."""
    import logging
    import re

    login(auth)
    text = page(client, "/account/settings")
    assert text.count('action="/account/language"') == 1
    assert text.count('name="language"') == 1
    ids = re.findall(r'\sid="([^"]+)"', text)
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    with caplog.at_level(logging.INFO, logger="consent.audit"):
        response = post(client, "/account/language", {"language": "es"}, follow_redirects=True)
    assert "Se guardó su idioma." in response.get_data(as_text=True)
    assert any("language: 'en' -> 'es'" in r.getMessage() for r in caplog.records)


def test_unknown_language_is_refused(client, auth, family):
    """Only the languages we have: anything else is a 400 and nothing is saved."""
    login(auth)
    assert post(client, "/account/language", {"language": "fr"}).status_code == 400
    db.session.expire_all()
    assert family.ana.language == "en"


def test_get_with_values_changes_nothing(client, auth, family):
    """Query values on the edit pages' GETs never save anything."""
    login(auth)
    before = snapshot()
    phone = family.luis.phones[0]
    client.get(f"/account/phones/{phone.id}?number={STRANGER_CELL}&kind=home")
    client.get(f"/account/contacts/{family.luis.id}/phones/new?number={STRANGER_CELL}&kind=cell")
    assert snapshot() == before
