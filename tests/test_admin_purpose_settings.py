"""The admin's editor of message purposes (Settings → Kinds of messages): rename in English and
Spanish, order, who may turn a purpose off per channel, reaches opted-out, exactly one general;
add one; a purpose with choices on record is never deleted. Only the organization team."""

from __future__ import annotations

import html

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import ledger, purposes
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, MessagePurpose, Source, Status
from consent.purpose_settings import field_name
from tests.conftest import csrf_token

URL = "/admin/settings/purposes"


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def current_form(org) -> dict[str, str]:
    """The editor's values as they are now (what a browser posts back unchanged)."""
    data: dict[str, str] = {}
    for p in purposes.of(org):
        data[field_name(p.id, "name_en")] = p.name_en
        data[field_name(p.id, "name_es")] = p.name_es
        data[field_name(p.id, "position")] = str(p.position)
        for channel in ("text", "voice", "email"):
            if p.may_turn_off(channel):
                data[field_name(p.id, f"parents_may_turn_off_{channel}")] = "y"
        if p.reaches_opted_out:
            data[field_name(p.id, "reaches_opted_out")] = "y"
        if p.is_general:
            data["general"] = str(p.id)
    return data


def save(client, data):
    return client.post(URL, data={"csrf_token": csrf_token(client), **data})


def test_the_editor_shows_every_purpose_with_labels(client, world):
    world.login(client, "org")
    page = _text(client.get(URL))
    assert "Kinds of messages" in page
    for p in purposes.of(world.org):
        assert f'for="{field_name(p.id, "name_es")}"' in page
    assert "Emergencias" in page and "The general kind" in page
    assert "Kinds of messages (emergency" in _text(client.get("/admin/settings/"))


def test_rename_order_flags_and_general(client, world):
    world.login(client, "org")
    org = world.org
    emergency, attendance, general = purposes.of(org)
    data = current_form(org)
    data[field_name(attendance.id, "name_en")] = "  Attendance   alerts "
    data[field_name(attendance.id, "name_es")] = "Avisos de asistencia"
    data[field_name(attendance.id, "position")] = "0"
    data[field_name(emergency.id, "position")] = "5"
    del data[field_name(attendance.id, "parents_may_turn_off_voice")]
    data["general"] = str(attendance.id)
    response = save(client, data)
    assert response.status_code == 302
    db.session.expire_all()
    assert [p.key for p in purposes.of(org)] == ["attendance", "general", "emergency"]
    attendance = purposes.by_key(org, "attendance")
    assert (
        attendance.name_en == "Attendance alerts" and attendance.name_es == "Avisos de asistencia"
    )
    assert not attendance.may_turn_off("voice") and attendance.may_turn_off("text")
    assert purposes.general(org).key == "attendance"
    assert [p.is_general for p in purposes.of(org)].count(True) == 1
    assert "Kinds of messages saved." in _text(client.get(URL))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d, ids: d.pop("general"), "Choose which kind of message is the general one."),
        (lambda d, ids: d.update(general="999999"), "Choose which kind of message is the general"),
        (
            lambda d, ids: d.update({field_name(ids[0], "name_en"): " "}),
            "Give the name in English.",
        ),
        (lambda d, ids: d.update({field_name(ids[0], "position"): "-1"}), "whole number from 0"),
        (lambda d, ids: d.update({field_name(ids[0], "name_es"): "x" * 101}), "at most 100"),
    ],
)
def test_wrong_values_save_nothing_and_say_why(client, world, change, words):
    world.login(client, "org")
    before = [(p.name_en, p.name_es, p.position, p.is_general) for p in purposes.of(world.org)]
    data = current_form(world.org)
    data[field_name(purposes.of(world.org)[1].id, "name_en")] = "Changed"
    change(data, [p.id for p in purposes.of(world.org)])
    response = save(client, data)
    assert response.status_code == 422
    assert words in _text(response) and "Nothing was saved" in _text(response)
    db.session.expire_all()
    after = [(p.name_en, p.name_es, p.position, p.is_general) for p in purposes.of(world.org)]
    assert after == before


def test_add_a_purpose(client, world):
    world.login(client, "org")
    token = csrf_token(client)
    response = client.post(
        URL + "/new",
        data={"csrf_token": token, "key": "sports", "name_en": "Sports", "name_es": "Deportes"},
    )
    assert response.status_code == 302
    added = purposes.by_key(world.org, "sports")
    assert added.name_es == "Deportes" and added.position == 3 and not added.is_general
    for key, words in (("sports", "already"), ("Bad Key", "lower-case"), ("", "lower-case")):
        response = client.post(URL + "/new", data={"csrf_token": token, "key": key, "name_en": "X"})
        assert response.status_code == 422 and words in _text(response)
    assert len(purposes.of(world.org)) == 4


