"""Signed links and the public opt-back-in page: confirm, preferences, one-click unsubscribe."""

from __future__ import annotations

import html
import re
import time

import itsdangerous.timed
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import ledger, tokens
from consent.addresses import format_phone
from consent.eligibility import check_one
from consent.extensions import db, limiter
from consent.ledger import Actor
from consent.models import (
    Channel,
    ConsentEvent,
    OutboxMessage,
    Source,
    Status,
)
from consent.tokens import TokenError
from tests import factories
from tests.conftest import csrf_token
from tests.helpers import events_of, state_of

OFFICE = "office@example.org"


@pytest.fixture
def family(app):
    """An organization with one family: Parent1 has an email and a cell, and so on."""
    org = factories.make_org()
    site = factories.make_site(org)
    fam = factories.make_family(org, site, name="Lopez", contacts=1, students=0)
    db.session.commit()
    contact = fam.contacts[0]
    return type(
        "Family",
        (),
        {
            "org": org,
            "contact": contact,
            "email": contact.emails[0].address,
            "cell": contact.phones[0].number,
        },
    )


def link_for(purpose, org, channel, address):
    """A fresh signed link for the state as it is now (a preferences link also names the
    choices of the numbers it covers, as the emails' links do)."""
    if purpose == "preferences":
        return "/preferences/" + ledger.notifications.preferences_token(org, address)
    state = ledger.current(org, channel, address)
    return f"/{purpose}/" + tokens.make(
        purpose, org.id, channel, address, state.version if state else 0
    )


def admin_opt_out(org, channel, address):
    outcome = ledger.opt_out(org, channel, address, source=Source.ADMIN, actor=Actor.system("test"))
    assert outcome.changed
    db.session.commit()


def body(response) -> str:
    return response.get_data(as_text=True)


def spoil(token: str, position: int) -> str:
    """The token with the character at `position` swapped for another."""
    old = token[position]
    new = "A" if old != "A" else "B"
    return token[:position] + new + token[position + 1 :]


# --- tokens ---------------------------------------------------------------------------------


def full_bit_positions(token: str) -> list[int]:
    """Positions whose character carries six whole bits (not a segment's last, nor a dot)."""
    positions = []
    for match in re.finditer(r"[^.]+", token):
        positions.extend(range(match.start(), match.end() - 1))
    return positions


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_character_makes_the_link_bad(family, data):
    """Change any one character of a token: it is refused as bad (400)."""
    token = tokens.make("confirm", family.org.id, "email", family.email, 3)
    position = data.draw(st.sampled_from(full_bit_positions(token)))
    with pytest.raises(TokenError) as error:
        tokens.load("confirm", spoil(token, position))
    assert error.value.kind == "bad" and error.value.status_code == 400


def test_a_token_for_one_purpose_is_bad_for_another(family):
    """Each purpose has its own salt: an unsubscribe token does not confirm."""
    token = tokens.make("unsubscribe", family.org.id, "email", family.email, 0)
    assert tokens.load("unsubscribe", token).address == family.email
    with pytest.raises(TokenError) as error:
        tokens.load("confirm", token)
    assert error.value.kind == "bad"


def test_each_purpose_expires_after_its_own_age(app, family, monkeypatch):
    """Confirm links last 7 days; preferences links 60; one-click unsubscribe links never
    expire (RFC 8058 and CAN-SPAM need them to keep working)."""
    made = {p: tokens.make(p, family.org.id, "email", family.email, 0) for p in tokens.PURPOSES}
    now = time.time()
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: now + 8 * 86400)
    with pytest.raises(TokenError) as error:
        tokens.load("confirm", made["confirm"])
    assert error.value.kind == "expired" and error.value.status_code == 410
    assert tokens.load("preferences", made["preferences"]).version == 0
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: now + 61 * 86400)
    with pytest.raises(TokenError):
        tokens.load("preferences", made["preferences"])
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: now + 3650 * 86400)
    assert tokens.load("unsubscribe", made["unsubscribe"]).address == family.email


# --- the bad, expired and spent pages -------------------------------------------------------


@pytest.mark.parametrize("purpose", ["confirm", "preferences", "unsubscribe"])
def test_link_with_one_character_changed_shows_bad_link_page_and_changes_nothing(
    client, family, purpose
):
    """A spoiled link answers 400 with the bad-link page, on GET and on POST."""
    admin_opt_out(family.org, "email", family.email)
    url = link_for(purpose, family.org, "email", family.email)
    prefix, token = url.rsplit("/", 1)
    spoiled = f"{prefix}/{spoil(token, len(token) // 3)}"
    before = state_of(family.org, "email", family.email).version
    page = client.get(spoiled)
    assert page.status_code == 400
    assert "This link is not valid" in body(page)
    assert "How to get a new link" in body(page)
    posted = client.post(spoiled, data={"List-Unsubscribe": "One-Click"})
    assert posted.status_code == 400
    assert state_of(family.org, "email", family.email).version == before


