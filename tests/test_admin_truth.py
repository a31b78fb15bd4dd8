"""The admin says only what is true, and nothing is done by a slip: the opt-out asks first,
the daily limit is said, a pending confirmation shows, the Outbox tells recorded from sent,
no text is offered to a landline; and the smaller defects of issue 15."""

from __future__ import annotations

import re

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import ledger, outbox
from consent.extensions import db
from consent.ledger import Actor
from consent.models import (
    Channel,
    ConsentEvent,
    OutboxMessage,
    Phone,
    PhoneKind,
    Source,
    Status,
    utcnow,
)
from tests import factories
from tests.helpers import csrf_token, state_of


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def _consent(client, contact_id, **data):
    path = f"/admin/contacts/{contact_id}/"
    return client.post(path + "consent", data={"csrf_token": csrf_token(client, path), **data})


def _outbox_ids():
    return set(db.session.scalars(sa.select(OutboxMessage.id)))


# --- the opt-out asks first -------------------------------------------------------------


def test_one_click_on_turn_off_changes_nothing_and_says_what_will_be_sent(client, world):
    contact = world.near.contacts[0]
    number = contact.phones[0].number
    world.login(client, "org")
    before = _outbox_ids()
    page = _consent(client, contact.id, address=number, channel="text", action="opt_out")
    assert page.status_code == 200
    words = _text(page)
    assert "Nothing has changed yet" in words
    assert "gets one text confirming" in words and 'name="confirm" value="yes"' in words
    assert state_of(world.org, Channel.TEXT, number).status == Status.OPTED_IN
    assert _outbox_ids() == before
    done = _consent(
        client, contact.id, address=number, channel="text", action="opt_out", confirm="yes"
    )
    assert done.status_code == 302
    assert state_of(world.org, Channel.TEXT, number).status == Status.OPTED_OUT


def test_voice_opt_out_confirm_says_nothing_is_sent(client, world):
    contact = world.near.contacts[0]
    world.login(client, "org")
    page = _text(
        _consent(
            client,
            contact.id,
            address=contact.phones[0].number,
            channel="voice",
            action="opt_out",
        )
    )
    assert "Nothing is sent to the person" in page


def test_confirm_step_is_refused_to_staff_and_other_sites(client, world):
    contact = world.near.contacts[0]
    number = contact.phones[0].number
    world.login(client, "staff")
    assert (
        _consent(client, contact.id, address=number, channel="text", action="opt_out").status_code
        == 403
    )
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    world.login(client, "site_high")
    response = _consent(
        client, contact.id, address=number, channel="text", action="opt_out", confirm="yes"
    )
    assert response.status_code == 404
    assert state_of(world.org, Channel.TEXT, number).status == Status.OPTED_IN


# --- say only what is true ----------------------------------------------------------------


def _opted_out(world, contact, channel=Channel.TEXT):
    number = contact.phones[0].number
    ledger.opt_out(
        world.org, channel, number, source=Source.ADMIN, actor=Actor.system(), confirm=False
    )
    db.session.commit()
    return number


def test_second_confirmation_the_same_day_says_already_sent(client, world):
    contact = world.near.contacts[0]
    number = _opted_out(world, contact)
    world.login(client, "org")
    first = _consent(
        client, contact.id, address=number, channel="text", action="opt_back_in", attested="y"
    )
    page = _text(client.get(first.headers["Location"]))
    assert "A confirmation was sent to" in page
    assert "Waiting for confirmation since" in page
    count = len(_outbox_ids())
    second = _consent(
        client, contact.id, address=number, channel="text", action="opt_back_in", attested="y"
    )
    page = _text(client.get(second.headers["Location"]))
    sent = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.purpose == "confirm_request")
    ).one()
    assert (
        f"Already sent today; the person can use the link sent at {sent.created_at:%H:%M}" in page
    )
    assert "A confirmation was sent to" not in page
    assert len(_outbox_ids()) == count


