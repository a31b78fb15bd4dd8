"""The enrollment form: an explicit text choice for every cell, errors at their fields with
nothing saved, and a family, a login and the ledger's events when all is right."""

from __future__ import annotations

import html
import itertools
import re

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import ledger
from consent.extensions import db
from consent.models import (
    Channel,
    ConsentEvent,
    Contact,
    EmailAddress,
    Family,
    OutboxMessage,
    Phone,
    Role,
    Source,
    Status,
    Student,
    User,
)
from tests.accounts_helpers import verify_from_mailbox
from tests.conftest import csrf_token
from tests.factories import make_org, make_site

_emails = itertools.count(1)


@pytest.fixture
def org(app):
    """An organization with two schools."""
    org = make_org()
    make_site(org, "Maple Valley Elementary")
    make_site(org, "Maple Valley High")
    db.session.commit()
    return org


def valid_form(org, email="mai.nguyen@example.org") -> dict:
    """A complete, correct enrollment: one guardian with a cell saying Yes, one student."""
    return {
        "family_name": "Nguyen",
        "guardians-0-first_name": "Mai",
        "guardians-0-last_name": "Nguyen",
        "guardians-0-relationship": "Mother",
        "guardians-0-email": email,
        "guardians-0-phones-0-number": "(202) 555-0199",
        "guardians-0-phones-0-kind": "cell",
        "guardians-0-phones-0-texts": "yes",
        "students-0-first_name": "Kim",
        "students-0-last_name": "Nguyen",
        "students-0-site": str(org.sites[0].id),
        "students-0-grade": "3",
        "password": "long-enough-pass",
        "confirm": "long-enough-pass",
    }


def post(client, data, user_agent="TestPhone/1.0"):
    data = {**data, "csrf_token": csrf_token(client, "/enroll")}
    return client.post("/enroll", data=data, headers={"User-Agent": user_agent})


def counts() -> dict:
    return {
        model.__name__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
        for model in (
            Family,
            Contact,
            Student,
            Phone,
            EmailAddress,
            User,
            ConsentEvent,
            OutboxMessage,
        )
    }


def error_at(page: str, field_id: str) -> str:
    match = re.search(rf'<p class="error" id="{re.escape(field_id)}-error">(.*?)</p>', page, re.S)
    return html.unescape(match.group(1)) if match else ""


# --- the page -------------------------------------------------------------------------------


def test_form_shows_the_text_choice_with_the_disclosure_and_nothing_selected(client, org):
    """Each phone has the Yes/No choice, unselected, beside the organization's disclosure."""
    page = html.unescape(client.get("/enroll").get_data(as_text=True))
    assert "Yes, send me text messages" in page and "No, do not send me text messages" in page
    assert 'name="guardians-0-phones-0-texts"' in page
    assert "checked" not in page
    disclosure = re.search(r'id="guardians-0-phones-0-texts-disclosure">(.*?)</p>', page).group(1)
    for words in (
        "Maple Valley School District",
        "+1 202-555-0100",
        org.texts_about,
        org.message_frequency,
        "Msg & data rates may apply",
        "Reply STOP to opt out, HELP for help",
    ):
        assert words in disclosure
    assert "Maple Valley High" in page  # schools come from the organization's sites
    # Without JavaScript every guardian block and every phone's choice is on the page, shown.
    choices = re.findall(r"<fieldset[^>]*data-text-choice[^>]*>", page)
    assert len(choices) == 8 and not any("hidden" in tag for tag in choices)
    assert page.count('data-block="guardian"') == 4
    assert not any("hidden" in tag for tag in re.findall(r"<fieldset[^>]*>", page))
    assert '<script src="/static/js/enroll.js">' in page and "<script>" not in page


# --- validation: the error at its field, nothing saved ---------------------------------------


def _without(*names):
    def change(data, org):
        for name in names:
            data.pop(name, None)

    return change


def _set(**values):
    def change(data, org):
        data.update({k.replace("__", "-"): v for k, v in values.items()})

    return change


def _no_student(data, org):
    for key in [k for k in data if k.startswith("students-")]:
        del data[key]