def test_expired_confirm_link_answers_410_and_says_how_to_get_a_new_one(
    client, family, monkeypatch
):
    """A confirm link older than 7 days: 410, "expired", a link to ask again; nothing changes."""
    admin_opt_out(family.org, "email", family.email)
    url = link_for("confirm", family.org, "email", family.email)
    now = time.time()
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: now + 8 * 86400)
    page = client.get(url)
    assert page.status_code == 410
    assert "This link has expired" in body(page)
    assert "/opt-back-in" in body(page)
    posted = client.post(url, data={"csrf_token": csrf_token(client, "/opt-back-in")})
    assert posted.status_code == 410
    assert state_of(family.org, "email", family.email).status == Status.OPTED_OUT


def test_confirm_link_used_once_and_replayed_shows_spent_page(client, family):
    """After a confirmation, the same link answers 410 "already been used" and does nothing."""
    admin_opt_out(family.org, "email", family.email)
    url = link_for("confirm", family.org, "email", family.email)
    first = client.post(url, data={"csrf_token": csrf_token(client, url)})
    assert first.status_code == 200
    assert state_of(family.org, "email", family.email).status == Status.OPTED_IN
    admin_opt_out(family.org, "email", family.email)  # opted out again since
    replay = client.get(url)
    assert replay.status_code == 410
    assert "This link has already been used" in body(replay)
    posted = client.post(url, data={"csrf_token": csrf_token(client, "/opt-back-in")})
    assert posted.status_code == 410
    assert state_of(family.org, "email", family.email).status == Status.OPTED_OUT


def test_link_signed_with_a_key_now_in_fallbacks_still_works(app, client, family):
    """Key rotation: a link signed with the old key works while the old key is a fallback."""
    admin_opt_out(family.org, "email", family.email)
    app.config["SECRET_KEY"] = "old-key"
    url = link_for("confirm", family.org, "email", family.email)
    app.config.update(SECRET_KEY="new-key", SECRET_KEY_FALLBACKS=["old-key"])
    page = client.get(url)
    assert page.status_code == 200
    assert "Confirm that you want to receive email" in body(page)
    client.post(url, data={"csrf_token": csrf_token(client, url)})
    assert state_of(family.org, "email", family.email).status == Status.OPTED_IN
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert client.get(url).status_code == 400


@pytest.mark.parametrize(
    ("route", "minted_for"),
    [("confirm", "unsubscribe"), ("preferences", "confirm"), ("unsubscribe", "preferences")],
)
def test_each_link_page_refuses_a_token_minted_for_another_purpose(
    client, family, route, minted_for
):
    """A genuine token of the wrong purpose is a bad link on every page, GET and POST."""
    token = tokens.make(minted_for, family.org.id, "email", family.email, 0)
    assert client.get(f"/{route}/{token}").status_code == 400
    posted = client.post(
        f"/{route}/{token}",
        data={"csrf_token": csrf_token(client, "/opt-back-in"), "List-Unsubscribe": "One-Click"},
    )
    assert posted.status_code == 400
    assert state_of(family.org, "email", family.email) is None


# --- confirm --------------------------------------------------------------------------------


def test_confirm_get_shows_the_sentence_and_changes_nothing(client, family):
    """GET /confirm shows who, what and where, and a button; the state stays opted out."""
    admin_opt_out(family.org, "email", family.email)
    page = client.get(link_for("confirm", family.org, "email", family.email))
    text = body(page)
    assert page.status_code == 200
    assert (
        f"Confirm that you want to receive email from Maple Valley School District at "
        f"{family.email}." in text
    )
    assert ">Confirm</button>" in text
    assert state_of(family.org, "email", family.email).status == Status.OPTED_OUT