def test_no_text_offered_or_sent_to_a_home_phone(client, world):
    contact = world.near.contacts[0]
    home = factories.next_number()
    contact.phones.append(Phone(number=home, kind=PhoneKind.HOME))
    db.session.commit()
    world.login(client, "org")
    page = _text(client.get(f"/admin/contacts/{contact.id}/"))
    assert page.count("Turn on Texts") == 0 or home not in page.split("Turn on Texts")[0][-600:]
    before = _outbox_ids()
    response = _consent(
        client, contact.id, address=home, channel="text", action="opt_back_in", attested="y"
    )
    assert "texts are not offered to it" in _text(client.get(response.headers["Location"]))
    assert _outbox_ids() == before
    texts = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.to_address == home)
    ).all()
    assert texts == []


def test_calls_opt_back_in_for_a_home_phone_goes_by_email_not_text(client, world):
    contact = world.near.contacts[0]
    home = factories.next_number()
    contact.phones.append(Phone(number=home, kind=PhoneKind.HOME))
    db.session.commit()
    ledger.opt_out(world.org, Channel.VOICE, home, source=Source.ADMIN, actor=Actor.system())
    db.session.commit()
    world.login(client, "org")
    _consent(client, contact.id, address=home, channel="voice", action="opt_back_in", attested="y")
    assert (
        db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.to_address == home)).all()
        == []
    )
    event = db.session.scalars(sa.select(ConsentEvent).where(ConsentEvent.kind == "request")).one()
    assert event.evidence["sent_to"] == contact.emails[0].address


def _message(world, **values):
    message = OutboxMessage(
        organization_id=world.org.id,
        idempotency_key=f"truth:{values.get('to_address', 'x')}:{values.get('status')}",
        channel="text",
        purpose="confirm_request",
        body="Confirm: https://example.org/confirm/abc",
        headers={"X-Test": "yes"},
        attempts=1,
        next_attempt_at=utcnow(),
        **values,
    )
    db.session.add(message)
    db.session.commit()
    return message


def test_outbox_tells_recorded_from_sent_and_shows_body_to_the_org_team(client, world):
    recorded = _message(world, status="sent", provider_id="recorded:1", to_address="+12025550177")
    _message(world, status="sent", provider_id="SM123", to_address="+12025550178")
    world.login(client, "org")
    page = _text(client.get("/admin/outbox/"))
    assert "recorded (no transport configured: not sent)" in page
    assert ">sent<" in page.replace(" <", "<").replace("> ", ">")
    details = _text(client.get(f"/admin/outbox/details/?id={recorded.id}"))
    assert "https://example.org/confirm/abc" in details and "X-Test: yes" in details


def test_outbox_says_sent_recorded_failed_and_expired_each_in_its_own_words(client, world, app):
    from datetime import timedelta

    _message(world, status="sent", provider_id="SM9", to_address="+12025550171")
    _message(world, status="sent", provider_id="recorded:9", to_address="+12025550172")
    _message(world, status="failed", to_address="+12025550173")
    late = _message(world, status="queued", to_address="+12025550174")
    late.purpose = "optout_confirmation"
    late.created_at = utcnow() - outbox.CONFIRMATION_WINDOW - timedelta(minutes=1)
    db.session.commit()
    assert outbox.deliver(ids=[late.id]).expired == 1  # the worker drops it unsent
    world.login(client, "org")
    page = _text(client.get("/admin/outbox/"))
    cells = {
        number: re.sub(r"<[^>]+>", " ", page[page.index(number) :].split("</tr>")[0])
        for number in ("+12025550171", "+12025550172", "+12025550173", "+12025550174")
    }
    expired = "expired (an opt-out confirmation text not sent within five minutes: dropped)"
    recorded = "recorded (no transport configured: not sent)"
    assert expired in cells["+12025550174"]
    assert recorded in cells["+12025550172"] and expired not in cells["+12025550172"]
    assert " failed " in cells["+12025550173"] and recorded not in cells["+12025550173"]
    assert " sent " in cells["+12025550171"] and recorded not in cells["+12025550171"]


