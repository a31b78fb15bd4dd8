"""The messages a consent change calls for, rendered from templates/email and templates/sms
in the recipient's language and queued in the outbox (same transaction as the change)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app, render_template
from flask_babel import force_locale

from consent import outbox, tokens
from consent.addresses import format_phone
from consent.database import org_is
from consent.extensions import db
from consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    Contact,
    EmailAddress,
    Organization,
    Phone,
    PhoneKind,
    PurposeState,
    Source,
    Status,
    Student,
    utcnow,
)
from consent.words import channel_words, shown_address, source_words

# Sources whose opt-outs the organization hears about by email (docs/rules.md).
NOTIFY_ORG_SOURCES = frozenset(
    {
        Source.PORTAL,
        Source.SMS_KEYWORD,
        Source.SMS_REPLY,
        Source.CARRIER,
        Source.EMAIL_LINK,
        Source.ONE_CLICK,
    }
)


def base_url() -> str:
    """The public address of the app, for links in messages."""
    return current_app.config.get("PUBLIC_BASE_URL") or current_app.config.get(
        "DEV_BASE_URL", "http://127.0.0.1:5000"
    )


def link(path: str) -> str:
    return base_url() + path


# How an email can be tied to its person, not merely to whoever reads the mailbox: the district's
# records, staff, or the account's own email link (consent.verification.Method values).
_TIES_TO_PERSON = frozenset({"records", "staff", "account_email"})


def owners_of(
    channel: str, address: str, org_id: int, *, proven: bool = False
) -> list[Contact | Student]:
    """The contacts and students of the organization who have this address (with `proven`,
    only those on whose record the address is verified: typing a number proves nothing)."""
    if channel == Channel.EMAIL:
        rows = db.session.scalars(
            sa.select(EmailAddress).where(EmailAddress.address == address)
        ).all()
    else:
        rows = db.session.scalars(sa.select(Phone).where(Phone.number == address)).all()
    people = []
    for row in rows:
        if proven and row.verified_at is None:
            continue
        person = row.owner
        if person is not None and person.family.organization_id == org_id:
            people.append(person)
    return people


def language_for(channel: str, address: str, org_id: int) -> str:
    """The language remembered for the person at this address (English when unknown)."""
    for person in owners_of(channel, address, org_id):
        if getattr(person, "language", None):
            return person.language
    return "en"


def _state_version(org_id: int, channel: str, address: str) -> int:
    """The version of the address's consent state (0 before any choice): signed links carry
    it, so a link stops working once the choice it was sent for has moved on."""
    version = db.session.scalar(
        sa.select(ConsentState.version).where(
            org_is(ConsentState.organization_id, org_id),
            ConsentState.channel == channel,
            ConsentState.address == address,
        )
    )
    return version or 0


def covered_cells(org_id: int, email: str) -> dict[str, list[str]]:
    """{cell number: names of its owners} of the people who have this email address: the
    numbers a preferences link for the email covers."""
    found: dict[str, list[str]] = {}
    for person in owners_of(Channel.EMAIL, email, org_id, proven=True):
        for phone in person.phones:
            if phone.kind == PhoneKind.CELL and phone.verified_at is not None:
                names = found.setdefault(phone.number, [])
                if person.name not in names:
                    names.append(person.name)
    return found


def preferences_digest(org_id: int, email: str) -> str:
    """A digest of every choice a preferences link covers (each covered number and the
    version of its text state, the email's and the numbers' purpose choices): it changes when
    any of them changes, which spends the link."""
    numbers = sorted(covered_cells(org_id, email))
    versions = dict.fromkeys(numbers, 0)
    if numbers:
        versions.update(
            db.session.execute(
                sa.select(ConsentState.address, ConsentState.version).where(
                    ConsentState.organization_id == org_id,
                    ConsentState.channel == Channel.TEXT,
                    ConsentState.address.in_(numbers),
                )
            ).all()
        )
    text = ";".join(f"{number}:{versions[number]}" for number in numbers)
    # The email's own purpose choices too (the page offers them): nothing when it has none,
    # so links made before purposes keep their digest.
    chosen = db.session.execute(
        sa.select(PurposeState.purpose_id, PurposeState.version)
        .where(
            PurposeState.organization_id == org_id,
            PurposeState.channel == Channel.EMAIL,
            PurposeState.address == email,
        )
        .order_by(PurposeState.purpose_id)
    ).all()
    if chosen:
        text += "|" + ";".join(f"{pid}:{version}" for pid, version in chosen)
    # And the covered numbers' purpose choices on texts and calls (the page offers them too).
    if numbers:
        by_number = db.session.execute(
            sa.select(
                PurposeState.address,
                PurposeState.channel,
                PurposeState.purpose_id,
                PurposeState.version,
            )
            .where(
                PurposeState.organization_id == org_id,
                PurposeState.channel.in_((Channel.TEXT, Channel.VOICE)),
                PurposeState.address.in_(numbers),
            )
            .order_by(PurposeState.address, PurposeState.channel, PurposeState.purpose_id)
        ).all()
        if by_number:
            text += "|n:" + ";".join(
                f"{address}/{Channel(channel).value}/{pid}:{version}"
                for address, channel, pid, version in by_number
            )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def preferences_token(org: Organization, email: str, version: int | None = None) -> str:
    """A signed preferences link for an email address, for the choices as they are now."""
    if version is None:
        version = _state_version(org.id, Channel.EMAIL, email)
    return tokens.make(
        "preferences", org.id, "email", email, version, d=preferences_digest(org.id, email)
    )


def email_headers(org: Organization, to: str) -> tuple[dict, str, str]:
    """List-Unsubscribe headers (RFC 8058) and the footer links for an email to `to`."""
    version = _state_version(org.id, Channel.EMAIL, to)
    unsubscribe = link("/unsubscribe/" + tokens.make("unsubscribe", org.id, "email", to, version))
    preferences = link("/preferences/" + preferences_token(org, to, version))
    headers = {
        "List-Unsubscribe": f"<{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    return headers, unsubscribe, preferences


def queue_email(
    org: Organization,
    *,
    to: str,
    purpose: str,
    template: str,
    key: str,
    language: str = "en",
    event_id: int | None = None,
    **context,
) -> outbox.OutboxMessage:
    """Render templates/email/<template>.txt (and .html) and queue it for `to`."""
    headers, unsubscribe_url, preferences_url = email_headers(org, to)
    context.update(
        org=org,
        texting_number=format_phone(org.texting_number),
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
        to=to,
    )
    with force_locale(language):
        subject = render_template(f"email/{template}.subject.txt", **context).strip()
        body = render_template(f"email/{template}.txt", **context)
        # The HTML part: the same words, links made clickable, the footer from the layout.
        html_body = render_template(f"email/{template}.txt", html=True, **context)
        html = render_template("email/layout.html", body=html_body.strip(), **context)
    return outbox.queue(
        organization_id=org.id,
        channel="email",
        purpose=purpose,
        to=to,
        subject=subject,
        body=body,
        body_html=html,
        headers=headers,
        key=key,
        language=language,
        event_id=event_id,
    )


def queue_text(
    org: Organization,
    *,
    to: str,
    purpose: str,
    template: str,
    key: str,
    language: str = "en",
    event_id: int | None = None,
    **context,
) -> outbox.OutboxMessage:
    """Render templates/sms/<template>.txt and queue it as a text to `to`."""
    context.update(org=org, texting_number=format_phone(org.texting_number))
    with force_locale(language):
        body = " ".join(render_template(f"sms/{template}.txt", **context).split())
    return outbox.queue(
        organization_id=org.id,
        channel="text",
        purpose=purpose,
        to=to,
        body=body,
        key=key,
        language=language,
        event_id=event_id,
    )


def queue_call(
    org: Organization,
    *,
    to: str,
    purpose: str,
    template: str,
    key: str,
    language: str = "en",
    **context,
) -> outbox.OutboxMessage:
    """Render templates/voice/<template>.txt and queue it as a call to `to` that reads it out."""
    context.update(org=org)
    with force_locale(language):
        body = " ".join(render_template(f"voice/{template}.txt", **context).split())
    return outbox.queue(
        organization_id=org.id,
        channel="voice",
        purpose=purpose,
        to=to,
        body=body,
        key=key,
        language=language,
    )


def after_change(
    org: Organization,
    state: ConsentState,
    event: ConsentEvent,
    *,
    confirm: bool = True,
    notify_org: bool | None = None,
) -> list:
    """Queue what a change calls for: the recipient's one confirmation, the organization's
    notice. SMS keyword replies are answered in the webhook's own reply, not here."""
    messages = []
    channel, address, source = state.channel, state.address, event.source
    language = language_for(channel, address, org.id)
    if event.to_status == Status.OPTED_OUT:
        if (
            confirm
            and channel == Channel.TEXT
            and source
            not in (
                Source.SMS_KEYWORD,
                Source.SMS_REPLY,
                Source.CARRIER,
                Source.IMPORT,
            )
        ):
            messages.append(
                queue_text(
                    org,
                    to=address,
                    purpose="optout_confirmation",
                    template="opted_out",
                    key=f"optout:{org.id}:{channel}:{address}:{event.state_version}",
                    language=language,
                    event_id=event.id,
                )
            )
        if confirm and channel == Channel.EMAIL and source != Source.IMPORT:
            messages.append(
                queue_email(
                    org,
                    to=address,
                    purpose="optout_confirmation",
                    template="opted_out",
                    key=f"optout:{org.id}:{channel}:{address}:{event.state_version}",
                    language=language,
                    event_id=event.id,
                    channel_words=channel_words(channel),
                )
            )
        if confirm and channel == Channel.VOICE and source != Source.IMPORT:
            # A call cannot carry a confirmation: the person hears by email, once (never at
            # an email that is itself opted out or bounced).
            to = next(
                (
                    d.to
                    for d in confirmation_destinations(org, channel, address)
                    if d.channel == Channel.EMAIL
                ),
                None,
            )
            if to is not None:
                messages.append(
                    queue_email(
                        org,
                        to=to,
                        purpose="optout_confirmation",
                        template="opted_out_calls",
                        key=f"optout:{org.id}:{channel}:{address}:{event.state_version}",
                        language=language,
                        event_id=event.id,
                        shown=shown_address(address),
                    )
                )
    elif confirm and event.to_status == Status.OPTED_IN and channel == Channel.TEXT:
        if source in (Source.ENROLLMENT, Source.PORTAL, Source.EMAIL_LINK):
            messages.append(
                queue_text(
                    org,
                    to=address,
                    purpose="optin_confirmation",
                    template="opted_in",
                    key=f"optin:{org.id}:{channel}:{address}:{event.state_version}",
                    language=language,
                    event_id=event.id,
                )
            )
    if notify_org is None:
        notify_org = source in NOTIFY_ORG_SOURCES and event.to_status in (
            Status.OPTED_OUT,
            Status.OPTED_IN,
        )
        if event.to_status == Status.OPTED_IN and source != Source.EMAIL_LINK:
            notify_org = False
    if notify_org and org.notification_email:
        people = owners_of(channel, address, org.id)
        messages.append(
            queue_email(
                org,
                to=org.notification_email,
                purpose="org_notification",
                template="org_notification",
                key=f"org:{org.id}:{channel}:{address}:{event.state_version}",
                event_id=event.id,
                event=event,
                who=", ".join(p.name for p in people) or "Someone not on record",
                shown=shown_address(address),
                channel_words=channel_words(channel),
                how=source_words(source),
                opted_out=event.to_status == Status.OPTED_OUT,
            )
        )
    return messages