def test_confirm_post_opts_in_with_evidence_and_notifies_the_organization(client, family, mailbox):
    """POST opts back in (source email_link, the token id and the words), thanks, tells office@."""
    admin_opt_out(family.org, "email", family.email)
    url = link_for("confirm", family.org, "email", family.email)
    token_id = tokens.load("confirm", url.rsplit("/", 1)[1]).token_id
    page = client.post(url, data={"csrf_token": csrf_token(client, url)})
    assert page.status_code == 200
    assert "Thank you" in body(page)
    state = state_of(family.org, "email", family.email)
    assert state.status == Status.OPTED_IN and state.source == Source.EMAIL_LINK
    event = events_of(family.email, fresh=True)[-1]
    assert event.evidence["token_id"] == token_id
    assert event.evidence["words"].startswith("Confirm that you want to receive email from")
    assert event.actor == "recipient"
    notices = mailbox.to(OFFICE)
    assert len(notices) == 1
    assert "Opt-in confirmed" in notices[0]["Subject"]


def test_confirm_post_without_csrf_token_changes_nothing(client, family):
    """A POST to /confirm with no CSRF token (a scanner) is refused; the state stays."""
    admin_opt_out(family.org, "email", family.email)
    response = client.post(link_for("confirm", family.org, "email", family.email))
    assert response.status_code == 400
    assert state_of(family.org, "email", family.email).status == Status.OPTED_OUT


def test_confirm_for_a_carrier_blocked_number_says_text_start(client, family):
    """A STOP-blocked number cannot be confirmed by link: the page says to text START."""
    ledger.opt_out(
        family.org,
        "text",
        family.cell,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient(),
        carrier_block=True,
    )
    db.session.commit()
    url = link_for("confirm", family.org, "text", family.cell)
    page = client.get(url)
    assert page.status_code == 409
    assert "texting START to +1 202-555-0100" in body(page)
    assert ">Confirm</button>" not in body(page)
    client.post(url, data={"csrf_token": csrf_token(client, "/opt-back-in")})
    assert state_of(family.org, "text", family.cell).status == Status.OPTED_OUT