VALIDATION = [
    ("cell without a choice", _without("guardians-0-phones-0-texts"),
     "guardians-0-phones-0-texts", "Choose whether this cell number may get text messages"),
    ("invalid number", _set(guardians__0__phones__0__number="555-01"),
     "guardians-0-phones-0-number", "Enter a valid phone number"),
    ("letters for a number", _set(guardians__0__phones__0__number="call me"),
     "guardians-0-phones-0-number", "Enter a valid phone number"),
    ("number without a type", _set(guardians__0__phones__0__kind=""),
     "guardians-0-phones-0-kind", "Choose Cell, Home or Work"),
    ("invalid email", _set(guardians__0__email="mai@"),
     "guardians-0-email", "Enter a valid email address"),
    ("no email for the login", _set(guardians__0__email=""),
     "guardians-0-email", "Enter an email address"),
    ("no first name", _set(guardians__0__first_name="  "),
     "guardians-0-first_name", "Enter the first name"),
    ("second guardian half filled", _set(guardians__1__email="lan@example.org"),
     "guardians-1-first_name", "Enter the first name"),
    ("second guardian's cell without a choice",
     _set(guardians__1__first_name="Lan", guardians__1__last_name="Nguyen",
          guardians__1__phones__0__number="202-555-0142", guardians__1__phones__0__kind="cell"),
     "guardians-1-phones-0-texts", "Choose whether this cell number may get text messages"),
    ("same number, different choices",
     _set(guardians__1__first_name="Lan", guardians__1__last_name="Nguyen",
          guardians__1__phones__0__number="2025550199", guardians__1__phones__0__kind="cell",
          guardians__1__phones__0__texts="no"),
     "guardians-1-phones-0-texts", "appears twice with different choices"),
    ("no student", _no_student, "students-0-first_name", "Add at least one student"),
    ("student without a school", _set(students__0__site=""),
     "students-0-site", "Choose the student's school"),
    ("student at another organization's school", _set(students__0__site="999"),
     "students-0-site", "Choose the student's school"),
    ("student without a grade", _set(students__0__grade=""),
     "students-0-grade", "Choose the student's grade"),
    ("password too short", _set(password="short", confirm="short"),
     "password", "at least 10 characters"),
    ("passwords differ", _set(confirm="another-long-pass"), "confirm", "differ"),
    # A cell that replied STOP and says Yes is no error: the family is saved and the page says
    # what it says for every Yes (tests/test_no_acting_for_others.py).
]  # fmt: skip


@pytest.mark.parametrize(
    "change,field_id,words", [case[1:] for case in VALIDATION], ids=[c[0] for c in VALIDATION]
)
def test_invalid_enrollment_shows_the_error_at_its_field_and_saves_nothing(
    client, org, change, field_id, words
):
    """Each wrong input: the page says what is wrong at that field, and nothing is saved."""
    data = valid_form(org)
    change(data, org)
    before = counts()
    response = post(client, data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert words in error_at(page, field_id), error_at(page, field_id) or page
    assert "Nothing was saved" in html.unescape(page)
    assert f'aria-describedby="{field_id}' in page or f"{field_id}-error" in page
    db.session.expire_all()
    assert counts() == before


def test_home_phone_needs_no_choice_and_any_choice_on_it_is_ignored(client, org):
    """A Home number saves without a text choice and records no text event."""
    data = valid_form(org)
    data.update(
        {
            "guardians-0-phones-1-number": "202-555-0188",
            "guardians-0-phones-1-kind": "home",
            "guardians-0-phones-1-texts": "yes",
        }
    )
    assert post(client, data).status_code == 302
    home = db.session.scalars(sa.select(Phone).where(Phone.number == "+12025550188")).one()
    assert home.kind == "home"
    assert ledger.current(org, Channel.TEXT, "+12025550188") is None


# --- success ----------------------------------------------------------------------------------


def test_yes_enrolls_the_family_opts_in_with_evidence_and_queues_one_text(client, org):
    """ "Yes": family, contact, student and login saved; an opt-in from enrollment with the
    exact disclosure shown, the IP and the user agent; one confirmation text."""
    shown = html.unescape(
        re.search(
            r'id="guardians-0-phones-0-texts-disclosure">(.*?)</p>',
            client.get("/enroll").get_data(as_text=True),
        ).group(1)
    )
    response = post(client, valid_form(org), user_agent="Mozilla/5.0 (iPhone)")
    assert response.status_code == 302 and response.location == "/enroll/sent"
    assert "we sent a link to mai.nguyen@example.org" in html.unescape(
        client.get("/enroll/sent").get_data(as_text=True)
    )

    family = db.session.scalars(sa.select(Family)).one()
    (mai,) = family.contacts
    assert (family.name, mai.name, mai.position, mai.relationship_to_student) == (
        "Nguyen",
        "Mai Nguyen",
        1,
        "Mother",
    )
    assert [p.number for p in mai.phones] == ["+12025550199"]
    assert [e.address for e in mai.emails] == ["mai.nguyen@example.org"]
    (kim,) = family.students
    assert (kim.name, kim.site.name, kim.grade) == ("Kim Nguyen", "Maple Valley Elementary", "3")
    user = db.session.scalars(sa.select(User)).one()
    assert user.role == Role.PARENT and user.contact is mai and user.email == mai.emails[0].address
    assert user.password_hash.startswith("scrypt:")

    state = ledger.current(org, Channel.TEXT, "+12025550199")
    assert state.status == Status.OPTED_IN and state.source == Source.ENROLLMENT
    (event,) = db.session.scalars(sa.select(ConsentEvent)).all()
    assert event.evidence["disclosure"] == shown
    assert event.evidence["choice"] == "Yes, send me text messages"
    assert event.ip == "127.0.0.1" and event.user_agent == "Mozilla/5.0 (iPhone)"
    assert event.actor_user_id == user.id
    (text,) = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.channel == "text"))
    assert (text.channel, text.to_address, text.purpose) == (
        "text",
        "+12025550199",
        "optin_confirmation",
    )
    assert "Reply HELP for help, STOP to opt out" in text.body


