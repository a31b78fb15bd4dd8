"""Texts people send us (STOP / START / HELP, in TwiML) and delivery callbacks from the provider."""

from __future__ import annotations

import uuid
from xml.etree import ElementTree

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from consent import eligibility, ledger, outbox
from consent.extensions import db
from consent.ledger import Actor
from consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    DeliveryReceipt,
    InboundMessage,
    Organization,
    OutboxMessage,
    Source,
    Status,
)
from tests.factories import make_family, make_org, make_site, make_user, next_number

OUR_NUMBER = "+12025550100"
PUBLIC_URL = "https://consent.example.org"
TOKEN = "test-twilio-auth-token"


def text(client, body, sender=None, *, sid=None, to=OUR_NUMBER, token=None, url=None, sign=None):
    """Post an inbound text as Twilio would (signed with `token` when given)."""
    data = {
        "From": sender or next_number(),
        "To": to,
        "Body": body,
        "MessageSid": sid or "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
    }
    headers = {}
    if token:
        signed = dict(data, **(sign or {}))
        signature = RequestValidator(token).compute_signature(
            url or PUBLIC_URL + "/sms/inbound", signed
        )
        headers["X-Twilio-Signature"] = signature
    return client.post("/sms/inbound", data=data, headers=headers)


def reply_of(response) -> str:
    """The text of the TwiML reply ("" when it has no message)."""
    root = ElementTree.fromstring(response.get_data(as_text=True))
    assert root.tag == "Response"
    messages = root.findall("Message")
    assert len(messages) <= 1
    return messages[0].text if messages else ""


def state(number, channel=Channel.TEXT) -> ConsentState | None:
    db.session.expire_all()
    return ledger.current(1, channel, number)


def events(number) -> list[ConsentEvent]:
    return list(
        db.session.scalars(
            sa.select(ConsentEvent).where(ConsentEvent.address == number).order_by(ConsentEvent.id)
        )
    )


def callback(client, sid, error="", status="undelivered", to="", sender=OUR_NUMBER):
    """Post a delivery callback as Twilio would."""
    data = {"MessageSid": sid, "MessageStatus": status, "To": to, "From": sender}
    if error:
        data["ErrorCode"] = error
    return client.post("/sms/status", data=data)


# --- keywords ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [" stop ", "Stop.", "STOP!!", "stopall", "Unsubscribe"])
def test_stop_keyword_opts_out_with_carrier_block_and_confirms(org, client, body):
    """A STOP word opts the number out of texts with a carrier block; the reply confirms it."""
    number = next_number()
    response = text(client, body, number)
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    reply = reply_of(response)
    assert "Maple Valley School District" in reply
    assert "no more text messages" in reply
    assert "START" in reply and "+1 202-555-0100" in reply
    current = state(number)
    assert current.status == Status.OPTED_OUT and current.carrier_block
    assert current.source == Source.SMS_KEYWORD
    (event,) = events(number)
    assert event.evidence["body"] == body
    assert event.actor == "recipient"
    assert state(number, Channel.VOICE) is None  # the voice rule is off by default


@pytest.mark.parametrize("body", ["start", "UNSTOP", "Yes"])
def test_start_keyword_opts_back_in_and_lifts_the_block(org, client, body):
    """START / UNSTOP / YES after STOP opt the number back in; the reply says how to stop."""
    number = next_number()
    text(client, "STOP", number)
    reply = reply_of(text(client, body, number))
    assert "resubscribed" in reply and "Maple Valley School District" in reply
    assert "HELP" in reply and "STOP" in reply and "Msg & data rates may apply" in reply
    current = state(number)
    assert current.status == Status.OPTED_IN and not current.carrier_block
    assert [e.to_status for e in events(number)] == [Status.OPTED_OUT, Status.OPTED_IN]


@pytest.mark.parametrize("body", ["help", "Info?", "HELP!"])
def test_help_keyword_answers_and_changes_nothing(org, client, body):
    """HELP / INFO answer with who we are, what and how often, rates, how to stop, a contact."""
    number = next_number()
    reply = reply_of(text(client, body, number))
    assert "Maple Valley School District" in reply
    assert org.texts_about in reply and org.message_frequency in reply
    assert "Msg & data rates may apply" in reply
    assert "Reply STOP to opt out" in reply
    assert "office@example.org" in reply
    assert state(number) is None and events(number) == []


@pytest.mark.parametrize(
    "body", ["please stop texting me", "Remove me from your list", "unsubscribe me"]
)
def test_plain_request_to_stop_opts_out(org, client, body):
    """A message that plainly asks to stop opts out too (no carrier block: carriers act on
    bare keywords only)."""
    number = next_number()
    reply = reply_of(text(client, body, number))
    assert "no more text messages" in reply
    current = state(number)
    assert current.status == Status.OPTED_OUT
    assert current.source == Source.SMS_REPLY and not current.carrier_block
    assert events(number)[0].evidence["body"] == body


