"""The outbox: every email and text we send, queued in the transaction of the change that
calls for it, delivered after the commit and by `flask outbox send`, with retries.

An idempotency key per message: queueing the same key twice gives the one message, and a
message once sent is never sent again. Several workers may run at once: each claims its batch
(PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: the write lock) and holds it for a lease.

The one window where a message can go out twice: a worker dies after the SMTP server (or the
SMS provider) accepted the message and before "sent" was recorded. The message stays claimed
until its lease runs out (OUTBOX_LEASE_SECONDS), then another worker sends it again. Every
email carries a Message-ID derived from the idempotency key, the same on each try, so the
receiving side can recognise the repeat.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy as email_policy
from email.utils import formataddr, parseaddr

import sqlalchemy as sa
from flask import current_app
from flask_mail import Connection, Message
from sqlalchemy.exc import IntegrityError

from consent.database import begin_write, is_sqlite
from consent.extensions import db, mail
from consent.models import ConsentState, OutboxMessage, utcnow

log = logging.getLogger(__name__)

# Sent whatever the recipient's consent: the one confirmation of an opt-out, the link a person
# asked for to opt back in, notices to the organization's own address, and the account emails
# a person asked for (claim, reset, verify) or must get (someone enrolled with their email).
# An invitation sent by staff is not exempt: it obeys an email opt-out.
EXEMPT_PURPOSES = frozenset(
    {
        "optout_confirmation",
        "confirm_request",
        "org_notification",
        "account_claim",
        "account_reset",
        "account_verify",
        "account_notice",
    }
)
# A code or link that proves an address: sent to an address with no choice yet (that is what
# a new one is), never to one that opted out of the channel or bounced.
VERIFICATION_PURPOSES = frozenset({"verify_code", "verify_email"})
SMTP_TIMEOUT = 10
# FCC 47 CFR 64.1200(a)(12): the one text confirming an opt-out goes out within five minutes
# or not at all. Older than this and still unsent, it is dropped ("expired"), never sent late.
CONFIRMATION_WINDOW = timedelta(minutes=5)


def queue(
    *,
    organization_id: int,
    channel: str,
    purpose: str,
    to: str,
    body: str,
    key: str,
    subject: str | None = None,
    body_html: str | None = None,
    headers: dict | None = None,
    language: str = "en",
    event_id: int | None = None,
) -> OutboxMessage:
    """Queue a message in the current transaction; the same key twice gives the same message."""
    existing = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.idempotency_key == key)
    ).first()
    if existing is not None:
        return existing
    # Headers are built from single-line values: a line break in a name (a subject naming a
    # person) would make the message unsendable, and retried for ever.
    subject = one_line(subject) if subject is not None else None
    headers = {one_line(k): one_line(str(v)) for k, v in (headers or {}).items()}
    message = OutboxMessage(
        organization_id=organization_id,
        idempotency_key=key,
        channel=channel,
        purpose=purpose,
        to_address=to,
        subject=subject,
        body=body,
        body_html=body_html,
        headers=headers or {},
        language=language,
        event_id=event_id,
        status="queued",
        attempts=0,
        next_attempt_at=utcnow(),
    )
    try:
        with db.session.begin_nested():
            db.session.add(message)
    except IntegrityError:  # queued meanwhile by another transaction
        return db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.idempotency_key == key)
        ).one()
    db.session.info.setdefault("outbox_new", []).append(message)
    return message


def one_line(value: str) -> str:
    """A value fit for a mail header: every run of whitespace (line breaks too) one space."""
    return " ".join(str(value).split())


@sa.event.listens_for(sa.orm.Session, "after_commit")
def _committed(session):
    new = session.info.pop("outbox_new", None)
    if new:
        ids = [sa.inspect(m).identity[0] for m in new if sa.inspect(m).identity]
        session.info.setdefault("outbox_committed", []).extend(ids)


@sa.event.listens_for(sa.orm.Session, "after_rollback")
def _rolled_back(session):
    session.info.pop("outbox_new", None)


def deliver_pending() -> DeliveryReport | None:
    """Deliver the messages committed by this session so far (call after commit)."""
    ids = db.session.info.pop("outbox_committed", None)
    if not ids or not current_app.config.get("OUTBOX_DELIVER_AFTER_COMMIT", True):
        return None
    try:
        return deliver(ids=ids, inline=True)
    except Exception:  # the request succeeded; the worker will deliver later
        log.exception("delivery after commit failed; the outbox worker will retry")
        db.session.rollback()
        return None


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    expired: int = 0
    errors: list[str] = field(default_factory=list)


def lease() -> timedelta:
    """How long a claimed message belongs to the worker that claimed it."""
    return timedelta(seconds=current_app.config.get("OUTBOX_LEASE_SECONDS", 300))


def backoff(attempts: int) -> timedelta:
    """Wait before the next try: 30 s, 1 min, 2 min … capped at 1 hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def deliver(
    ids: list[int] | None = None, limit: int = 100, *, inline: bool = False
) -> DeliveryReport:
    """Claim due messages (or these ids), send each, and record the result. Safe to run in
    several workers at once: a claimed message is leased to one worker.

    `inline` is the attempt made right after a request commits: when it fails, the message
    stays due at once for `flask outbox send` (no backoff), and the rest of the batch is left
    to the worker rather than making the person wait on a server that is down.
    """
    report = DeliveryReport()
    claimed = _claim(ids, limit)
    for position, message_id in enumerate(claimed):
        if inline and report.failed:
            _release(claimed[position:])
            break
        _deliver_one(message_id, report, inline=inline)
    return report