def _emails_of(channel: str, address: str, org_id: int) -> list[str]:
    """The email addresses tied to the people whose records prove this phone number, in a
    stable order."""
    emails: list[str] = []
    for person in owners_of(channel, address, org_id, proven=True):
        emails.extend(
            e.address
            for e in person.emails
            if e.verified_by in _TIES_TO_PERSON
            and e.verified_at is not None
            and e.address not in emails
        )
    return emails


@dataclass(frozen=True)
class Destination:
    """Where a confirmation may go: a text to a number, or an email."""

    channel: Channel  # TEXT or EMAIL
    to: str


def _state(org_id: int, channel: str, address: str) -> ConsentState | None:
    return db.session.scalars(
        sa.select(ConsentState).where(
            org_is(ConsentState.organization_id, org_id),
            ConsentState.channel == channel,
            ConsentState.address == address,
        )
    ).one_or_none()


def _may_receive(state: ConsentState | None) -> bool:
    return not (state and (state.blocks_sending or state.carrier_block))


def confirmation_destinations(org: Organization, channel: str, address: str) -> list[Destination]:
    """Where a confirmation to opt (channel, address) back in may go, the address itself first.

    An email address: itself. A number: a text to itself (for calls, only when the number may
    get texts), then the emails on the records of the people who have the number, except
    those opted out of email or bounced. Never any other address.
    """
    channel = Channel(channel)
    if channel == Channel.EMAIL:
        return [Destination(Channel.EMAIL, address)]
    found = []
    if channel == Channel.TEXT or _may_receive(_state(org.id, Channel.TEXT, address)):
        found.append(Destination(Channel.TEXT, address))
    for email in _emails_of(channel, address, org.id):
        if _may_receive(_state(org.id, Channel.EMAIL, email)):
            found.append(Destination(Channel.EMAIL, email))
    return found