@pytest.mark.parametrize(
    "body",
    [
        "don't stop the bus at Elm St",
        "When does the bus stop?",
        "Sofia will stop by the office at 3",
        "Thanks!",
    ],
)
def test_ordinary_talk_is_kept_but_changes_nothing(org, client, body):
    """A message that only contains a stop word inside other talk gets no reply and no change."""
    number = next_number()
    response = text(client, body, number, sid="SMordinary")
    assert response.status_code == 200 and reply_of(response) == ""
    assert state(number) is None
    kept = db.session.scalars(sa.select(InboundMessage)).one()
    assert (kept.body, kept.intent, kept.from_number) == (body, None, number)


def test_stop_from_a_number_never_seen_is_recorded_and_notified(org, client, mailbox):
    """A number on no record that texts STOP is opted out, and the office hears about it."""
    number = next_number()
    text(client, "STOP", number)
    assert state(number).status == Status.OPTED_OUT
    (notice,) = mailbox.to("office@example.org")
    body = mailbox.text(notice)
    assert "Someone not on record" in body and "text reply" in body
    assert "texts START" in body


def test_every_stop_notifies_the_office_and_queues_no_second_text(org, client, mailbox):
    """STOP from a contact's cell: the office gets an email naming the contact; the TwiML reply
    is the one confirmation (no text queued in the outbox)."""
    family = make_family(org, make_site(org), name="Rivera")
    contact = family.contacts[0]
    number = contact.phones[0].number
    db.session.commit()
    text(client, "Stop", number)
    (notice,) = mailbox.to("office@example.org")
    assert contact.name in mailbox.text(notice)
    assert (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.channel == "text")
        )
        == 0
    )


# --- Spanish ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["PARAR", "alto", "Cancelar", "BAJA"])
def test_spanish_stop_answers_in_spanish_and_remembers_the_language(org, client, body):
    """PARAR / ALTO / CANCELAR / BAJA opt out, answer in Spanish, and set the contact's language."""
    family = make_family(org, make_site(org), name="Garcia")
    contact = family.contacts[0]
    number = contact.phones[0].number
    db.session.commit()
    reply = reply_of(text(client, body, number))
    assert reply.startswith("Maple Valley School District: Se ha dado de baja")
    assert "COMENZAR al +1 202-555-0100" in reply
    assert state(number).status == Status.OPTED_OUT and state(number).carrier_block
    db.session.expire_all()
    assert contact.language == "es"
    assert family.contacts[1].language == "en"  # another contact's number: untouched


def test_spanish_help_and_start_answer_in_spanish(org, client):
    """AYUDA and COMENZAR answer in Spanish; COMENZAR opts back in."""
    number = next_number()
    help_reply = reply_of(text(client, "ayuda", number))
    assert help_reply.startswith("Maple Valley School District: Mensajes sobre cierres de escuelas")
    assert "Responda PARAR para darse de baja" in help_reply
    text(client, "PARAR", number)
    assert "Se ha vuelto a suscribir" in reply_of(text(client, "Comenzar", number))
    assert state(number).status == Status.OPTED_IN


def test_english_keyword_from_spanish_speaker_keeps_their_language(org, client):
    """STOP is every carrier's word: it answers in English and leaves the language as it was."""
    family = make_family(org, make_site(org), name="Lopez")
    contact = family.contacts[0]
    contact.language = "es"
    db.session.commit()
    reply = reply_of(text(client, "STOP", contact.phones[0].number))
    assert "You are unsubscribed" in reply
    db.session.expire_all()
    assert contact.language == "es"


# --- rules ------------------------------------------------------------------------------------


def test_stop_blocks_voice_when_that_rule_is_on_and_start_lifts_both(org, client):
    """With "STOP also blocks voice" on, STOP opts out calls too; START opts both back in."""
    org.stop_blocks_voice = True
    db.session.commit()
    number = next_number()
    reply = reply_of(text(client, "STOP", number))
    assert "text messages or calls" in reply
    voice = state(number, Channel.VOICE)
    assert voice.status == Status.OPTED_OUT and voice.carrier_block
    assert not eligibility.check_one(org, "voice", number).allowed
    text(client, "START", number)
    assert state(number, Channel.VOICE).status == Status.OPTED_IN
    assert eligibility.check_one(org, "voice", number).allowed


def test_start_changes_nothing_when_the_start_rule_is_off(org, client):
    """With "START opts in" off, START leaves the opt-out and says whom to contact."""
    org.start_opts_in = False
    db.session.commit()
    number = next_number()
    text(client, "STOP", number)
    reply = reply_of(text(client, "START", number))
    assert "do not restart by reply" in reply and "office@example.org" in reply
    assert state(number).status == Status.OPTED_OUT