def _release(ids: list[int]) -> None:
    """Give claimed messages back to the queue, due now."""
    begin_write()
    db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.status == "sending")
        .values(status="queued", locked_until=None, next_attempt_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _claim(ids: list[int] | None, limit: int) -> list[int]:
    now = utcnow()
    begin_write()
    due = sa.or_(
        sa.and_(OutboxMessage.status == "queued", OutboxMessage.next_attempt_at <= now),
        sa.and_(OutboxMessage.status == "sending", OutboxMessage.locked_until < now),
    )
    stmt = sa.select(OutboxMessage.id).where(due).order_by(OutboxMessage.id).limit(limit)
    if ids is not None:
        stmt = stmt.where(OutboxMessage.id.in_(ids))
    if not is_sqlite():
        stmt = stmt.with_for_update(skip_locked=True)
    claimed = list(db.session.scalars(stmt))
    if claimed:
        db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id.in_(claimed))
            .values(status="sending", locked_until=now + lease())
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return claimed


def _deliver_one(message_id: int, report: DeliveryReport, *, inline: bool = False) -> None:
    message = db.session.get(OutboxMessage, message_id, populate_existing=True)
    if message is None or message.status != "sending":
        return
    if too_late(message):
        _expire(message, report)
        return
    blocked = _suppression_reason(message)
    provider_id = error = None
    carrier = None
    if not blocked:
        try:
            provider_id = _send(message)
        except CarrierOptOut as exc:  # the person replied STOP: never retried
            carrier = exc
            blocked = f"not sent: {exc}"
        except Exception as exc:  # noqa: BLE001 - any transport failure is retried
            error = f"{type(exc).__name__}: {exc}"[:2000]
    # The result is written in a write transaction taken only now: the send may take seconds,
    # and on SQLite a read transaction that turns into a write after another writer committed
    # fails with "database is locked" (the message would be sent again after its lease).
    begin_write()
    message = db.session.get(OutboxMessage, message_id, populate_existing=True)
    message.attempts += 1
    message.locked_until = None
    if carrier is not None:
        _record_carrier_opt_out(message, carrier)
    if blocked:
        message.status = "suppressed"
        message.last_error = blocked
        report.suppressed += 1
    elif error is None:
        message.status = "sent"
        message.sent_at = utcnow()
        message.provider_id = provider_id
        message.last_error = None
        report.sent += 1
    else:
        message.last_error = error
        if message.attempts >= current_app.config.get("OUTBOX_MAX_ATTEMPTS", 8):
            message.status = "failed"
        else:
            message.status = "queued"
            message.next_attempt_at = utcnow() + (
                timedelta(0) if inline else backoff(message.attempts)
            )
        report.failed += 1
        report.errors.append(f"#{message.id} to {message.to_address}: {error}")
    db.session.commit()