# --- unsubscribe (RFC 8058) -----------------------------------------------------------------


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
def test_one_click_post_without_cookies_unsubscribes_and_answers_200(app, family, multipart):
    """A mail client's one-click POST, with no cookie and no CSRF token, opts the email out."""
    url = link_for("unsubscribe", family.org, "email", family.email)
    client = app.test_client(use_cookies=False)
    data = {"List-Unsubscribe": "One-Click"}
    response = client.post(
        url, data=data, content_type="multipart/form-data" if multipart else None
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in body(response)
    assert "Set-Cookie" not in response.headers
    state = state_of(family.org, "email", family.email)
    assert state.status == Status.OPTED_OUT and state.source == Source.ONE_CLICK
    assert (
        events_of(family.email, fresh=True)[-1].evidence["method"] == "List-Unsubscribe=One-Click"
    )
    again = client.post(url, data=data)
    assert again.status_code == 200
    assert len(events_of(family.email, fresh=True)) == 1


def test_unsubscribe_get_changes_nothing_and_shows_a_button(client, family):
    """A scanner that follows the link unsubscribes no one: GET shows a button only."""
    url = link_for("unsubscribe", family.org, "email", family.email)
    page = client.get(url)
    assert page.status_code == 200
    assert ">Unsubscribe</button>" in body(page)
    assert state_of(family.org, "email", family.email) is None


def test_unsubscribe_button_opts_out_with_source_email_link(client, family, mailbox):
    """The page's button (CSRF-checked) opts out; the person gets the one confirmation."""
    url = link_for("unsubscribe", family.org, "email", family.email)
    response = client.post(url, data={"csrf_token": csrf_token(client, url)})
    assert response.status_code == 200
    state = state_of(family.org, "email", family.email)
    assert state.status == Status.OPTED_OUT and state.source == Source.EMAIL_LINK
    confirmations = mailbox.to(family.email)
    assert len(confirmations) == 1
    assert "unsubscribed" in confirmations[0]["Subject"]
    assert "is unsubscribed from email" in body(client.get(url))


def test_unsubscribe_form_post_without_csrf_and_not_one_click_changes_nothing(app, family):
    """A POST that is neither the one-click body nor the CSRF-checked button does nothing."""
    url = link_for("unsubscribe", family.org, "email", family.email)
    response = app.test_client().post(url, data={"something": "else"})
    assert response.status_code == 400
    assert state_of(family.org, "email", family.email) is None


def test_unsubscribe_link_from_an_older_email_still_opts_out(client, family):
    """Opting out is always allowed: an unsubscribe link works after the state moved on."""
    url = link_for("unsubscribe", family.org, "email", family.email)
    admin_opt_out(family.org, "email", family.email)
    ledger.opt_in(
        family.org, "email", family.email, source=Source.EMAIL_LINK, actor=Actor.recipient()
    )
    db.session.commit()
    response = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert state_of(family.org, "email", family.email).status == Status.OPTED_OUT


def test_every_email_arrives_with_list_unsubscribe_headers_that_work(app, family, mailbox):
    """The message at the SMTP server has RFC 8058 headers, one Message-ID, footer links; the
    header's URL unsubscribes with a cookie-less one-click POST."""
    url = link_for("unsubscribe", family.org, "email", family.email)
    app.test_client().post(url, data={"csrf_token": "x", "List-Unsubscribe": "One-Click"})
    admin_opt_out(family.org, "text", family.cell)  # no email: admin source, text channel
    ledger.opt_in(
        family.org, "email", family.email, source=Source.EMAIL_LINK, actor=Actor.recipient()
    )
    db.session.commit()
    messages = mailbox.to(family.email)
    assert len(messages) == 1  # the one opt-out confirmation
    message = messages[0]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header_url = re.fullmatch(
        r"<(https://consent\.example\.org/unsubscribe/\S+)>", message["List-Unsubscribe"]
    ).group(1)
    assert len(message.get_all("Message-ID")) == 1
    text = mailbox.text(message)
    assert "Unsubscribe from email: https://consent.example.org/unsubscribe/" in text
    assert mailbox.links(message, "/preferences/")
    html = message.get_body(preferencelist=("html",)).get_content()
    assert 'href="https://consent.example.org/unsubscribe/' in html
    path = header_url.removeprefix("https://consent.example.org")
    response = app.test_client(use_cookies=False).post(
        path,
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    state = state_of(family.org, "email", family.email)
    assert state.status == Status.OPTED_OUT and state.source == Source.ONE_CLICK


# --- preferences ----------------------------------------------------------------------------


def test_preferences_page_lists_the_contacts_cell_numbers_and_two_answers(client, family):
    """GET shows the contact's cell number, its status in words, and Yes / No."""
    page = body(client.get(link_for("preferences", family.org, "email", family.email)))
    assert ledger.notifications.format_phone(family.cell) in page
    assert "No choice yet" in page
    assert 'value="Yes, send me text messages"' in page
    assert 'value="No, do not send me text messages"' in page
    assert state_of(family.org, "text", family.cell) is None


def test_preferences_no_opts_the_cells_out_and_confirms_to_person_and_organization(
    client, family, mailbox
):
    """ "No" opts the cell out of texts (email_link); an email goes to the person and office@."""
    ledger.opt_in(family.org, "text", family.cell, source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    url = link_for("preferences", family.org, "email", family.email)
    response = client.post(
        url,
        data={"csrf_token": csrf_token(client, url), "no": "No, do not send me text messages"},
        follow_redirects=True,
    )
    assert "Saved. We will not send text messages" in body(response)
    assert "Opted out" in body(response)
    state = state_of(family.org, "text", family.cell)
    assert state.status == Status.OPTED_OUT and state.source == Source.EMAIL_LINK
    assert (
        events_of(family.cell, fresh=True)[-1].evidence["words"]
        == "No, do not send me text messages"
    )
    [to_person] = mailbox.to(family.email)
    assert "No, do not send me text messages" in mailbox.text(to_person)
    assert mailbox.links(to_person, "/preferences/")
    [to_office] = mailbox.to(OFFICE)
    assert "Opt-out" in to_office["Subject"]


def test_preferences_yes_opts_the_cells_in_and_spends_the_link(client, family):
    """ "Yes" opts in a number with no choice; the link covered that choice, so it is spent:
    replaying it (here with "No") gets the spent page and changes nothing."""
    url = link_for("preferences", family.org, "email", family.email)
    yes = {"csrf_token": csrf_token(client, url), "yes": "Yes, send me text messages"}
    page = body(client.post(url, data=yes))
    assert "this link is used up" in page and 'value="Yes, send me text messages"' not in page
    assert state_of(family.org, "text", family.cell).status == Status.OPTED_IN
    assert check_one(family.org, "text", family.cell).allowed
    no = {
        "csrf_token": csrf_token(client, "/opt-back-in"),
        "no": "No, do not send me text messages",
    }
    replay = client.post(url, data=no)
    assert replay.status_code == 410
    assert state_of(family.org, "text", family.cell).status == Status.OPTED_IN


def test_preferences_yes_cannot_lift_a_carrier_block(client, family):
    """A STOP-blocked number stays opted out and the page says to text START."""
    ledger.opt_out(
        family.org,
        "text",
        family.cell,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient(),
        carrier_block=True,
    )
    db.session.commit()
    url = link_for("preferences", family.org, "email", family.email)
    response = client.post(
        url,
        data={"csrf_token": csrf_token(client, url), "yes": "Yes, send me text messages"},
        follow_redirects=True,
    )
    assert "texting START to +1 202-555-0100" in body(response)
    assert state_of(family.org, "text", family.cell).status == Status.OPTED_OUT


def test_preferences_link_of_one_address_changes_only_its_own_numbers(client, family):
    """Another family's cell number is untouched by this family's preferences link."""
    other = factories.make_family(family.org, family.org.sites[0], name="Other", contacts=1)
    db.session.commit()
    other_cell = other.contacts[0].phones[0].number
    url = link_for("preferences", family.org, "email", family.email)
    assert ledger.notifications.format_phone(other_cell) not in body(client.get(url))
    client.post(url, data={"csrf_token": csrf_token(client, url), "no": "No"})
    assert state_of(family.org, "text", other_cell) is None
    assert state_of(family.org, "text", family.cell).status == Status.OPTED_OUT


def test_preferences_for_an_address_with_no_cell_says_so(client, family):
    """An address with no cell number on record: the page says there is nothing to choose."""
    page = client.get(link_for("preferences", family.org, "email", "nobody@example.org"))
    assert "We have no cell phone number on record" in body(page)


def test_preferences_link_is_spent_when_the_email_state_changed(client, family):
    """The preferences link names the email's state: an unsubscribe since spends it."""
    url = link_for("preferences", family.org, "email", family.email)
    admin_opt_out(family.org, "email", family.email)
    page = client.get(url)
    assert page.status_code == 410
    assert "most recent email" in body(page)


# --- the public opt-back-in page ------------------------------------------------------------


def confirm_requests(mailbox, address):
    """The emails at the SMTP server for `address` that carry a confirmation link."""
    return [m for m in mailbox.to(address) if mailbox.links(m, "/confirm/")]


def ask(client, channel, address):
    return client.post(
        "/opt-back-in",
        data={
            "csrf_token": csrf_token(client, "/opt-back-in"),
            "channel": channel,
            "address": address,
        },
    )


def test_opt_back_in_answers_the_same_for_known_and_unknown_and_sends_nothing_for_unknown(
    client, family, mailbox
):
    """Same page for an opted-out address and one never seen; only the first gets a link."""
    admin_opt_out(family.org, "email", family.email)
    known = body(ask(client, "email", family.email))
    unknown = body(ask(client, "email", "stranger@example.org"))
    assert known.replace(family.email, "X") == unknown.replace("stranger@example.org", "X")
    assert "Check your messages" in known
    assert len(confirm_requests(mailbox, family.email)) == 1
    assert mailbox.to("stranger@example.org") == []
    outbox = db.session.scalars(sa.select(OutboxMessage.to_address)).all()
    assert "stranger@example.org" not in outbox
    request = events_of(family.email, fresh=True)[-1]
    assert request.kind == "request" and request.source == Source.EMAIL_LINK
    assert events_of("stranger@example.org", fresh=True) == []


def test_opt_back_in_by_phone_sends_nothing_and_says_text_start_or_call(client, family):
    """A phone that opted out gets nothing from the public page (anyone can type any number):
    for texts the page says to text START, for calls to call the district."""
    admin_opt_out(family.org, "text", family.cell)
    admin_opt_out(family.org, "voice", family.cell)
    texts = body(ask(client, "text", family.cell))
    calls = body(ask(client, "voice", family.cell))
    assert "text START to +1 202-555-0100 from that phone" in texts
    assert "call or write to the district" in calls
    assert "office@example.org" in calls
    db.session.expire_all()
    purposes = db.session.scalars(
        sa.select(OutboxMessage.purpose).where(OutboxMessage.to_address == family.cell)
    ).all()
    assert "confirm_request" not in purposes
    assert [e.kind for e in events_of(family.cell)] == ["change", "change"]


def test_opt_back_in_for_a_carrier_blocked_number_answers_the_same_and_sends_no_text(
    client, family
):
    """A STOP-blocked number: no text (the carrier would block it); the same answer as any
    number, which tells everyone who replied STOP to text START instead."""
    ledger.opt_out(
        family.org,
        "text",
        family.cell,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient(),
        carrier_block=True,
    )
    db.session.commit()
    stranger = factories.next_number()
    blocked = body(ask(client, "text", family.cell))
    unknown = body(ask(client, "text", stranger))
    assert "text START to +1 202-555-0100" in blocked
    assert blocked.replace(family.cell, "X") == unknown.replace(stranger, "X")
    purposes = db.session.scalars(sa.select(OutboxMessage.purpose)).all()
    assert "confirm_request" not in purposes


@pytest.mark.parametrize(
    ("channel", "address", "error"),
    [
        ("email", "2025550123", "For email, enter an email address."),
        ("text", "someone@example.org", "For text messages or calls, enter a phone number."),
        ("text", "12", "Enter a phone number with its area code"),
        ("email", "not@an@email", "Enter a complete email address"),
        ("", "someone@example.org", "Choose text messages, calls or email."),
    ],
)
def test_opt_back_in_bad_input_gets_a_clear_message_on_its_field(
    client, family, channel, address, error
):
    """Bad input: the form again, the error beside its field, nothing recorded."""
    page = body(ask(client, channel, address))
    assert error in page
    assert 'aria-invalid="true"' in page or 'id="channel-error"' in page
    assert db.session.scalars(sa.select(ConsentEvent)).all() == []


def test_opt_back_in_post_without_csrf_is_refused(client, family):
    """The public form is CSRF-protected like every form."""
    response = client.post("/opt-back-in", data={"channel": "email", "address": "a@b.org"})
    assert response.status_code == 400


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(address=st.text(max_size=60), channel=st.sampled_from(["text", "voice", "email", "fax"]))
def test_opt_back_in_never_fails_on_any_text(client, family, address, channel):
    """Whatever is typed, the page answers 200 (the form again or the same answer)."""
    response = client.post(
        "/opt-back-in",
        data={
            "csrf_token": csrf_token(client, "/opt-back-in"),
            "channel": channel,
            "address": address,
        },
    )
    assert response.status_code == 200


@pytest.fixture
def limited_client(app):
    """A client of a second app on the same database, with rate limiting on."""
    from consent import create_app

    limited = create_app({**app.config, "RATELIMIT_ENABLED": True})
    limiter.reset()
    yield limited.test_client()
    limiter.reset()
    limiter.enabled = False
    with limited.app_context():
        db.session.remove()
        db.engine.dispose()


def test_opt_back_in_is_rate_limited(limited_client, family):
    """The eleventh request in a minute from one address gets the 429 page."""
    codes = [ask(limited_client, "email", f"p{i}@example.org").status_code for i in range(10)]
    assert codes[:10] == [200] * 10
    last = ask(limited_client, "email", "p11@example.org")
    assert last.status_code == 429
    assert "Too many requests" in body(last)


def test_link_pages_are_rate_limited(limited_client, family):
    """The link pages answer 429 after 30 requests a minute from one address."""
    url = link_for("confirm", family.org, "email", family.email)
    codes = [limited_client.get(url).status_code for _ in range(31)]
    assert set(codes[:30]) == {200}
    assert codes[30] == 429


def test_one_click_posts_have_their_own_higher_limit(limited_client, family):
    """Mail providers post one-click for many people from few addresses: not cut at 30."""
    url = link_for("unsubscribe", family.org, "email", family.email)
    codes = {
        limited_client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code
        for _ in range(40)
    }
    assert codes == {200}


# --- the whole loop -------------------------------------------------------------------------


def test_admin_opt_out_then_opt_back_in_by_email_link_makes_the_address_eligible(
    client, family, mailbox
):
    """Admin opt-out, the public page, the link from the email as it arrived, confirm: ok."""
    admin_opt_out(family.org, "email", family.email)
    assert check_one(family.org, "email", family.email).reason == "opted_out"
    ask(client, "email", family.email.upper())
    [message] = confirm_requests(mailbox, family.email)
    [url] = mailbox.links(message, "/confirm/")
    path = url.removeprefix("https://consent.example.org")
    page = client.get(path)
    assert "Confirm that you want to receive email" in body(page)
    client.post(path, data={"csrf_token": csrf_token(client, path)})
    db.session.expire_all()
    assert check_one(family.org, "email", family.email).reason == "ok"
    assert state_of(family.org, "email", family.email).status == Status.OPTED_IN


def test_smtp_down_keeps_the_change_and_outbox_send_delivers_each_email_once(
    app, client, family, runner
):
    """SMTP down: the opt-out is saved, the email waits; `flask outbox send` after the server
    starts delivers every email exactly once, and a second run sends nothing."""
    from tests.conftest import free_port

    port = free_port()
    mail_state = app.extensions["mail"]
    real_port = mail_state.port
    mail_state.port = port  # nothing listens there: the server is down
    try:
        url = link_for("unsubscribe", family.org, "email", family.email)
        response = client.post(url, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
        assert state_of(family.org, "email", family.email).status == Status.OPTED_OUT
        waiting = db.session.scalars(sa.select(OutboxMessage)).all()
        assert {m.to_address for m in waiting} == {family.email, OFFICE}
        assert {m.status for m in waiting} == {"queued"}
        with SmtpServer(port) as server:
            first = runner.invoke(args=["outbox", "send"])
            second = runner.invoke(args=["outbox", "send"])
        assert "sent 2, failed 0" in first.output
        assert "sent 0, failed 0" in second.output
        received = sorted(str(m["To"]) for m in server.messages)
        assert received == sorted([family.email, OFFICE])
    finally:
        mail_state.port = real_port


class SmtpServer:
    """An aiosmtpd server started on a given loopback port (the one the app was told of)."""

    def __init__(self, port):
        from email import message_from_bytes, policy

        from aiosmtpd.controller import Controller

        server = self
        self.messages = []

        class Keep:
            async def handle_DATA(self, _server, _session, envelope):
                server.messages.append(
                    message_from_bytes(envelope.original_content, policy=policy.default)
                )
                return "250 OK"

        self.controller = Controller(Keep(), hostname="127.0.0.1", port=port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


# --- preferences: the kinds of email ---------------------------------------------------------


def purpose_post(client, url, purpose, allow):
    return client.post(
        url + "/purposes",
        data={"csrf_token": csrf_token(client, url), "purpose": str(purpose.id), "allow": allow},
    )


def test_preferences_offers_the_kinds_of_email_and_a_change_spends_the_link(client, family):
    from consent import purposes

    general = purposes.general(family.org)
    url = link_for("preferences", family.org, "email", family.email)
    page = body(client.get(url))
    assert "Kinds of email" in page and "Always sent" in page
    assert 'aria-label="Turn off: General, Email"' in page
    assert 'aria-label="Turn off: Emergency, Email"' not in page  # always sent
    response = purpose_post(client, url, general, "off")
    assert response.status_code == 200
    page = body(response)
    assert "General email to" in page and "this link is used up" in page
    assert "/purposes" not in page.split('id="purposes"', 1)[1]  # no more buttons
    event = events_of(family.email, fresh=True)[-1]
    assert (event.purpose_id, event.source, event.to_status) == (
        general.id,
        Source.EMAIL_LINK,
        Status.OPTED_OUT,
    )
    assert event.evidence["link"] == "preferences" and event.evidence["token_id"]
    assert not check_one(family.org, "email", family.email, general).allowed
    assert state_of(family.org, "email", family.email) is None  # the channel untouched
    # Spent: replaying it (on again, or the texts answer) changes nothing.
    assert purpose_post(client, url, general, "on").status_code == 410
    assert client.get(url).status_code == 410
    assert not check_one(family.org, "email", family.email, general).allowed
    # A fresh link turns it back on.
    fresh = link_for("preferences", family.org, "email", family.email)
    assert 'aria-label="Turn on: General, Email"' in body(client.get(fresh))
    purpose_post(client, fresh, general, "on")
    assert check_one(family.org, "email", family.email, general).allowed


def test_preferences_refuses_an_always_sent_or_another_organizations_purpose(client, family):
    from consent import purposes

    url = link_for("preferences", family.org, "email", family.email)
    emergency = purposes.by_key(family.org, "emergency")
    response = purpose_post(client, url, emergency, "off")
    assert "Parents may not turn off these messages." in body(response)
    other = factories.make_org(name="Elsewhere", texting_number="+12025550199")
    db.session.commit()
    response = purpose_post(client, url, purposes.general(other), "off")
    assert response.status_code == 404
    assert events_of(family.email, fresh=True) == []
    # A bad token, and a form without its CSRF token, change nothing.
    assert purpose_post(
        client, spoil(url, 40), purposes.general(family.org), "off"
    ).status_code in (400, 404, 410)
    response = client.post(url + "/purposes", data={"purpose": str(emergency.id), "allow": "off"})
    assert response.status_code == 400
    assert events_of(family.email, fresh=True) == []


def test_a_purpose_choice_of_the_email_spends_an_earlier_preferences_link(client, family):
    from consent import purposes

    url = link_for("preferences", family.org, "email", family.email)
    ledger.change_purpose(
        family.org, "email", family.email, purposes.general(family.org), Status.OPTED_OUT,
        source=Source.PORTAL, actor=Actor.recipient(),
    )  # fmt: skip
    db.session.commit()
    assert client.get(url).status_code == 410


# --- preferences: the kinds of texts and calls of the covered numbers --------------------------


def number_post(client, url, purpose, allow, channel, address):
    return client.post(
        url + "/purposes",
        data={
            "csrf_token": csrf_token(client, url),
            "purpose": str(purpose.id),
            "allow": allow,
            "channel": channel,
            "address": address,
        },
    )


def test_preferences_offers_the_kinds_of_texts_and_calls_of_each_covered_number(client, family):
    from consent import purposes

    general = purposes.general(family.org)
    attendance = purposes.by_key(family.org, "attendance")
    shown = format_phone(family.cell)
    url = link_for("preferences", family.org, "email", family.email)
    page = html.unescape(body(client.get(url)))
    assert "Kinds of texts and calls" in page
    table = page.split('id="number-purposes"', 1)[1]
    assert f"Kinds of messages to {shown}" in table
    assert '<th scope="col">Texts</th><th scope="col">Calls</th>' in table
    assert f'aria-label="Turn off: General, Texts, {shown}"' in table
    assert f'aria-label="Turn off: Attendance, Calls, {shown}"' in table
    assert f'aria-label="Turn off: Emergency, Calls, {shown}"' not in table  # always sent
    response = number_post(client, url, attendance, "off", "voice", family.cell)
    assert response.status_code == 200
    page = html.unescape(body(response))
    assert f"Attendance calls to {shown}: off." in page and "this link is used up" in page
    assert "/purposes" not in page.split('id="number-purposes"', 1)[1]  # no more buttons
    event = events_of(family.cell, fresh=True)[-1]
    assert (event.purpose_id, event.channel, event.source, event.to_status) == (
        attendance.id, Channel.VOICE, Source.EMAIL_LINK, Status.OPTED_OUT,
    )  # fmt: skip
    assert event.evidence["link"] == "preferences" and event.evidence["email"] == family.email
    assert not check_one(family.org, "voice", family.cell, attendance).allowed
    assert check_one(family.org, "voice", family.cell, general).allowed
    # Spent: the same link turns nothing else off (a number's choice, the texts answer).
    assert number_post(client, url, general, "off", "text", family.cell).status_code == 410
    assert number_post(client, url, attendance, "on", "voice", family.cell).status_code == 410
    assert not check_one(family.org, "voice", family.cell, attendance).allowed
    assert [e.purpose_id for e in events_of(family.cell, fresh=True)].count(general.id) == 0
    # A fresh link (its digest covers the new choice) turns it back on.
    fresh = link_for("preferences", family.org, "email", family.email)
    assert f'aria-label="Turn on: Attendance, Calls, {shown}"' in html.unescape(
        body(client.get(fresh))
    )
    number_post(client, fresh, attendance, "on", "voice", family.cell)
    assert check_one(family.org, "voice", family.cell, attendance).allowed


def test_a_preferences_link_changes_no_number_it_does_not_cover(client, family):
    """A link proves its mailbox and the numbers of the people who have it: another family's
    number, an email address not the link's, a forged token change nothing."""
    from consent import purposes

    other = factories.make_family(
        family.org, factories.make_site(family.org, name="Other"), name="Other", contacts=1,
        students=0,
    )  # fmt: skip
    db.session.commit()
    stranger_cell = other.contacts[0].phones[0].number
    stranger_email = other.contacts[0].emails[0].address
    general = purposes.general(family.org)
    url = link_for("preferences", family.org, "email", family.email)
    for channel, address in (("text", stranger_cell), ("voice", stranger_cell),
                             ("email", stranger_email), ("text", family.email)):  # fmt: skip
        response = number_post(client, url, general, "off", channel, address)
        assert response.status_code == 404, (channel, address)
    assert events_of(stranger_cell, fresh=True) == [] and events_of(stranger_email) == []
    forged = spoil(url, 40)
    response = number_post(client, forged, general, "off", "text", family.cell)
    assert response.status_code in (400, 404, 410)
    assert [e for e in events_of(family.cell, fresh=True) if e.purpose_id] == []
    # The link still works for its own number: the refusals spent nothing.
    assert number_post(client, url, general, "off", "text", family.cell).status_code == 200
    assert not check_one(family.org, "text", family.cell, general).allowed


def test_a_purpose_choice_of_a_covered_number_spends_an_earlier_preferences_link(client, family):
    from consent import purposes

    url = link_for("preferences", family.org, "email", family.email)
    ledger.change_purpose(
        family.org, "text", family.cell, purposes.general(family.org), Status.OPTED_OUT,
        source=Source.PORTAL, actor=Actor.recipient(),
    )  # fmt: skip
    db.session.commit()
    assert client.get(url).status_code == 410
    general = purposes.general(family.org)
    assert number_post(client, url, general, "on", "text", family.cell).status_code == 410
    assert not check_one(family.org, "text", family.cell, general).allowed
