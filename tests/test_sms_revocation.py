"""Revocation by any reasonable means, by text: the channel a request names, a request about
some messages, one clarifying question and its "Y", wrong numbers, the revoke-all rule, and the
opt-out confirmation text that goes out within five minutes or not at all."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from consent import eligibility, ledger, notifications, outbox, purposes
from consent.extensions import db
from consent.ledger import Actor
from consent.models import (
    Channel,
    ConsentEvent,
    InboundMessage,
    OutboxMessage,
    Source,
    Status,
    utcnow,
)
from tests.factories import make_family, make_org, make_site, next_number
from tests.test_sms import reply_of, state, text


@pytest.fixture
def org(app):
    org = make_org()
    db.session.commit()
    return org


@pytest.fixture
def family(org):
    """The Rivera family: two contacts, each with a cell and an email."""
    family = make_family(org, make_site(org), name="Rivera")
    db.session.commit()
    return family


def events_of(address) -> list[ConsentEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(ConsentEvent).where(ConsentEvent.address == address).order_by(ConsentEvent.id)
        )
    )


# --- the channel a request names ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body", ["please stop calling me", "no more robocalls", "No me llamen más"]
)
def test_request_about_calls_opts_out_calls_and_leaves_texts(org, client, body):
    """ "stop calling me" opts the number out of calls (a text reply, no block); texts go on."""
    number = next_number()
    reply = reply_of(text(client, body, number))
    assert "calls" in reply or "llamadas" in reply
    voice = state(number, Channel.VOICE)
    assert voice.status == Status.OPTED_OUT and voice.source == Source.SMS_REPLY
    assert not voice.carrier_block
    assert state(number) is None  # texts: no change


def test_request_about_email_opts_out_the_owners_emails(org, client, family, mailbox):
    """ "stop emailing me" from a contact's cell opts out that contact's email addresses only."""
    contact, other = family.contacts
    number, email = contact.phones[0].number, contact.emails[0].address
    reply = reply_of(text(client, "stop emailing me", number))
    assert email in reply and "no more email" in reply
    assert state(email, Channel.EMAIL).status == Status.OPTED_OUT
    assert state(other.emails[0].address, Channel.EMAIL) is None
    assert state(number) is None  # texts: no change
    assert mailbox.to(email)  # the email address hears of it once


def test_request_about_email_from_a_number_not_on_record_changes_nothing(org, client, family):
    """A stranger's number that asks to stop email has no addresses on record: nothing is
    opted out (nobody can opt out someone else's email by texting), and the reply says how."""
    reply = reply_of(text(client, "stop emailing me", next_number()))
    assert "no email address on record" in reply
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 0


def test_zero_width_stop_is_the_keyword_with_its_block(org, client):
    number = next_number()
    text(client, "S\u200bTOP", number)
    current = state(number)
    assert current.status == Status.OPTED_OUT and current.carrier_block


@pytest.mark.parametrize("body", ["Please stopppp", "Stpo", "i quiT!!!", "leave me alone"])
def test_typos_and_plain_words_opt_out_without_a_block(org, client, body):
    number = next_number()
    assert "no more text messages" in reply_of(text(client, body, number))
    current = state(number)
    assert current.status == Status.OPTED_OUT and current.source == Source.SMS_REPLY
    assert not current.carrier_block


# --- some messages ----------------------------------------------------------------------------


def test_request_about_some_messages_turns_general_off_and_says_so(org, client):
    """ "stop sending the lunch menu": the General purpose of texts is turned off (a purpose
    opt-out from a text reply), the channel is not; the reply names it and says how to stop
    everything."""
    number = next_number()
    ledger.opt_in(org, Channel.TEXT, number, source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    reply = reply_of(text(client, "stop sending the lunch menu", number))
    assert "stopped our General messages" in reply and "reply STOP" in reply
    event = events_of(number)[-1]
    general = purposes.general(org)
    assert (event.purpose_id, event.source, event.to_status) == (
        general.id,
        Source.SMS_REPLY,
        Status.OPTED_OUT,
    )
    assert event.evidence["scope"] == "general"
    assert state(number).status == Status.OPTED_IN  # the channel stays as it was
    assert eligibility.check_one(org, Channel.TEXT, number, general).reason == "opted_out"
    attendance = purposes.by_key(org, "attendance")
    assert eligibility.check_one(org, Channel.TEXT, number, attendance).allowed
    # Spanish: the purpose's Spanish name.
    reply = reply_of(text(client, "ya no me manden el menú del almuerzo", next_number()))
    assert "General" in reply


def test_with_revoke_all_a_request_about_some_messages_stops_every_non_emergency_one(org, client):
    org.revoke_all = True
    db.session.commit()
    number = next_number()
    reply = reply_of(text(client, "stop sending the lunch menu", number))
    assert "text messages or calls" in reply
    assert state(number).status == Status.OPTED_OUT
    assert state(number, Channel.VOICE).status == Status.OPTED_OUT
    emergency = purposes.by_key(org, "emergency")
    for channel in (Channel.TEXT, Channel.VOICE):
        assert eligibility.check_one(org, channel, number, emergency).allowed
        for key in ("attendance", "general"):
            purpose = purposes.by_key(org, key)
            assert eligibility.check_one(org, channel, number, purpose).reason == "opted_out"


# --- one clarifying question, and its answer -----------------------------------------------------


def test_unclear_message_gets_one_clarifying_question_and_y_opts_out(org, client):
    """ "not interested" is asked about once; "Y" then opts out; nothing changed before."""
    number = next_number()
    question = reply_of(text(client, "not interested", number))
    assert question == (
        "Did you want to stop texts from Maple Valley School District? Reply STOP to stop, "
        "or ignore this."
    )
    assert state(number) is None
    text(client, "Y", number)
    current = state(number)
    assert current.status == Status.OPTED_OUT and current.source == Source.SMS_REPLY
    (event,) = events_of(number)
    assert event.evidence["answer_to"] == "clarify"


def test_yes_after_the_clarifying_question_opts_out_not_in(org, client):
    """YES answers the question it follows: after "Did you want to stop texts?" it stops."""
    number = next_number()
    ledger.opt_in(org, Channel.TEXT, number, source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    text(client, "goodbye", number)
    text(client, "YES", number)
    assert state(number).status == Status.OPTED_OUT


def test_second_unclear_message_is_not_asked_again_and_no_changes_nothing(org, client):
    """The FCC allows one clarifying text: a second unclear message gets none; "N" changes
    nothing."""
    number = next_number()
    assert reply_of(text(client, "not interested", number)) != ""
    assert reply_of(text(client, "Enough!", number)) == ""
    number2 = next_number()
    text(client, "not interested", number2)
    assert reply_of(text(client, "N", number2)) == ""
    assert state(number) is None and state(number2) is None


def test_y_from_another_number_is_not_an_answer(org, client):
    """A "Y" answers only the question sent to that number: from another number it is
    ordinary talk (a stranger cannot opt someone out, or in, by answering for them)."""
    asked = next_number()
    text(client, "not interested", asked)
    stranger = next_number()
    assert reply_of(text(client, "Y", stranger)) == ""
    assert state(asked) is None and state(stranger) is None


def test_bare_y_with_nothing_asked_is_ordinary(org, client):
    number = next_number()
    assert reply_of(text(client, "Y", number)) == ""
    assert state(number) is None


def test_y_after_a_confirmation_request_reads_as_yes(org, client):
    """A text asking to confirm opting back in: "Y" opts the number in, as START would."""
    number = next_number()
    text(client, "STOP", number)
    notifications.confirmation_request(org, Channel.TEXT, number, state_version=1, event=None)
    db.session.commit()
    assert "resubscribed" in reply_of(text(client, "y", number))
    assert state(number).status == Status.OPTED_IN


# --- wrong numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", ["wrong number", "This isn't Parent1's phone", "número equivocado"]
)
def test_wrong_number_stops_texts_and_tells_the_office(org, client, family, mailbox, body):
    """ "wrong number": no more texts to it (a text reply, reassigned in the evidence), and the
    office's notice says the number may belong to someone else now."""
    contact = family.contacts[0]
    number = contact.phones[0].number
    reply = reply_of(text(client, body, number))
    assert "Thank you" in reply or "Gracias" in reply
    current = state(number)
    assert current.status == Status.OPTED_OUT and current.source == Source.SMS_REPLY
    (event,) = events_of(number)
    assert event.evidence["reassigned"] is True
    (notice,) = mailbox.to("office@example.org")
    words = mailbox.text(notice)
    assert "wrong number" in words and contact.name in words


# --- revoke-all ---------------------------------------------------------------------------------


def test_revoke_all_makes_a_plain_text_opt_out_stop_calls_too(org, client):
    org.revoke_all = True
    db.session.commit()
    number = next_number()
    reply = reply_of(text(client, "please stop texting me", number))
    assert "text messages or calls" in reply
    assert state(number).status == Status.OPTED_OUT
    assert state(number, Channel.VOICE).status == Status.OPTED_OUT
    calls = next_number()
    text(client, "stop calling me", calls)
    assert state(calls).status == Status.OPTED_OUT  # a revocation of calls stops texts too


@pytest.mark.parametrize("stop_blocks_voice", [False, True])
def test_revoke_all_stop_covers_every_non_emergency_purpose_and_emergency_calls_reach(
    org, client, stop_blocks_voice
):
    """A STOP with revoke-all: texts and calls are opted out channel-wide, so Attendance and
    General stop on both; Emergency texts stop too (the carrier blocks them after a STOP),
    but an emergency call still reaches, even when STOP also blocks calls (no carrier blocks
    a call)."""
    org.revoke_all = True
    org.stop_blocks_voice = stop_blocks_voice
    db.session.commit()
    number = next_number()
    text(client, "STOP", number)
    emergency = purposes.by_key(org, "emergency")
    assert eligibility.check_one(org, Channel.TEXT, number, emergency).reason == "opted_out"
    assert eligibility.check_one(org, Channel.VOICE, number, emergency).allowed
    assert eligibility.check_rows(org, Channel.VOICE, [number], emergency)[0][3] == "ok"
    for key in ("attendance", "general"):
        purpose = purposes.by_key(org, key)
        for channel in (Channel.TEXT, Channel.VOICE):
            assert eligibility.check_one(org, channel, number, purpose).reason == "opted_out"
    # Without a purpose: the channel-wide answers of before.
    assert eligibility.check_one(org, Channel.VOICE, number).reason == "opted_out"


def test_revoke_all_plain_opt_out_lets_emergency_texts_and_calls_reach(org, client):
    org.revoke_all = True
    db.session.commit()
    number = next_number()
    text(client, "please stop texting me", number)
    emergency = purposes.by_key(org, "emergency")
    general = purposes.general(org)
    for channel in (Channel.TEXT, Channel.VOICE):
        assert eligibility.check_one(org, channel, number, emergency).allowed
        assert not eligibility.check_one(org, channel, number, general).allowed


def test_without_revoke_all_a_text_opt_out_leaves_calls(org, client):
    number = next_number()
    text(client, "please stop texting me", number)
    assert state(number, Channel.VOICE) is None


# --- the opt-out confirmation: five minutes or not at all ---------------------------------------


def _confirmation(org, number, minutes_ago):
    ledger.opt_out(org, Channel.TEXT, number, source=Source.PORTAL, actor=Actor.recipient())
    message = db.session.scalars(
        sa.select(OutboxMessage).where(
            OutboxMessage.to_address == number, OutboxMessage.purpose == "optout_confirmation"
        )
    ).one()
    message.created_at = utcnow() - timedelta(minutes=minutes_ago)
    db.session.info.pop("outbox_new", None)  # not delivered inline after this commit
    db.session.commit()
    return message.id


def test_confirmation_text_within_five_minutes_is_sent(org, app):
    number = next_number()
    message_id = _confirmation(org, number, minutes_ago=4)
    outbox.deliver()
    assert db.session.get(OutboxMessage, message_id, populate_existing=True).status == "sent"


def test_confirmation_text_after_five_minutes_is_dropped_and_recorded(org, app):
    """Six minutes late, the confirmation is never sent: status expired, with why."""
    number = next_number()
    message_id = _confirmation(org, number, minutes_ago=6)
    report = outbox.deliver()
    message = db.session.get(OutboxMessage, message_id, populate_existing=True)
    assert (message.status, message.sent_at, report.expired) == ("expired", None, 1)
    assert "five minutes" in message.last_error


def test_retry_never_sends_a_late_confirmation(org, app):
    """A failed confirmation retried after its five minutes is dropped, not sent late."""
    number = next_number()
    message_id = _confirmation(org, number, minutes_ago=30)
    db.session.get(OutboxMessage, message_id).status = "failed"
    db.session.commit()
    outbox.retry([message_id])
    db.session.commit()
    outbox.deliver()
    assert db.session.get(OutboxMessage, message_id, populate_existing=True).status == "expired"
    assert outbox.retry([message_id]) == 0  # expired is final


def test_inbound_keeps_the_intent_it_was_read_as(org, client):
    number = next_number()
    text(client, "not interested", number)
    text(client, "Y", number)
    intents = list(db.session.scalars(sa.select(InboundMessage.intent).order_by(InboundMessage.id)))
    assert intents == ["unclear", "stop"]