def test_no_records_an_opt_out_from_enrollment_and_sends_no_text(client, org, mailbox):
    """ "No": an opt-out with source enrollment and the disclosure as evidence; the person
    asked for no texts, so none is sent (not even a confirmation), and no office email."""
    data = valid_form(org)
    data["guardians-0-phones-0-texts"] = "no"
    assert post(client, data).status_code == 302
    state = ledger.current(org, Channel.TEXT, "+12025550199")
    assert state.status == Status.OPTED_OUT and state.source == Source.ENROLLMENT
    event = db.session.scalars(sa.select(ConsentEvent)).one()
    assert event.evidence["choice"] == "No, do not send me text messages"
    assert "Msg & data rates may apply" in event.evidence["disclosure"]
    # Only the link that confirms the sign-in email.
    (email,) = db.session.scalars(sa.select(OutboxMessage)).all()
    assert (email.channel, email.purpose) == ("email", "account_verify")
    assert [m["To"] for m in mailbox.messages] == ["mai.nguyen@example.org"]


def test_four_guardians_and_several_students_in_one_go(client, org):
    """Up to four guardians, each with their phones, and more than one student."""
    data = valid_form(org)
    for i, (first, cell) in enumerate(
        [("Lan", "2025550142"), ("Bao", "2025550143"), ("Vy", "")], 1
    ):
        data[f"guardians-{i}-first_name"] = first
        data[f"guardians-{i}-last_name"] = "Nguyen"
        data[f"guardians-{i}-email"] = f"{first.lower()}@example.org"
        if cell:
            data[f"guardians-{i}-phones-0-number"] = cell
            data[f"guardians-{i}-phones-0-kind"] = "cell"
            data[f"guardians-{i}-phones-0-texts"] = "no" if i == 2 else "yes"
    data.update(
        {
            "students-1-first_name": "Tam",
            "students-1-last_name": "Nguyen",
            "students-1-site": str(org.sites[1].id),
            "students-1-grade": "K",
        }
    )
    assert post(client, data).status_code == 302
    family = db.session.scalars(sa.select(Family)).one()
    assert [c.position for c in family.contacts] == [1, 2, 3, 4]
    assert sorted(s.first_name for s in family.students) == ["Kim", "Tam"]
    assert ledger.current(org, Channel.TEXT, "+12025550142").status == Status.OPTED_IN
    assert ledger.current(org, Channel.TEXT, "+12025550143").status == Status.OPTED_OUT


def test_enrolled_parent_signs_in_and_sees_texts_allowed(client, auth, org, mailbox):
    """After enrolling and opening the emailed link, the parent signs in with the chosen
    password and sees the choice."""
    post(client, valid_form(org))
    verify_from_mailbox(client, mailbox, "mai.nguyen@example.org")
    client.post("/logout", data={"csrf_token": csrf_token(client, "/account/settings")})
    auth.login("mai.nguyen@example.org", "long-enough-pass")
    page = html.unescape(client.get("/account/settings").get_data(as_text=True))
    assert "Mai Nguyen" in page and "Texts allowed" in page and "+1 202-555-0199" in page


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(number=st.text(max_size=30), email=st.text(max_size=40))
def test_any_text_in_number_and_email_gives_a_page_never_a_crash(client, org, number, email):
    """Whatever is typed as the number or the email: enrolled, or an error and nothing saved."""
    data = valid_form(org)
    data["guardians-0-phones-0-number"] = number.replace("\x00", "")
    data["guardians-0-email"] = email.replace("\x00", "") or f"x{next(_emails)}@example.org"
    before = counts()
    response = post(client, data)
    assert response.status_code in (302, 422)
    if response.status_code == 422:
        db.session.expire_all()
        assert counts() == before
