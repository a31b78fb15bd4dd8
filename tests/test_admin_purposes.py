"""Message purposes in the admin: the contact page's address × purpose × channel table, a staff
purpose opt-out through the ledger (source admin, only when the organization allows it, never
an opt-in), and the purpose in the activity log (words, Spanish), its export and the feed."""

from __future__ import annotations

import csv
import html
import io

import sqlalchemy as sa

from consent import eligibility, ledger, purposes
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, ConsentEvent, PurposeState, Source, Status
from tests.api_helpers import ENV_KEY
from tests.conftest import csrf_token
from tests.factories import make_org
from tests.helpers import settled, state_of


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def record(client, contact, address, channel, purpose_id, note="asked by phone", confirm="yes"):
    data = {
        "csrf_token": csrf_token(client),
        "address": address,
        "channel": channel,
        "purpose": str(purpose_id),
        "note": note,
    }
    if confirm:
        data["confirm"] = confirm
    return client.post(f"/admin/contacts/{contact.id}/purpose", data=data)


def chosen(org, channel, address, purpose):
    db.session.expire_all()
    state = db.session.scalars(
        sa.select(PurposeState).filter_by(
            organization_id=org.id, channel=channel, address=address, purpose_id=purpose.id
        )
    ).one_or_none()
    return state.status if state else None


def test_contact_page_shows_each_address_purpose_and_channel(client, world):
    world.login(client, "org")
    contact = world.near.contacts[0]
    page = _text(client.get(f"/admin/contacts/{contact.id}/"))
    assert "Kinds of messages" in page
    table = page.split('id="purposes"', 1)[1].split("</table>", 1)[0]
    for name in ("Emergency", "Attendance", "General"):
        assert f'<th scope="col">{name}</th>' in table
    assert "Always sent" in table and "Sent" in table
    assert "Record an opt-out" in table


def test_org_team_records_a_purpose_opt_out_through_the_ledger(client, world):
    world.login(client, "org")
    contact = world.near.contacts[0]
    number = contact.phones[0].number
    general = purposes.general(world.org)
    response = record(client, contact, number, "text", general.id)
    assert response.status_code == 302
    assert chosen(world.org, Channel.TEXT, number, general) == Status.OPTED_OUT
    assert state_of(world.org, "text", number).status == Status.OPTED_IN  # channel untouched
    event = db.session.scalars(
        sa.select(ConsentEvent).where(ConsentEvent.purpose_id == general.id)
    ).one()
    assert event.source == Source.ADMIN and event.note == "asked by phone"
    assert "Olga Org" in event.actor_label
    page = _text(client.get(f"/admin/contacts/{contact.id}/"))
    assert "General text messages to" in page and ": off." in page
    assert "Texts (General messages): no choice yet → stopped by an admin" in page
    attendance = purposes.by_key(world.org, "attendance")
    assert eligibility.check_one(world.org, "text", number, attendance).allowed
    assert not eligibility.check_one(world.org, "text", number, general).allowed


def test_a_purpose_opt_out_asks_first_and_says_what_is_sent(client, world, mailbox):
    """Issue 15: the button changes nothing; the confirm step (a plain form, no JavaScript)
    says nothing is sent to the person, keeps the note, and only its Yes records."""
    world.login(client, "org")
    contact = world.near.contacts[0]
    email = contact.emails[0].address
    general = purposes.general(world.org)
    before = len(mailbox.messages)
    page = record(client, contact, email, "email", general.id, confirm=None)
    assert page.status_code == 200
    text = _text(page)
    assert "Turn off General email to" in text and "Nothing has changed yet." in text
    assert "Nothing is sent to the person; General email to this address stop" in text
    assert 'name="confirm" value="yes"' in text and 'value="asked by phone"' in text
    assert f'action="/admin/contacts/{contact.id}/purpose"' in text
    assert chosen(world.org, Channel.EMAIL, email, general) is None
    for wrong in ("no", ""):
        record(client, contact, email, "email", general.id, confirm=wrong)
        assert chosen(world.org, Channel.EMAIL, email, general) is None
    response = record(client, contact, email, "email", general.id)
    assert response.status_code == 302
    assert chosen(world.org, Channel.EMAIL, email, general) == Status.OPTED_OUT
    from consent import outbox

    outbox.deliver_pending()
    assert len(mailbox.messages) == before  # as the confirm step said: nothing sent


def test_a_refused_purpose_opt_out_is_refused_before_any_confirm_step(client, world):
    world.login(client, "org")
    contact = world.near.contacts[0]
    emergency = purposes.by_key(world.org, "emergency")
    response = record(client, contact, contact.phones[0].number, "voice", emergency.id,
                      confirm=None)  # fmt: skip
    assert response.status_code == 302
    assert "Parents may not turn off these messages." in _text(
        client.get(response.headers["Location"])
    )