def confirmation_request(
    org: Organization,
    channel: str,
    address: str,
    *,
    state_version: int,
    event: ConsentEvent | None,
    send_to: str | None = None,
    language: str | None = None,
) -> list:
    """Send the person a signed link to confirm opting back in: by email for an email
    address (or when `send_to` names an email), else by text, at most one a day per address."""
    token = tokens.make("confirm", org.id, channel, address, state_version)
    url = link("/confirm/" + token)
    language = language or language_for(channel, address, org.id)
    day = utcnow().date().isoformat()  # UTC, as the outbox's created_at
    context = dict(
        confirm_url=url,
        shown=shown_address(address),
        channel_words=channel_words(channel),
    )
    event_id = event.id if event else None
    if channel == Channel.EMAIL or send_to:
        to = send_to or address
        return [
            queue_email(
                org,
                to=to,
                purpose="confirm_request",
                template="confirm_request",
                key=f"confirm:{org.id}:{channel}:{address}:{to}:{state_version}:{day}",
                language=language,
                event_id=event_id,
                **context,
            )
        ]
    return [
        queue_text(
            org,
            to=address,
            purpose="confirm_request",
            template="confirm_request",
            key=f"confirm:{org.id}:{channel}:{address}:{day}",
            language=language,
            event_id=event_id,
            **context,
        )
    ]