def test_replayed_message_sid_changes_nothing_and_gets_the_same_reply(org, client):
    """The provider retrying a message (same MessageSid) changes nothing the second time."""
    number = next_number()
    first = text(client, "STOP", number, sid="SMreplayed")
    text(client, "START", number)
    again = text(client, "STOP", number, sid="SMreplayed")
    assert again.status_code == 200
    assert reply_of(again) == reply_of(first) != ""
    assert state(number).status == Status.OPTED_IN
    assert len(events(number)) == 2
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 2


def test_text_to_a_number_that_is_not_ours_gets_404_and_records_nothing(org, client):
    """A text to a number no organization uses: 404 (shows in the provider's log), no record."""
    number = next_number()
    response = text(client, "STOP", number, to="+12025550999")
    assert response.status_code == 404
    assert reply_of(response) == ""
    assert state(number) is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 0


def test_missing_message_sid_is_a_bad_request(org, client):
    """A post without MessageSid is not a provider webhook: 400, nothing recorded."""
    response = client.post("/sms/inbound", data={"From": next_number(), "To": OUR_NUMBER})
    assert response.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 0


# --- signatures -------------------------------------------------------------------------------


@pytest.fixture
def signed(app):
    """Webhooks require a Twilio signature (TWILIO_AUTH_TOKEN set)."""
    app.config["TWILIO_AUTH_TOKEN"] = TOKEN
    yield
    app.config["TWILIO_AUTH_TOKEN"] = None


def test_valid_signature_over_the_public_url_is_accepted(org, client, signed):
    """A request signed for PUBLIC_BASE_URL (the URL behind the proxy) is answered."""
    number = next_number()
    response = text(client, "STOP", number, token=TOKEN)
    assert response.status_code == 200
    assert state(number).status == Status.OPTED_OUT


def test_signature_uses_the_request_url_without_public_base_url(app, org, client, signed):
    """Without PUBLIC_BASE_URL the signature is checked against the URL as received."""
    app.config["PUBLIC_BASE_URL"] = None
    number = next_number()
    assert text(client, "STOP", number, token=TOKEN).status_code == 403
    response = text(client, "STOP", number, token=TOKEN, url="http://localhost/sms/inbound")
    assert response.status_code == 200
    assert state(number).status == Status.OPTED_OUT


@pytest.mark.parametrize(
    "how", ["missing", "wrong token", "tampered body", "wrong url"], ids=lambda how: how
)
def test_bad_signature_gets_403_and_changes_nothing(org, client, signed, how):
    """Missing, wrong-token, tampered-body or wrong-URL signatures: 403, nothing recorded."""
    number = next_number()
    if how == "missing":
        response = text(client, "STOP", number)
    elif how == "wrong token":
        response = text(client, "STOP", number, token="not-the-token")
    elif how == "tampered body":
        response = text(client, "STOP", number, token=TOKEN, sign={"Body": "HELP"})
    else:
        response = text(client, "STOP", number, token=TOKEN, url="https://evil.example/sms/inbound")
    assert response.status_code == 403
    assert state(number) is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 0


def test_status_callback_without_signature_gets_403(org, client, signed):
    """Delivery callbacks are checked too: unsigned, 403 and no bounce."""
    number = next_number()
    assert callback(client, "SMx", "30006", to=number).status_code == 403
    assert state(number) is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(DeliveryReceipt)) == 0


# --- delivery callbacks -----------------------------------------------------------------------


def test_21610_callback_records_a_carrier_opt_out_once(org, client):
    """ErrorCode 21610: carrier opt-out (source carrier, carrier block); a repeat changes nothing."""
    number = next_number()
    assert callback(client, "SM21610", "21610", status="failed", to=number).status_code == 204
    current = state(number)
    assert current.status == Status.OPTED_OUT and current.carrier_block
    assert current.source == Source.CARRIER
    callback(client, "SM21610", "21610", status="failed", to=number)
    assert len(events(number)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(DeliveryReceipt)) == 1


@pytest.mark.parametrize("code", ["30003", "30005", "30006"])
def test_unreachable_callback_marks_the_number_bounced_once(org, client, code):
    """30003 / 30005 / 30006 mark the number bounced; the same callback twice, once."""
    number = next_number()
    ledger.opt_in(org, Channel.TEXT, number, source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    callback(client, "SMbounce", code, to=number)
    callback(client, "SMbounce", code, to=number)
    assert state(number).status == Status.BOUNCED
    assert [e.to_status for e in events(number)] == [Status.OPTED_IN, Status.BOUNCED]
    assert eligibility.check_one(org, "text", number).reason == "bounced"


def test_other_callbacks_are_kept_and_change_nothing(org, client):
    """A delivered callback or another error is recorded, without any consent change."""
    number = next_number()
    callback(client, "SMok", status="delivered", to=number)
    callback(client, "SMok2", "30007", to=number)
    assert state(number) is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(DeliveryReceipt)) == 2