def test_delete_only_a_purpose_without_choices(client, world):
    world.login(client, "org")
    org = world.org
    attendance = purposes.by_key(org, "attendance")
    number = world.near.contacts[0].phones[0].number
    ledger.change_purpose(org, Channel.TEXT, number, attendance, Status.OPTED_OUT,
                          source=Source.PORTAL, actor=Actor.recipient())  # fmt: skip
    db.session.commit()
    token = csrf_token(client)
    response = client.post(f"{URL}/{attendance.id}/delete", data={"csrf_token": token})
    assert "Attendance cannot be deleted: people's choices for it are on record" in _text(
        client.get(response.headers["Location"])
    )
    general = purposes.general(org)
    client.post(f"{URL}/{general.id}/delete", data={"csrf_token": token})
    assert "choose another general one first" in _text(client.get(URL))
    client.post(URL + "/new", data={"csrf_token": token, "key": "sports", "name_en": "Sports"})
    sports = purposes.by_key(org, "sports")
    response = client.post(f"{URL}/{sports.id}/delete", data={"csrf_token": token})
    assert "Deleted Sports." in _text(client.get(response.headers["Location"]))
    db.session.expire_all()
    assert [p.key for p in purposes.of(org)] == ["emergency", "attendance", "general"]


def test_another_organizations_purpose_is_not_found(client, world):
    from tests.factories import make_org

    elsewhere = make_org(name="Elsewhere", texting_number="+12025550199")
    db.session.commit()
    theirs = purposes.by_key(elsewhere, "attendance")
    world.login(client, "org")
    response = client.post(f"{URL}/{theirs.id}/delete", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 404
    assert db.session.get(MessagePurpose, theirs.id) is not None
    # Their ids in our form change nothing of theirs.
    data = current_form(world.org)
    data[field_name(theirs.id, "name_en")] = "Hijacked"
    save(client, data)
    db.session.expire_all()
    assert db.session.get(MessagePurpose, theirs.id).name_en == "Attendance"


@pytest.mark.parametrize("who", ["site", "staff", "parent"])
def test_only_the_organization_team_edits_purposes(client, world, who):
    world.login(client, who)
    assert client.get(URL).status_code in (403, 404)
    data = current_form(world.org)
    data[field_name(purposes.of(world.org)[0].id, "name_en")] = "Changed"
    response = save(client, data)
    assert response.status_code in (403, 404)
    attendance = purposes.by_key(world.org, "attendance")
    response = client.post(f"{URL}/{attendance.id}/delete", data={"csrf_token": csrf_token(client)})
    assert response.status_code in (403, 404)
    db.session.expire_all()
    assert purposes.of(world.org)[0].name_en == "Emergency"
    assert len(purposes.of(world.org)) == 3


def test_signed_out_goes_to_sign_in(client, world):
    response = client.get(URL)
    assert response.status_code in (302, 401, 403, 404)
    assert purposes.of(world.org)[0].name_en == "Emergency"


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=150), position=st.text(max_size=6), key=st.text(max_size=45))
def test_any_text_is_saved_cleanly_or_refused_with_words(world, name, position, key):
    """Whatever is typed: saved (folded, at most 100 characters, no control character) or
    refused with a PurposeError, never an error from the database."""
    from consent.purpose_settings import PurposeError, add, save_all

    org = world.org
    data = current_form(org)
    first = purposes.of(org)[0]
    data[field_name(first.id, "name_en")] = name
    data[field_name(first.id, "name_es")] = name
    data[field_name(first.id, "position")] = position
    try:
        save_all(org, data, data["general"], None)
        db.session.commit()
    except PurposeError:
        db.session.rollback()
    db.session.expire_all()
    saved = purposes.of(org)
    for p in saved:
        assert p.name_en and len(p.name_en) <= 100 and p.name_en.isprintable()
        assert 0 <= p.position <= 999
    try:
        added = add(org, key, name, name, None)
        db.session.commit()
    except PurposeError:
        db.session.rollback()
    else:
        assert added.key == key.strip().lower() and added.name_en.isprintable()
        db.session.delete(added)
        db.session.commit()
    assert [p.is_general for p in purposes.of(org)].count(True) == 1
