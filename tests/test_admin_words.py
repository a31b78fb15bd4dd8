"""Plain words in the admin: changes, sources and evidence in words on the activity log and
the contact page, UTC on hover, one label per source, and the admin in the staff member's
language (Spanish)."""

from __future__ import annotations

import html
import re

import pytest

from consent import ledger
from consent.activity_words import change_words, evidence_words
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, ConsentEvent, Source, Status
from tests.helpers import events_of


def _text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", response.get_data(as_text=True)))


def _stop(world, number):
    ledger.opt_out(
        world.org,
        Channel.TEXT,
        number,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient("the person (text reply)"),
        evidence={"body": "STOP", "keyword": "STOP"},
        carrier_block=True,
    )
    db.session.commit()


def test_activity_log_shows_a_stop_reply_in_words(client, world):
    number = world.near.contacts[0].phones[0].number
    _stop(world, number)
    world.login(client, "org")
    page = _text(client.get("/admin/activity/"))
    assert "Texts: allowed → stopped by a STOP reply: “STOP”" in page
    assert "opted_in → opted_out" not in page and "sms_keyword</td>" not in page
    assert re.search(r'<time datetime="[0-9T:-]+Z" title="[0-9 :-]+ UTC">', page)


def test_contact_page_log_in_words(client, world):
    contact = world.near.contacts[0]
    _stop(world, contact.phones[0].number)
    world.login(client, "org")
    page = _text(client.get(f"/admin/contacts/{contact.id}/"))
    assert "Texts: allowed → stopped by a STOP reply: “STOP”" in page
    assert "(the carrier blocks texts until START)" in page


def test_import_evidence_in_words(world):
    number = world.near.contacts[0].phones[0].number
    outcome = ledger.opt_out(
        world.org,
        Channel.TEXT,
        number,
        source=Source.IMPORT,
        actor=Actor.system(),
        evidence={"file": "opt-outs-nov.xlsx", "row": 12, "batch": 3},
    )
    db.session.commit()
    assert evidence_words(outcome.event) == "imported from opt-outs-nov.xlsx, row 12"
    assert change_words(outcome.event) == "Texts: allowed → stopped by an imported list"


def test_revert_in_words(world):
    number = world.near.contacts[0].phones[0].number
    out = ledger.opt_out(
        world.org, Channel.VOICE, number, source=Source.ADMIN, actor=Actor.system()
    )
    db.session.commit()
    back = ledger.revert(world.org, out.event.id, actor=Actor.system(), note="slip")
    db.session.commit()
    assert back.ok and back.state.status == Status.UNKNOWN
    assert change_words(back.event) == "Calls: stopped → no choice yet (an opt-out undone)"
    assert evidence_words(back.event) == f"undoes the change #{out.event.id}"
    assert [e.kind for e in events_of(number, org=world.org, channel=Channel.VOICE)] == [
        "change",
        "revert",
    ]


def test_source_filter_has_one_label_per_source(client, world):
    world.login(client, "org")
    page = client.get("/admin/activity/").get_data(as_text=True)
    select = page.split('id="f-source"', 1)[1].split("</select>", 1)[0]
    labels = re.findall(r"<option[^>]*>([^<]+)</option>", select)
    assert len(labels) == len(set(labels)) == len(Source) + 1


def test_admin_in_spanish(client, world):
    contact = world.near.contacts[0]
    _stop(world, contact.phones[0].number)
    world.login(client, "org")
    headers = {"Accept-Language": "es"}
    page = _text(client.get(f"/admin/contacts/{contact.id}/", headers=headers))
    assert "Teléfonos y correo" in page and "Registro de actividad" in page
    assert "Mensajes de texto" in page or "Textos" in page or "permitido → detenido" in page
    assert "Phones and email" not in page
    log = _text(client.get("/admin/activity/", headers=headers))
    assert "permitido → detenido por una respuesta STOP" in log
    assert "Filtrar el registro" in log
    optouts = _text(client.get("/admin/optouts/", headers=headers))
    assert "Lista de bajas" in optouts or "Volver a suscribir" in optouts


@pytest.mark.parametrize("language", ["en", "es"])
def test_admin_pages_say_their_language_in_html_lang(client, world, language):
    """Every admin page (Flask-Admin's own list views too) names the language it is in."""
    contact = world.near.contacts[0]
    world.login(client, "org")
    headers = {"Accept-Language": language}
    for path in (f"/admin/contacts/{contact.id}/", "/admin/optouts/", "/admin/activity/",
                 "/admin/settings/", "/admin/settings/purposes", "/admin/"):  # fmt: skip
        page = client.get(path, headers=headers).get_data(as_text=True)
        assert f'<html lang="{language}">' in page, path
        assert page.count("<main") == 1, path


def test_settings_have_no_internal_references(client, world):
    world.login(client, "org")
    page = client.get("/admin/settings/").get_data(as_text=True)
    assert "seed" not in page.lower()


def test_every_event_kind_has_words(world):
    event = ConsentEvent(
        organization_id=world.org.id,
        channel=Channel.EMAIL,
        address="a@example.org",
        kind="request",
        from_status=Status.OPTED_OUT,
        to_status=Status.OPTED_OUT,
        source=Source.ADMIN,
        actor="system",
        evidence={"sent_to": "a@example.org", "attested": True},
    )
    assert "confirmation link sent" in change_words(event)
    assert "link sent to a@example.org" in evidence_words(event)


def test_times_in_the_districts_time_zone_utc_on_hover(client, world):
    from datetime import datetime

    from consent.words import local_time

    winter = datetime(2026, 12, 1, 14, 12)
    shown = str(local_time(winter, world.org))
    assert ">2026-12-01 09:12 EST<" in shown and 'title="2026-12-01 14:12 UTC"' in shown
    world.org.time_zone = "America/Los_Angeles"
    db.session.commit()
    assert ">2026-12-01 06:12 PST<" in str(local_time(winter, world.org))
    world.login(client, "org")
    _stop(world, world.near.contacts[0].phones[0].number)
    assert " PST</time>" in client.get("/admin/activity/").get_data(as_text=True)


def test_time_zone_setting_is_checked(client, world):
    from tests.helpers import csrf_token

    world.login(client, "org")
    page = client.get("/admin/settings/").get_data(as_text=True)
    assert "America/New_York" in page and "Time zone" in page
    data = {
        "csrf_token": csrf_token(client, "/admin/settings/"),
        "texting_number": world.org.texting_number,
        "notification_email": world.org.notification_email,
        "help_contact": "office@example.org",
        "texts_about": world.org.texts_about,
        "message_frequency": world.org.message_frequency,
        "time_zone": "Mars/Olympus",
    }
    response = client.post("/admin/settings/", data=data)
    assert "This is not a time zone name" in response.get_data(as_text=True)
    db.session.expire_all()
    assert world.org.time_zone == "America/New_York"
    client.post("/admin/settings/", data={**data, "time_zone": "America/Chicago"})
    db.session.expire_all()
    assert world.org.time_zone == "America/Chicago"