def test_callback_finds_the_number_from_our_outbox(org, client):
    """A callback naming a message we sent bounces that message's recipient."""
    number = next_number()
    ledger.opt_in(org, Channel.TEXT, number, source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    sent = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.to_address == number)
    ).one()
    sent.provider_id = "SMfromoutbox"
    db.session.commit()
    client.post(
        "/sms/status",
        data={"MessageSid": "SMfromoutbox", "MessageStatus": "undelivered", "ErrorCode": "30003"},
    )
    assert state(number).status == Status.BOUNCED


def test_callback_for_a_number_that_is_not_ours_changes_nothing(org, client):
    """A callback from a number no organization uses is kept, without any consent change."""
    number = next_number()
    callback(client, "SMother", "30006", to=number, sender="+12025550999")
    assert state(number) is None


# --- the journey ------------------------------------------------------------------------------


def test_stop_blocks_admin_opt_back_in_until_start(org, client):
    """STOP -> the API says opted_out -> an admin's attested opt-back-in is refused with the
    reason -> START -> the API says ok; a 30006 callback -> bounced."""
    admin = make_user(org, "admin@example.org", "org", name="Ada Admin")
    number = next_number()
    ledger.opt_in(org, Channel.TEXT, number, source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    api = {"Authorization": "Bearer test-api-key"}

    def api_reason():
        answer = client.get(f"/api/v1/eligibility?channel=text&address={number}", headers=api)
        return answer.json["reason"]

    assert api_reason() == "ok"
    text(client, "STOP", number)
    assert api_reason() == "opted_out"
    outcome = ledger.request_opt_back_in(
        org, Channel.TEXT, number, actor=Actor.for_user(admin), source=Source.ADMIN, attested=True
    )
    db.session.commit()
    assert outcome.refused and outcome.code == "carrier_block"
    assert "START to +1 202-555-0100" in outcome.reason
    assert api_reason() == "opted_out"
    text(client, "START", number)
    assert api_reason() == "ok"
    callback(client, "SMjourney", "30006", to=number)
    assert api_reason() == "bounced"


# --- our own texts ----------------------------------------------------------------------------


def test_our_own_texts_obey_eligibility_except_the_opt_out_confirmation(org, app):
    """A portal opt-out's one confirmation text is sent; any other text to that number is held."""
    from consent.notifications import queue_text

    number = next_number()
    ledger.opt_out(org, Channel.TEXT, number, source=Source.PORTAL, actor=Actor.recipient())
    queue_text(org, to=number, purpose="reminder", template="opted_in", key="reminder:1")
    db.session.commit()
    outbox.deliver()
    sent = {
        m.purpose: m.status
        for m in db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.to_address == number)
        )
    }
    assert sent == {"optout_confirmation": "sent", "reminder": "suppressed"}


# --- anything from outside --------------------------------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.text(max_size=300),
    sender=st.one_of(st.text(max_size=40), st.from_regex(r"\+1[2-9]\d{9}", fullmatch=True)),
    sign=st.booleans(),
)
def test_any_body_and_sender_get_200_or_403_never_500(app, client, body, sender, sign):
    """Whatever the body and From, the webhook answers 200 (signed) or 403 (not), never 500."""
    app.config["TWILIO_AUTH_TOKEN"] = TOKEN
    try:
        if not db.session.scalar(sa.select(sa.func.count()).select_from(Organization)):
            make_org()
            db.session.commit()
        response = text(client, body, sender, token=TOKEN if sign else None)
    finally:
        app.config["TWILIO_AUTH_TOKEN"] = None
    assert response.status_code == (200 if sign else 403)
    if sign:
        assert ElementTree.fromstring(response.get_data(as_text=True)).tag == "Response"


def test_in_production_without_a_token_the_sms_webhooks_are_refused(app, client):
    """No TWILIO_AUTH_TOKEN in production: unsigned texts and callbacks are never trusted."""
    app.config["PRODUCTION"] = True
    try:
        inbound = client.post(
            "/sms/inbound",
            data={
                "From": "+12025550123",
                "To": "+12025550100",
                "Body": "STOP",
                "MessageSid": "SMp",
            },
        )
        status = client.post(
            "/sms/status",
            data={"MessageSid": "SMx", "MessageStatus": "failed", "ErrorCode": "21610"},
        )
    finally:
        app.config["PRODUCTION"] = False
    assert inbound.status_code == 403 and status.status_code == 403