def test_no_opt_out_when_the_organization_does_not_let_admins_record_them(client, world):
    world.org.admin_may_record_opt_out = False
    db.session.commit()
    world.login(client, "org")
    contact = world.near.contacts[0]
    number = contact.phones[0].number
    page = _text(client.get(f"/admin/contacts/{contact.id}/"))
    assert "Record an opt-out" not in page
    assert "does not let admins record opt-outs" in page
    general = purposes.general(world.org)
    response = record(client, contact, number, "text", general.id)
    assert response.status_code == 302
    follow = _text(client.get(response.headers["Location"]))
    assert "does not let admins record opt-outs on someone" in follow
    assert chosen(world.org, Channel.TEXT, number, general) is None


def test_an_always_sent_purpose_is_refused(client, world):
    world.login(client, "org")
    contact = world.near.contacts[0]
    emergency = purposes.by_key(world.org, "emergency")
    response = record(client, contact, contact.phones[0].number, "voice", emergency.id)
    follow = _text(client.get(response.headers["Location"]))
    assert "Parents may not turn off these messages." in follow
    assert chosen(world.org, Channel.VOICE, contact.phones[0].number, emergency) is None


def test_staff_may_not_record_a_purpose_opt_out(client, world):
    world.login(client, "staff")
    contact = world.near.contacts[0]
    page = _text(client.get(f"/admin/contacts/{contact.id}/"))
    assert "Kinds of messages" in page and "Record an opt-out" not in page
    general = purposes.general(world.org)
    response = record(client, contact, contact.phones[0].number, "text", general.id)
    assert response.status_code == 403
    assert chosen(world.org, Channel.TEXT, contact.phones[0].number, general) is None


def test_another_sites_contact_is_not_found(client, world):
    world.login(client, "site")
    contact = world.far.contacts[0]
    general = purposes.general(world.org)
    response = record(client, contact, contact.phones[0].number, "text", general.id)
    assert response.status_code == 404
    assert chosen(world.org, Channel.TEXT, contact.phones[0].number, general) is None


def test_an_address_of_another_record_is_not_found(client, world):
    world.login(client, "org")
    contact, other = world.near.contacts[0], world.far.contacts[0]
    general = purposes.general(world.org)
    response = record(client, contact, other.phones[0].number, "text", general.id)
    assert response.status_code == 404
    response = record(client, contact, contact.emails[0].address, "text", general.id)
    assert response.status_code == 404
    assert chosen(world.org, Channel.TEXT, other.phones[0].number, general) is None


def test_a_purpose_of_another_organization_is_not_found(client, world):
    elsewhere = make_org(name="Elsewhere", texting_number="+12025550199")
    db.session.commit()
    world.login(client, "org")
    contact = world.near.contacts[0]
    theirs = purposes.general(elsewhere)
    response = record(client, contact, contact.phones[0].number, "text", theirs.id)
    assert response.status_code == 404
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PurposeState)) == 0


def test_activity_log_names_the_purpose_in_spanish_too(client, world):
    contact = world.near.contacts[0]
    email = contact.emails[0].address
    attendance = purposes.by_key(world.org, "attendance")
    ledger.change_purpose(
        world.org, Channel.EMAIL, email, attendance, Status.OPTED_OUT,
        source=Source.PORTAL, actor=Actor.recipient(),
    )  # fmt: skip
    db.session.commit()
    world.login(client, "org")
    page = _text(client.get("/admin/activity/"))
    assert "Email (Attendance messages): no choice yet → stopped by the parent portal" in page
    page = _text(client.get("/admin/activity/", headers={"Accept-Language": "es"}))
    assert "(mensajes de Asistencia)" in page


def test_exports_and_the_feed_carry_the_purpose(client, world):
    contact = world.near.contacts[0]
    email = contact.emails[0].address
    general = purposes.general(world.org)
    ledger.opt_out(world.org, Channel.EMAIL, email, source=Source.PORTAL, actor=Actor.recipient())
    ledger.change_purpose(
        world.org, Channel.EMAIL, email, general, Status.OPTED_OUT,
        source=Source.PORTAL, actor=Actor.recipient(),
    )  # fmt: skip
    db.session.commit()
    world.login(client, "org")
    response = client.get(f"/admin/activity/download/csv/?flt1_address_equals={email}")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    column = rows[0].index("Purpose")
    assert sorted(r[column] for r in rows[1:]) == ["", "general"]
    from openpyxl import load_workbook

    response = client.get("/admin/activity/download/xlsx/")
    sheet = load_workbook(io.BytesIO(response.data)).active
    values = [[c.value for c in r] for r in sheet.iter_rows()]
    assert "Purpose" in values[0]
    assert "general" in [r[values[0].index("Purpose")] for r in values[1:]]

    def mine():
        feed = client.get("/api/v1/events", headers=ENV_KEY).json["events"]
        return [(e["to"], e["purpose"]) for e in feed if e["address"] == email]

    # settled: on PostgreSQL another test worker's open transaction holds the feed back a moment
    assert settled(mine, lambda found: len(found) >= 2) == [
        ("opted_out", None),
        ("opted_out", "general"),
    ]