def too_late(message: OutboxMessage, now=None) -> bool:
    """Whether this is an opt-out confirmation text past its five minutes."""
    return (
        message.channel == "text"
        and message.purpose == "optout_confirmation"
        and message.created_at is not None
        and message.created_at < (now or utcnow()) - CONFIRMATION_WINDOW
    )


def _expire(message: OutboxMessage, report: DeliveryReport) -> None:
    """Drop a confirmation text that can no longer be sent in time, and say so on it."""
    begin_write()
    message = db.session.get(OutboxMessage, message.id, populate_existing=True)
    message.status = "expired"
    message.locked_until = None
    message.last_error = (
        "not sent: an opt-out confirmation text is sent within five minutes or not at all "
        f"(queued {message.created_at:%Y-%m-%d %H:%M:%S} UTC)"
    )
    db.session.commit()
    report.expired += 1
    log.warning("opt-out confirmation #%s to %s expired unsent", message.id, message.to_address)


RETRYABLE = ("failed", "queued")


def retry(ids: list[int]) -> int:
    """Make these failed or queued messages due now (not a consent change); how many were.

    A sent or suppressed message is left alone. The attempts so far are kept, so a message
    that failed its last try gets one more; the caller commits.
    """
    if not ids:
        return 0
    begin_write()
    result = db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id.in_(list(ids)), OutboxMessage.status.in_(RETRYABLE))
        .values(status="queued", next_attempt_at=utcnow(), locked_until=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def _suppression_reason(message: OutboxMessage) -> str | None:
    """Our own texts and emails obey eligibility, except the exempt purposes."""
    if message.purpose in EXEMPT_PURPOSES or message.purpose.startswith("keyword_"):
        return None
    from consent.eligibility import check_one
    from consent.models import Organization

    org = db.session.get(Organization, message.organization_id)
    if message.purpose in VERIFICATION_PURPOSES:
        state = db.session.scalars(
            sa.select(ConsentState).where(
                ConsentState.organization_id == org.id,
                ConsentState.channel == message.channel,
                ConsentState.address == message.to_address,
            )
        ).one_or_none()
        if state is not None and (state.blocks_sending or state.carrier_block):
            return f"not sent: {state.status}"
        return None
    result = check_one(org, message.channel, message.to_address)
    if result.allowed:
        return None
    return f"not sent: {result.reason}"


class CarrierOptOut(Exception):
    """The SMS provider refused a text because the recipient opted out (Twilio 21610)."""


# Who records a carrier opt-out learnt when sending: consent.sms registers itself (the outbox
# sits below the ledger, so it cannot call it; every app imports consent.sms with its routes).
CARRIER_OPT_OUT_HANDLERS: list = []


def _record_carrier_opt_out(message: OutboxMessage, refusal: CarrierOptOut) -> None:
    evidence = {"outbox_message_id": message.id, "error_code": "21610", "answer": str(refusal)}
    for handler in CARRIER_OPT_OUT_HANDLERS:
        handler(message.organization_id, message.to_address, evidence)


def _send(message: OutboxMessage) -> str:
    if message.channel == "email":
        return _send_email(message)
    if message.channel == "voice":
        return _send_call(message)
    return _send_text(message)


class _TimedConnection(Connection):
    """Flask-Mail's connection, with a timeout so a hung server cannot hang a request."""

    def configure_host(self):
        cls = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        host = cls(self.mail.server, self.mail.port, timeout=SMTP_TIMEOUT)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


def message_id_for(message: OutboxMessage) -> str:
    digest = hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@consent-desk>"


class _PlainHeaderMessage(Message):
    """Flask-Mail's message, written with lines up to RFC 5322's 998 characters: with its
    default (78), a List-Unsubscribe header longer than a line, a URL with no space to fold
    at, goes out RFC 2047-encoded (=?utf-8?q?...?=), which mail providers do not read as a
    link. Headers are ASCII here (the subject and names are encoded by Flask-Mail itself)."""

    def _message(self):
        msg = super()._message()
        msg.policy = email_policy.SMTP.clone(max_line_length=998)
        # Flask-Mail writes every sender name RFC 2047-encoded; formataddr only a name that
        # needs it ("Maple Valley School District" stays as it is).
        del msg["From"]
        msg["From"] = formataddr(parseaddr(self.sender), charset="utf-8")
        return msg


def sender_for(organization_id: int) -> str:
    """The district as the sender's name, at the configured sender's address."""
    from consent.models import Organization

    name, address = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])
    org = db.session.get(Organization, organization_id)
    return formataddr((org.name if org is not None else name, address))