def test_outbox_is_the_org_teams_only(client, world):
    message = _message(world, status="sent", provider_id="recorded:1", to_address="+12025550179")
    world.login(client, "site")
    assert client.get(f"/admin/outbox/details/?id={message.id}").status_code == 403


# --- smaller defects ----------------------------------------------------------------------


def test_outbox_action_with_a_non_numeric_id_is_400(client, world):
    world.login(client, "org")
    response = client.post(
        "/admin/outbox/action/",
        data={"action": "retry", "rowid": ["abc"], "csrf_token": csrf_token(client, "/admin/")},
    )
    assert response.status_code == 400


def test_admin_pages_and_exports_are_not_stored(client, world):
    world.login(client, "org")
    for path in ("/admin/", "/admin/optouts/", "/admin/optouts/export.csv", "/admin/contacts/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers.get("Cache-Control") == "no-store", path


@settings(max_examples=25, suppress_health_check=list(HealthCheck), deadline=None)
@given(name=st.text(min_size=1, max_size=40))
def test_header_values_are_single_line(app, name):
    message = OutboxMessage(subject="x")  # a transient stand-in: queue() builds the values
    del message
    assert "\n" not in outbox.one_line(f"Opt-out: {name}\r\nBcc: x@example.org")
    assert "\r" not in outbox.one_line(name)


def test_a_line_break_in_a_name_does_not_stop_the_notification(world, mailbox):
    message = outbox.queue(
        organization_id=world.org.id,
        channel="email",
        purpose="org_notification",
        to="office@example.org",
        subject="Opt-out: Ana\nRivera, text messages",
        body="Ana Rivera opted out.",
        headers={"X-Who": "Ana\r\nRivera"},
        key="linebreak:1",
    )
    db.session.commit()
    report = outbox.deliver(ids=[message.id])
    assert report.sent == 1 and report.failed == 0
    arrived = mailbox.to("office@example.org")
    assert [m["Subject"] for m in arrived] == ["Opt-out: Ana Rivera, text messages"]


def _bounced(world):
    number = world.near.contacts[0].phones[0].number
    ledger.mark_bounced(world.org, Channel.TEXT, number)
    db.session.commit()
    return number


def test_clearing_a_bounce_from_the_list_is_the_org_teams_only(client, world):
    number = _bounced(world)
    state = state_of(world.org, Channel.TEXT, number)
    world.login(client, "site")
    page = _text(client.get("/admin/optouts/?flt1_status_equals=bounced"))
    assert "Clear bounce…" in page
    response = client.post(
        "/admin/optouts/action/",
        data={
            "action": "clear_bounce",
            "rowid": [str(state.id)],
            "csrf_token": csrf_token(client, "/admin/optouts/"),
        },
    )
    assert response.status_code in (302, 403)
    assert state_of(world.org, Channel.TEXT, number).status == Status.BOUNCED
    row = f"/admin/optouts/row/{state.id}/"
    assert "The organization team can clear the bounce" in _text(client.get(row))
    response = client.post(row, data={"do": "clear_bounce", "csrf_token": csrf_token(client, row)})
    assert response.status_code == 403
    assert state_of(world.org, Channel.TEXT, number).status == Status.BOUNCED


def test_opt_back_in_on_the_list_has_words(client, world):
    _opted_out(world, world.near.contacts[0])
    world.login(client, "org")
    assert "Opt Back In…" in _text(client.get("/admin/optouts/"))


def test_429_page_has_no_none(app, client):
    from consent.errors import error_response

    with app.test_request_context("/opt-back-in"):
        response = error_response(429)
        body = response[0] if isinstance(response, tuple) else response
        text = body if isinstance(body, str) else body.get_data(as_text=True)
    assert "None" not in text


def test_waiting_for_confirmation_on_the_list_and_the_portal(client, world):
    contact = world.near.contacts[0]
    number = _opted_out(world, contact)
    world.login(client, "org")
    _consent(client, contact.id, address=number, channel="text", action="opt_back_in", attested="y")
    assert "Waiting for confirmation since" in _text(client.get("/admin/contacts/"))
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    world.login(client, "parent")
    assert "Waiting for confirmation since" in _text(client.get("/account/settings"))


def test_waiting_for_confirmation_is_in_the_districts_time_zone_with_utc_on_hover(client, world):
    from datetime import UTC
    from zoneinfo import ZoneInfo

    world.org.time_zone = "America/Los_Angeles"
    db.session.commit()
    contact = world.near.contacts[0]
    number = _opted_out(world, contact)
    world.login(client, "org")
    _consent(client, contact.id, address=number, channel="text", action="opt_back_in", attested="y")
    asked = db.session.scalars(
        sa.select(ConsentEvent.occurred_at).where(
            ConsentEvent.kind == "request", ConsentEvent.address == number
        )
    ).one()
    local = asked.replace(tzinfo=UTC).astimezone(ZoneInfo("America/Los_Angeles"))
    shown = local.strftime("%Y-%m-%d %H:%M %Z")  # "2026-12-01 06:12 PST"
    hover = f'title="{asked.strftime("%Y-%m-%d %H:%M")} UTC"'
    pages = {
        "list": "/admin/contacts/",
        "contact": f"/admin/contacts/{contact.id}/",
    }
    for name, path in pages.items():
        page = _text(client.get(path))
        waiting = page[page.index("Waiting for confirmation since") :][:200]
        assert shown in waiting and hover in waiting, name
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    world.login(client, "parent")
    for path in ("/account/settings", "/account/contacts"):
        page = _text(client.get(path))
        if "Waiting for confirmation since" not in page:
            continue
        waiting = page[page.index("Waiting for confirmation since") :][:200]
        assert shown in waiting and hover in waiting, path
        assert "UTC</" not in waiting
    assert "Waiting for confirmation since" in _text(client.get("/account/settings"))


def test_no_waiting_once_the_state_changed_after_the_request(client, world):
    contact = world.near.contacts[0]
    number = _opted_out(world, contact)
    world.login(client, "org")
    _consent(client, contact.id, address=number, channel="text", action="opt_back_in", attested="y")
    ledger.opt_in(
        world.org, Channel.TEXT, number, source=Source.SMS_KEYWORD, actor=Actor.recipient()
    )
    db.session.commit()
    assert "Waiting for confirmation since" not in _text(
        client.get(f"/admin/contacts/{contact.id}/")
    )


def test_add_opt_out_asks_first(client, world):
    world.login(client, "org")
    path = "/admin/optouts/add/"
    data = {"address": "202-555-0177", "channel": "text", "csrf_token": csrf_token(client, path)}
    page = _text(client.post(path, data=data))
    assert "Nothing has changed yet" in page and "gets one text confirming" in page
    assert state_of(world.org, Channel.TEXT, "+12025550177") is None
    response = client.post(path, data={**data, "confirm": "yes"})
    assert response.status_code == 302
    assert state_of(world.org, Channel.TEXT, "+12025550177").status == Status.OPTED_OUT


def test_opt_back_in_from_the_list_says_already_sent(client, world):
    number = _opted_out(world, world.near.contacts[0])
    state = state_of(world.org, Channel.TEXT, number)
    world.login(client, "org")
    row = f"/admin/optouts/row/{state.id}/"
    data = {"attested": "y", "csrf_token": csrf_token(client, row)}
    first = client.post(row, data=data)
    assert "We sent a confirmation link" in _text(client.get(first.headers["Location"]))
    second = client.post(row, data={**data, "csrf_token": csrf_token(client, row)})
    page = _text(client.get(second.headers["Location"]))
    assert "Already sent today" in page and "We sent a confirmation link" not in page
