"""Texts from recipients and delivery callbacks from the SMS provider.

`handle_inbound` answers one text sent to an organization's number (once per MessageSid: a
replay gets the reply given the first time) and returns the reply text: STOP opts the number
out with a carrier block, START opts it back in, HELP says who we are. `handle_status` records
one delivery callback (once per sid, status and error): 21610 is a carrier opt-out, 30003 /
30005 / 30006 mark the number bounced. Every consent change goes through the ledger; the
caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from flask import render_template
from flask_babel import force_locale
from sqlalchemy.exc import IntegrityError

from consent import keywords, ledger, outbox, purposes
from consent.addresses import AddressError, format_phone, normalize_phone
from consent.extensions import db
from consent.i18n import LANGUAGES
from consent.ledger import Actor, Origin
from consent.models import (
    Channel,
    DeliveryReceipt,
    InboundMessage,
    Organization,
    OutboxMessage,
    Source,
    Status,
    utcnow,
)
from consent.notifications import owners_of

CARRIER_OPT_OUT = "21610"  # the recipient replied STOP: the carrier blocks our texts
BOUNCES = {
    "30003": "unreachable handset",
    "30005": "unknown or inactive number",
    "30006": "landline or unreachable carrier",
}
MAX_SID = 64


def clean(text: object, limit: int | None = None) -> str:
    """Text from outside, safe to store on both databases (no NUL; optionally cut)."""
    value = text if isinstance(text, str) else ""
    value = value.replace("\x00", "\ufffd")
    return value[:limit] if limit else value


def organization_for(number: str) -> Organization | None:
    """The organization whose texting number this is (E.164, or a short code as written)."""
    raw = clean(number, 64).strip()
    if not raw:
        return None
    candidates = {raw}
    try:
        candidates.add(normalize_phone(raw))
    except AddressError:
        pass
    return db.session.scalars(
        sa.select(Organization)
        .where(Organization.texting_number.in_(sorted(candidates)))
        .order_by(Organization.id)
    ).first()


# --- inbound texts --------------------------------------------------------------------------


def handle_inbound(
    org: Organization,
    from_number: str,
    body: str,
    message_sid: str,
    origin: Origin | None = None,
    *,
    to_number: str = "",
    opt_out_type: str = "",
) -> str:
    """Answer one text sent to `org`'s number and return the reply ("" for none).

    The same `message_sid` twice changes nothing the second time and returns the same reply.
    `opt_out_type` is Twilio's reading of the text (its Advanced Opt-Out: STOP, START, HELP,
    also for the custom keywords set up there); when given, it stands over ours.
    """
    sid = clean(message_sid, MAX_SID)
    seen = _inbound(sid)
    if seen is not None:
        return seen.reply
    body = clean(body)
    reading = _provider_reading(keywords.read(body), clean(opt_out_type, 16).strip().upper())
    message = InboundMessage(
        organization_id=org.id,
        message_sid=sid,
        from_number=clean(from_number, 64),
        to_number=clean(to_number, 64),
        body=body,
        intent=reading.intent,
        reply="",
    )
    try:
        with db.session.begin_nested():
            db.session.add(message)
    except IntegrityError:  # the provider retried while the first delivery was being answered
        return _inbound(sid).reply
    try:
        number = normalize_phone(clean(from_number, 64), org.default_region or "US")
    except AddressError:
        number = None
    message.reply = _answer(org, number, reading, message, origin or Origin(), opt_out_type)
    db.session.flush()
    return message.reply


PROVIDER_INTENTS = {"STOP": keywords.STOP, "START": keywords.START, "HELP": keywords.HELP}


def _provider_reading(reading: keywords.Reading, opt_out_type: str) -> keywords.Reading:
    """Twilio's OptOutType over our reading: Twilio acts on it (a STOP there blocks our texts
    at Twilio), so it is the exact keyword it names."""
    intent = PROVIDER_INTENTS.get(opt_out_type)
    if intent is None or (reading.intent == intent and reading.exact):
        return reading
    return keywords.Reading(intent, True, reading.keyword or opt_out_type, reading.language)


def _inbound(sid: str) -> InboundMessage | None:
    return db.session.scalars(
        sa.select(InboundMessage).where(InboundMessage.message_sid == sid)
    ).one_or_none()


QUESTION_WINDOW = timedelta(hours=24)  # an answer ("Y") counts this long after our question
CONFIRM_WINDOW = timedelta(days=7)  # and this long after a text asking to confirm opting in


def _answer(org, number, reading, message, origin, opt_out_type="") -> str:
    asked = _asked(org, number, message) if number is not None else None
    short = keywords.answer(message.body)
    if asked == "clarify" and short == "yes":
        # "Did you want to stop texts from us?" "Y": the revocation they meant.
        reading = keywords.Reading(keywords.STOP, False, None, reading.language)
    elif asked == "clarify" and short == "no":
        return ""  # they said no: nothing changes, nothing more to say
    elif asked == "confirm" and short == "yes":
        reading = keywords.Reading(keywords.START, True, "YES", reading.language)
    message.intent = reading.intent
    if reading.intent is None:
        return ""  # ordinary talk: kept, not answered
    language = reading.language if reading.language in LANGUAGES else "en"
    if number is not None and language != "en":
        # A Spanish keyword is a clear sign of the person's language; English keywords are
        # the carriers' universal words and say nothing about it.
        for person in owners_of(Channel.TEXT, number, org.id):
            person.language = language
    if reading.intent == keywords.HELP:
        return reply(org, "reply_help", language)
    if reading.intent == keywords.UNCLEAR:
        # The FCC allows one text to ask what a revocation covers: ask once, never twice.
        return "" if asked == "clarify" else reply(org, "reply_clarify", language)
    if number is None:
        return ""  # not a phone number we could ever text: nothing to record
    evidence = {
        "body": message.body,
        "message_sid": message.message_sid,
        "to": message.to_number,
        "keyword": reading.keyword,
        "exact": reading.exact,
        "language": language,
    }
    if short is not None and asked is not None:
        evidence["answer_to"] = asked
    if opt_out_type:
        evidence["opt_out_type"] = clean(opt_out_type, 16).strip().upper()
    actor = Actor.recipient(f"the person at {format_phone(number)} (text reply)")
    if reading.intent == keywords.STOP:
        return _stop(org, number, reading, evidence, actor, origin, language)
    return _start(org, number, evidence, actor, origin, language)


def _asked(org, number, message) -> str | None:
    """What we last asked this number, if it is still waiting for an answer: "clarify" (our
    one clarifying question, the reply to its last text) or "confirm" (a text asking it to
    confirm opting back in), else None."""
    now = utcnow()
    last = db.session.scalars(
        sa.select(InboundMessage)
        .where(
            InboundMessage.organization_id == org.id,
            InboundMessage.from_number == message.from_number,
            InboundMessage.id != message.id,
        )
        .order_by(InboundMessage.id.desc())
        .limit(1)
    ).first()
    confirm = db.session.scalars(
        sa.select(OutboxMessage.created_at)
        .where(
            OutboxMessage.organization_id == org.id,
            OutboxMessage.channel == "text",
            OutboxMessage.purpose == "confirm_request",
            OutboxMessage.to_address == number,
            OutboxMessage.created_at >= now - CONFIRM_WINDOW,
        )
        .order_by(OutboxMessage.created_at.desc())
        .limit(1)
    ).first()
    clarify = (
        last is not None
        and last.intent == keywords.UNCLEAR
        and bool(last.reply)
        and last.received_at >= now - QUESTION_WINDOW
    )
    if clarify and (confirm is None or confirm <= last.received_at):
        return "clarify"
    if confirm is not None and (last is None or last.received_at <= confirm):
        return "confirm"
    return None


def _stop(org, number, reading, evidence, actor, origin, language) -> str:
    """Opt out what the message asks for: texts (a bare keyword with the carrier block), calls,
    or the email addresses on record for the number's owners; with the revoke-all rule on, a
    revocation of texts or calls covers both."""
    # A bare keyword is what carriers act on (they block us until START), so it carries the
    # carrier block; a plain-language request opts out just as surely, without the block.
    source = Source.SMS_KEYWORD if reading.exact else Source.SMS_REPLY
    channels = set(reading.channels)
    if reading.reassigned:
        evidence["reassigned"] = True
        channels.add(Channel.TEXT)
    general = purposes.general(org) if reading.scope == "some" else None
    if general is not None and not org.revoke_all and not reading.reassigned:
        # "stop sending the lunch menu": the General purpose only (never the channel).
        return _stop_general(org, number, general, channels, evidence, actor, origin, language)
    if reading.scope == "some":
        # With revoke-all a revocation of one kind stops every non-emergency message.
        evidence["scope"] = "all" if org.revoke_all else "general"
    revoke_all = org.revoke_all and bool(channels & {Channel.TEXT, Channel.VOICE})
    if revoke_all:
        # Channel-wide opt-outs of texts and calls: every purpose that does not reach opted-out
        # addresses stops; an emergency one still reaches (consent.eligibility.decide_for).
        channels |= {Channel.TEXT, Channel.VOICE}
        evidence["revoke_all"] = True
    if Channel.TEXT in channels:
        ledger.opt_out(
            org, Channel.TEXT, number, source=source, actor=actor, evidence=evidence,
            origin=origin, carrier_block=reading.exact,
        )  # fmt: skip
    blocks_voice = reading.exact and org.stop_blocks_voice
    if blocks_voice:
        _block_voice(org, number, source, actor, evidence, origin)
    elif Channel.VOICE in channels:
        ledger.opt_out(
            org, Channel.VOICE, number, source=source, actor=actor, evidence=evidence,
            origin=origin,
        )  # fmt: skip
    emails = None
    if Channel.EMAIL in channels:
        emails = _emails_of_owners(org, number)
        for address in emails:
            ledger.opt_out(
                org, Channel.EMAIL, address, source=Source.SMS_REPLY, actor=actor,
                evidence=evidence, origin=origin,
            )  # fmt: skip
    if reading.reassigned:
        return reply(org, "reply_wrong_number", language)
    if reading.scope == "some" and not revoke_all:
        return reply(org, "reply_stop_some", language, purpose=None)
    calls = blocks_voice or Channel.VOICE in channels
    if Channel.TEXT in channels and Channel.EMAIL not in channels:
        return reply(org, "reply_stop", language, voice=calls)
    return reply(
        org,
        "reply_stop_named",
        language,
        texts=Channel.TEXT in channels,
        calls=calls,
        emails=", ".join(emails or ()),
        asked_email=emails is not None,
    )


def _stop_general(org, number, general, channels, evidence, actor, origin, language) -> str:
    """Turn the General purpose off for the number on the channels the message names (texts
    when it names none): a text in words, so an opt-out only (consent.ledger.check_purpose)."""
    evidence["scope"] = "general"
    for channel in sorted(channels & {Channel.TEXT, Channel.VOICE}) or [Channel.TEXT]:
        ledger.change_purpose(
            org, channel, number, general, Status.OPTED_OUT, source=Source.SMS_REPLY,
            actor=actor, evidence=evidence, origin=origin,
        )  # fmt: skip
    return reply(org, "reply_stop_some", language, purpose=general.name(language))


def _emails_of_owners(org, number) -> list[str]:
    """The email addresses on record for the people who have this phone number."""
    emails: list[str] = []
    for person in owners_of(Channel.TEXT, number, org.id):
        emails.extend(e.address for e in person.emails if e.address not in emails)
    return emails


def _block_voice(org, number, source, actor, evidence, origin) -> None:
    """STOP also blocks calls (a setting): opt voice out with the block, unless already out."""
    state = ledger.current(org, Channel.VOICE, number)
    if state is not None and state.status == Status.OPTED_OUT:
        return  # an earlier choice stands; START will not lift it
    ledger.opt_out(
        org,
        Channel.VOICE,
        number,
        source=source,
        actor=actor,
        evidence=evidence,
        origin=origin,
        carrier_block=True,
    )


def _start(org, number, evidence, actor, origin, language) -> str:
    outcome = ledger.opt_in(
        org, Channel.TEXT, number, source=Source.SMS_KEYWORD, actor=actor, evidence=evidence,
        origin=origin,
    )  # fmt: skip
    if not outcome.ok:
        return reply(org, "reply_start_off", language)
    voice = ledger.current(org, Channel.VOICE, number)
    if voice is not None and voice.carrier_block:  # blocked by an earlier STOP: lifted with it
        ledger.opt_in(
            org, Channel.VOICE, number, source=Source.SMS_KEYWORD, actor=actor,
            evidence=evidence, origin=origin,
        )  # fmt: skip
    return reply(org, "reply_start", language)


def reply(org: Organization, template: str, language: str = "en", **context) -> str:
    """Render templates/sms/<template>.txt in `language` as one line of text."""
    with force_locale(language):
        text = render_template(
            f"sms/{template}.txt",
            org=org,
            texting_number=format_phone(org.texting_number),
            help_contact=org.help_contact or org.notification_email,
            **context,
        )
    return " ".join(text.split())


# --- delivery callbacks ---------------------------------------------------------------------


@dataclass(frozen=True)
class StatusResult:
    """What a delivery callback did: recorded it, and which consent outcome (if any)."""

    code: str  # "duplicate", "recorded", "carrier_opt_out", "bounced", "unknown_number"
    address: str | None = None


def handle_status(
    message_sid: str,
    message_status: str,
    *,
    to_number: str = "",
    from_number: str = "",
    error_code: str = "",
    origin: Origin | None = None,
) -> StatusResult:
    """Record one delivery callback; 21610 opts the number out with a carrier block, 30003 /
    30005 / 30006 mark it bounced. The same callback twice changes nothing the second time."""
    sid = clean(message_sid, MAX_SID)
    status = clean(message_status, 32)
    error = clean(error_code, 16).strip()
    receipt = DeliveryReceipt(
        message_sid=sid, message_status=status, error_code=error, to_number=clean(to_number, 64)
    )
    if _receipt_seen(sid, status, error):
        return StatusResult("duplicate")
    try:
        with db.session.begin_nested():
            db.session.add(receipt)
    except IntegrityError:
        return StatusResult("duplicate")
    if error != CARRIER_OPT_OUT and error not in BOUNCES:
        return StatusResult("recorded")
    org, recipient = _sender_and_recipient(sid, from_number, to_number)
    if org is None:
        return StatusResult("unknown_number")
    try:
        number = normalize_phone(clean(recipient, 64), org.default_region or "US")
    except AddressError:
        return StatusResult("unknown_number")
    evidence = {"message_sid": sid, "message_status": status, "error_code": error}
    if error == CARRIER_OPT_OUT:
        carrier_opt_out(org, number, evidence, origin, "the mobile carrier (delivery callback)")
        return StatusResult("carrier_opt_out", number)
    evidence["meaning"] = BOUNCES[error]
    ledger.mark_bounced(org, Channel.TEXT, number, evidence=evidence, origin=origin)
    return StatusResult("bounced", number)


def carrier_opt_out(org, number, evidence, origin=None, label="the mobile carrier") -> None:
    """Twilio's 21610 (in a callback, or as the answer when we send): the person replied STOP
    and the carrier blocks our texts; recorded with the block (and on calls, by the rule)."""
    actor = Actor.system(label)
    ledger.opt_out(
        org, Channel.TEXT, number, source=Source.CARRIER, actor=actor, evidence=evidence,
        origin=origin, carrier_block=True,
    )  # fmt: skip
    if org.stop_blocks_voice:
        _block_voice(org, number, Source.CARRIER, actor, evidence, origin)


def _carrier_opt_out_when_sending(org_id: int, number: str, evidence: dict) -> None:
    org = db.session.get(Organization, org_id)
    carrier_opt_out(org, number, evidence, label="the mobile carrier (answer to our text)")


outbox.CARRIER_OPT_OUT_HANDLERS.append(_carrier_opt_out_when_sending)


def _receipt_seen(sid: str, status: str, error: str) -> bool:
    return (
        db.session.scalar(
            sa.select(DeliveryReceipt.id).where(
                DeliveryReceipt.message_sid == sid,
                DeliveryReceipt.message_status == status,
                DeliveryReceipt.error_code == error,
            )
        )
        is not None
    )


def _sender_and_recipient(sid, from_number, to_number) -> tuple[Organization | None, str]:
    """The organization and number a callback is about: our outbox's record of the message
    when we have it, else the callback's own From (our number) and To."""
    if sid:
        sent = db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.provider_id == sid).limit(1)
        ).first()
        if sent is not None:
            return db.session.get(Organization, sent.organization_id), sent.to_address
    return organization_for(from_number), to_number