def _send_email(message: OutboxMessage) -> str:
    msg_id = message_id_for(message)
    if current_app.config.get("EMAIL_TRANSPORT") == "record":
        log.info("email recorded, not sent: to=%s subject=%s", message.to_address, message.subject)
        return f"recorded:{msg_id}"
    email = _PlainHeaderMessage(
        subject=one_line(message.subject or ""),
        recipients=[message.to_address],
        body=message.body,
        html=message.body_html,
        extra_headers={one_line(k): one_line(v) for k, v in (message.headers or {}).items()},
        sender=sender_for(message.organization_id),
    )
    email.msgId = msg_id  # one Message-ID, stable across retries (Flask-Mail makes its own)
    state = current_app.extensions["mail"]
    with _TimedConnection(state) as connection:
        connection.send(email)
    return msg_id


def _send_text(message: OutboxMessage) -> str:
    from consent.models import Organization

    config = current_app.config
    if not (config.get("TWILIO_ACCOUNT_SID") and config.get("TWILIO_AUTH_TOKEN")):
        log.info("text recorded, not sent: to=%s body=%s", message.to_address, message.body)
        return f"recorded:{message.id}"
    from twilio.rest import Client

    org = db.session.get(Organization, message.organization_id)
    client = Client(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"])
    kwargs = {"to": message.to_address, "from_": org.texting_number, "body": message.body}
    if config.get("PUBLIC_BASE_URL"):
        kwargs["status_callback"] = config["PUBLIC_BASE_URL"] + "/sms/status"
    from twilio.base.exceptions import TwilioRestException

    try:
        return client.messages.create(**kwargs).sid
    except TwilioRestException as exc:
        if str(exc.code) == "21610":
            raise CarrierOptOut(f"21610 {exc.msg}"[:300]) from exc
        raise


CALL_LANGUAGES = {"en": "en-US", "es": "es-MX"}


def _send_call(message: OutboxMessage) -> str:
    """A call that reads the message's body out (TwiML <Say>, twice); recorded without Twilio."""
    from consent.models import Organization

    config = current_app.config
    if not (config.get("TWILIO_ACCOUNT_SID") and config.get("TWILIO_AUTH_TOKEN")):
        log.info("call recorded, not made: to=%s says=%s", message.to_address, message.body)
        return f"recorded:{message.id}"
    from twilio.rest import Client

    org = db.session.get(Organization, message.organization_id)
    client = Client(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"])
    twiml = call_twiml(message.body, message.language)
    return client.calls.create(to=message.to_address, from_=org.texting_number, twiml=twiml).sid


def call_twiml(words: str, language: str = "en") -> str:
    """The TwiML of a call that says `words` twice, with a pause between."""
    from twilio.twiml.voice_response import VoiceResponse

    response = VoiceResponse()
    spoken = CALL_LANGUAGES.get(language, "en-US")
    response.say(words, language=spoken)
    response.pause(length=1)
    response.say(words, language=spoken)
    return str(response)


__all__ = ["queue", "deliver", "deliver_pending", "retry", "backoff", "DeliveryReport", "mail"]
