"""Voice opt-out: the key pressed during a call (/voice/keypress) and the district's own number's
menu (/voice/inbound, /voice/menu), signed like the SMS webhooks."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import pytest
import sqlalchemy as sa
from twilio.request_validator import RequestValidator

from consent import ledger
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, ConsentEvent, Contact, Family, Phone, PhoneKind, Source, Status
from tests.factories import make_org, next_number

OUR_NUMBER = "+12025550100"
PUBLIC_URL = "https://consent.example.org"
TOKEN = "test-twilio-auth-token"


@pytest.fixture
def org(app):
    org = make_org()
    db.session.commit()
    return org


def person(org, language="en") -> str:
    """A contact with a home phone, speaking `language`; returns the number."""
    number = next_number()
    family = Family(organization=org, name="Voice")
    contact = Contact(family=family, first_name="Rosa", last_name="Voice", language=language)
    contact.phones.append(Phone(number=number, kind=PhoneKind.HOME, is_primary=True))
    db.session.add(family)
    db.session.commit()
    return number


def post(client, path, data, *, token=None, url=None, query=""):
    data = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32, **data}
    headers = {}
    if token:
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(
            url or PUBLIC_URL + path + query, data
        )
    return client.post(path + query, data=data, headers=headers)


def says(response) -> list[tuple[str, str]]:
    root = ET.fromstring(response.get_data(as_text=True))
    return [(el.get("language") or "", el.text or "") for el in root.iter("Say")]


def voice_state(org, number):
    return ledger.current(org, Channel.VOICE, number)


def keypress(client, callee, digits="9", *, outbound=True, ours=OUR_NUMBER, **kw):
    data = {"Digits": digits, "Direction": "outbound-api" if outbound else "inbound"}
    data.update({"From": ours, "To": callee} if outbound else {"From": callee, "To": ours})
    return post(client, "/voice/keypress", data, **kw)


def test_the_opt_out_key_on_an_outbound_call_opts_the_callee_out_of_calls(org, client):
    number = person(org)
    response = keypress(client, number)
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    (language, words), *_ = says(response)
    assert language == "en-US"
    assert "no longer receive calls from Maple Valley School District" in words
    state = voice_state(org, number)
    assert state.status == Status.OPTED_OUT and state.source == Source.VOICE_KEYPRESS
    event = db.session.scalars(sa.select(ConsentEvent).where(ConsentEvent.address == number)).one()
    assert event.evidence["digits"] == "9"
    assert event.evidence["call_sid"].startswith("CA")
    assert event.evidence["direction"] == "outbound-api"
    # texts are another channel: untouched
    assert ledger.current(org, Channel.TEXT, number) is None


def test_on_an_inbound_call_the_caller_is_from(org, client):
    number = person(org)
    keypress(client, number, outbound=False)
    assert voice_state(org, number).status == Status.OPTED_OUT
    assert voice_state(org, OUR_NUMBER) is None


def test_the_answer_is_in_the_callees_language(org, client):
    number = person(org, language="es")
    ((language, words),) = says(keypress(client, number))
    assert language == "es-US"
    assert "Ya no recibirá llamadas" in words


def test_another_key_changes_nothing(org, client):
    number = person(org)
    response = keypress(client, number, digits="1")
    assert response.status_code == 200 and says(response) == []
    assert voice_state(org, number) is None


def test_the_key_is_the_organizations_setting(org, client):
    org.voice_optout_key = "7"
    db.session.commit()
    number = person(org)
    keypress(client, number, digits="9")
    assert voice_state(org, number) is None
    keypress(client, number, digits="7")
    assert voice_state(org, number).status == Status.OPTED_OUT


def test_a_callee_who_opted_in_to_texts_keeps_texts(org, client):
    number = person(org)
    ledger.opt_in(org, Channel.TEXT, number, source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    keypress(client, number)
    assert ledger.current(org, Channel.TEXT, number).status == Status.OPTED_IN


# --- the district's number -----------------------------------------------------------------


def test_inbound_call_answers_with_a_menu_and_spanish_by_a_key(org, client):
    response = post(client, "/voice/inbound", {"From": next_number(), "To": OUR_NUMBER})
    root = ET.fromstring(response.get_data(as_text=True))
    gather = root.find("Gather")
    assert gather.get("action") == "/voice/menu?lang=en" and gather.get("numDigits") == "1"
    words = " ".join(text for _lang, text in says(response))
    assert "To stop calls from us, press 1" in words and "press 3" in words
    assert "Para español, oprima 9" in words
    spanish = post(
        client, "/voice/menu", {"From": next_number(), "To": OUR_NUMBER, "Digits": "9"},
        query="?lang=en",
    )  # fmt: skip
    assert ET.fromstring(spanish.get_data(as_text=True)).find("Gather").get("action") == (
        "/voice/menu?lang=es"
    )
    assert any(lang == "es-US" and "oprima 1" in text for lang, text in says(spanish))


@pytest.mark.parametrize(
    ("digits", "calls", "texts"),
    [("1", Status.OPTED_OUT, None), ("2", None, Status.OPTED_OUT), ("3", Status.OPTED_OUT, Status.OPTED_OUT)],
)  # fmt: skip
def test_menu_choices_stop_calls_texts_or_both(org, client, digits, calls, texts):
    number = person(org)
    response = post(
        client, "/voice/menu", {"From": number, "To": OUR_NUMBER, "Digits": digits},
        query="?lang=en",
    )  # fmt: skip
    assert "Goodbye" in says(response)[-1][1]
    got_calls = voice_state(org, number)
    got_texts = ledger.current(org, Channel.TEXT, number)
    assert (got_calls.status if got_calls else None) == calls
    assert (got_texts.status if got_texts else None) == texts
    if texts:
        assert got_texts.source == Source.VOICE_KEYPRESS and not got_texts.carrier_block


def test_menu_in_spanish_confirms_in_spanish(org, client):
    number = person(org)
    response = post(
        client, "/voice/menu", {"From": number, "To": OUR_NUMBER, "Digits": "3"}, query="?lang=es"
    )
    ((language, words),) = says(response)
    assert language == "es-US" and "Adiós" in words


def test_an_unknown_menu_key_repeats_the_menu(org, client):
    number = person(org)
    response = post(
        client, "/voice/menu", {"From": number, "To": OUR_NUMBER, "Digits": "5"}, query="?lang=en"
    )
    assert ET.fromstring(response.get_data(as_text=True)).find("Gather") is not None
    assert voice_state(org, number) is None


# --- signatures -------------------------------------------------------------------------------


@pytest.fixture
def signed(app):
    app.config["TWILIO_AUTH_TOKEN"] = TOKEN
    yield
    app.config["TWILIO_AUTH_TOKEN"] = None


@pytest.mark.parametrize("path", ["/voice/keypress", "/voice/inbound", "/voice/menu"])
def test_unsigned_or_wrongly_signed_calls_get_403_and_change_nothing(org, client, signed, path):
    number = person(org)
    data = {"From": OUR_NUMBER, "To": number, "Direction": "outbound-api", "Digits": "9"}
    assert post(client, path, data).status_code == 403
    assert post(client, path, data, token="not-our-token").status_code == 403
    assert post(client, path, data, token=TOKEN, url="https://evil.example/x").status_code == 403
    assert voice_state(org, number) is None


def test_a_validly_signed_keypress_is_accepted(org, client, signed):
    number = person(org)
    assert keypress(client, number, token=TOKEN).status_code == 200
    assert voice_state(org, number).status == Status.OPTED_OUT


def test_in_production_without_a_token_every_voice_webhook_is_refused(app, org, client):
    app.config["PRODUCTION"] = True
    try:
        number = person(org)
        assert keypress(client, number).status_code == 403
        assert post(client, "/voice/inbound", {"From": number, "To": OUR_NUMBER}).status_code == 403
    finally:
        app.config["PRODUCTION"] = False
    assert voice_state(org, number) is None


def test_a_call_to_a_number_that_is_not_ours_in_another_org_opts_out_there_only(app, client):
    """Two districts: a keypress on the second one's call opts out in the second one only."""
    first = make_org()
    second = make_org(name="Other District", texting_number="+12025550199")
    db.session.commit()
    number = next_number()
    keypress(client, number, ours="+12025550199")
    assert ledger.current(second, Channel.VOICE, number).status == Status.OPTED_OUT
    assert ledger.current(first, Channel.VOICE, number) is None
