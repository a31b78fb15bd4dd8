"""What a recipient does from a signed link, and from the public opt-back-in page.

Opening a link checks its signature, age and (for confirm and preferences) that the state it
was issued for has not moved since. Acting on it goes through the ledger with the token's id
and the words shown as evidence. The views in portal/links.py only parse, call and render.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time

import sqlalchemy as sa

from consent import ledger, notifications, purpose_choices, purposes, tokens
from consent.addresses import format_phone
from consent.extensions import db
from consent.i18n import gettext as _
from consent.ledger import Actor, Origin, Outcome
from consent.models import (
    Channel,
    ConsentState,
    Organization,
    OutboxMessage,
    Source,
    Status,
    utcnow,
)
from consent.tokens import LinkClaim, TokenError
from consent.words import channel_name, channel_words, shown_address

# A person can ask to opt back in only from these states: the public page opts no one in
# who never chose (that would let anyone text any number a link).
MAY_ASK_AGAIN = frozenset({Status.OPTED_OUT, Status.BOUNCED})
PUBLIC_ACTOR = "the person, on the public opt-back-in page"


@dataclass
class Link:
    """An opened signed link: what it claims, its organization and the state now."""

    claim: LinkClaim
    org: Organization
    state: ConsentState | None

    @property
    def channel(self) -> Channel:
        return Channel(self.claim.channel)

    @property
    def address(self) -> str:
        return self.claim.address

    @property
    def shown(self) -> str:
        return shown_address(self.address)

    @property
    def channel_words(self) -> str:
        return str(channel_words(self.channel))

    @property
    def texting_number(self) -> str:
        return format_phone(self.org.texting_number)

    @property
    def opted_out(self) -> bool:
        return bool(self.state and self.state.status == Status.OPTED_OUT)


def open_link(purpose: str, token: str) -> Link:
    """Check a token and load what it is about; raise TokenError ("bad", "expired", "spent").

    Confirm and preferences links are spent once the state they were issued for has changed.
    Unsubscribe links are not: opting out is always allowed, so an unsubscribe link in an
    older email keeps working until it expires (and a second click finds the address already
    opted out).
    """
    claim = tokens.load(purpose, token)
    org = db.session.get(Organization, claim.organization_id)
    if org is None or claim.channel not in {c.value for c in Channel}:
        raise TokenError("bad", "This link is not valid.")
    state = ledger.current(org, claim.channel, claim.address)
    if purpose != "unsubscribe":
        tokens.check_unspent(claim, state.version if state else 0)
    if purpose == "preferences":
        # The link also covers the cell numbers of the people at this email: any change of
        # their choices (or of which numbers they are) spends it too.
        if claim.extra.get("d") != notifications.preferences_digest(org.id, claim.address):
            raise tokens.spent()
    return Link(claim=claim, org=org, state=state)


def _recipient(link: Link) -> Actor:
    return Actor.recipient(f"the recipient at {link.shown}")


# --- confirm: opt back in -------------------------------------------------------------------


def confirm_words(link: Link) -> str:
    """The sentence the confirm page shows; kept as evidence with the opt-in."""
    return _(
        "Confirm that you want to receive %(what)s from %(org)s at %(address)s.",
        what=channel_words(link.channel),
        org=link.org.name,
        address=link.shown,
    )


def confirm_blocker(link: Link) -> str | None:
    """Why confirming cannot work now (a carrier block), else None."""
    check = ledger.check_opt_back_in(link.org, link.channel, link.address)
    return check.reason if check.code == "carrier_block" else None


def confirm(link: Link, *, words: str, origin: Origin) -> Outcome:
    """Opt the address back in: the person's own confirmation, with the words they saw."""
    return ledger.opt_in(
        link.org,
        link.channel,
        link.address,
        source=Source.EMAIL_LINK,
        actor=_recipient(link),
        evidence={"token_id": link.claim.token_id, "words": words, "link": "confirm"},
        origin=origin,
    )


# --- unsubscribe ----------------------------------------------------------------------------


def unsubscribe(link: Link, *, one_click: bool, origin: Origin) -> Outcome:
    """Opt the address out: `one_click` for an RFC 8058 POST from a mail client, else the
    button on the page. Already opted out: nothing changes, and that is fine."""
    return ledger.opt_out(
        link.org,
        link.channel,
        link.address,
        source=Source.ONE_CLICK if one_click else Source.EMAIL_LINK,
        actor=_recipient(link),
        evidence={
            "token_id": link.claim.token_id,
            "method": "List-Unsubscribe=One-Click" if one_click else "unsubscribe page button",
            "issued_for_version": link.claim.version,
        },
        origin=origin,
    )


# --- preferences: the text messages of the people at this email address --------------------


@dataclass
class CellNumber:
    """A cell number a preferences link covers, with its current choice."""

    number: str
    shown: str
    owners: list[str]
    status: str | None
    carrier_block: bool

    @property
    def receives_texts(self) -> bool:
        return self.status == Status.OPTED_IN


def cell_numbers(link: Link) -> list[CellNumber]:
    """The cell numbers of the contacts and students who have this email address."""
    found = (
        notifications.covered_cells(link.org.id, link.address)
        if link.channel == Channel.EMAIL
        else {}
    )
    if not found:
        return []
    states = {
        s.address: s
        for s in db.session.scalars(
            sa.select(ConsentState).where(
                ConsentState.organization_id == link.org.id,
                ConsentState.channel == Channel.TEXT,
                ConsentState.address.in_(list(found)),
            )
        )
    }
    numbers = []
    for number, owners in found.items():
        state = states.get(number)
        numbers.append(
            CellNumber(
                number=number,
                shown=shown_address(number),
                owners=owners,
                status=state.status if state else None,
                carrier_block=bool(state and state.carrier_block),
            )
        )
    return numbers


def opted_out_words(org: Organization) -> str:
    """Why "Yes" on a link does not turn texts back on for a number that opted out."""
    return _(
        "This number opted out of texts. Only the phone itself can opt back in, by texting "
        "START to %(number)s.",
        number=format_phone(org.texting_number),
    )


def yes_words() -> str:
    return _("Yes, send me text messages")


def no_words() -> str:
    return _("No, do not send me text messages")


@dataclass
class PreferencesResult:
    """What a choice did to each number."""

    wants_texts: bool
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def set_text_preference(link: Link, *, wants_texts: bool, origin: Origin) -> PreferencesResult:
    """Opt every cell number of the link in or out of texts, and confirm the choice by email
    to the person (the ledger tells the organization about each change)."""
    words = yes_words() if wants_texts else no_words()
    result = PreferencesResult(wants_texts=wants_texts)
    events = []
    for cell in cell_numbers(link):
        if wants_texts and cell.status == Status.OPTED_OUT:
            # A link in an email proves the mailbox, not the phone: only START lifts this.
            reason = (
                ledger.carrier_block_reason(link.org)
                if cell.carrier_block
                else opted_out_words(link.org)
            )
            result.refused.append((cell.shown, reason))
            continue
        outcome = ledger.change(
            link.org,
            Channel.TEXT,
            cell.number,
            Status.OPTED_IN if wants_texts else Status.OPTED_OUT,
            source=Source.EMAIL_LINK,
            actor=Actor.recipient(f"the recipient at {link.address}"),
            evidence={
                "token_id": link.claim.token_id,
                "words": words,
                "email": link.address,
                "link": "preferences",
            },
            origin=origin,
        )
        if outcome.refused:
            result.refused.append((cell.shown, outcome.reason or ""))
        elif outcome.changed:
            result.changed.append(cell.shown)
            events.append(outcome.event)
        else:
            result.unchanged.append(cell.shown)
    if events:
        notifications.queue_email(
            link.org,
            to=link.address,
            purpose="preferences_confirmation",
            template="preferences_changed",
            key="prefs:{}:{}:{}".format(
                link.org.id, link.address, "-".join(str(e.id) for e in events)
            ),
            language=notifications.language_for(Channel.EMAIL, link.address, link.org.id),
            event_id=events[0].id,
            numbers=result.changed,
            wants_texts=wants_texts,
            words=words,
        )
    return result


# --- preferences: the kinds of messages this email address gets -----------------------------


def email_purposes(link: Link, locale: str | None = None) -> list[purpose_choices.PurposeRow]:
    """The purposes table of the link's email address (its one column: email)."""
    if link.channel != Channel.EMAIL:
        return []
    org_purposes = purposes.of(link.org)
    cells = [(Channel.EMAIL, link.address)]
    table = purpose_choices.table_for(link.org, cells, {cells[0]: link.state}, locale, org_purposes)
    return purpose_choices.rows_for_address(
        link.org, [Channel.EMAIL], link.address, table, org_purposes, locale
    )


@dataclass
class NumberPurposes:
    """The purposes table of one cell number the link covers: columns texts and calls."""

    cell: CellNumber
    channels: list[Channel]
    rows: list[purpose_choices.PurposeRow]

    @property
    def channel_names(self) -> list[str]:
        return [str(channel_name(c)) for c in self.channels]


NUMBER_CHANNELS = (Channel.TEXT, Channel.VOICE)  # a covered number is a cell: it takes calls


def number_purposes(
    link: Link, numbers: list[CellNumber], locale: str | None = None
) -> list[NumberPurposes]:
    """The purposes tables of the cell numbers the link covers (texts and calls), in two
    queries whatever their count (their call states; the choices)."""
    if link.channel != Channel.EMAIL or not numbers:
        return []
    org_purposes = purposes.of(link.org)
    cells = [(c, n.number) for n in numbers for c in NUMBER_CHANNELS]
    states = {
        (s.channel, s.address): s
        for s in db.session.scalars(
            sa.select(ConsentState).where(
                ConsentState.organization_id == link.org.id,
                ConsentState.channel.in_(NUMBER_CHANNELS),
                ConsentState.address.in_([n.number for n in numbers]),
            )
        )
    }
    table = purpose_choices.table_for(link.org, cells, states, locale, org_purposes)
    return [
        NumberPurposes(
            cell=n,
            channels=list(NUMBER_CHANNELS),
            rows=purpose_choices.rows_for_address(
                link.org, NUMBER_CHANNELS, n.number, table, org_purposes, locale
            ),
        )
        for n in numbers
    ]


class UnknownPurposeChoice(LookupError):
    """Not a purpose of the link's organization, or not one this page offers."""


def set_email_purpose(
    link: Link,
    purpose_id: int,
    *,
    on: bool,
    origin: Origin,
    locale: str | None = None,
    channel: str | None = None,
    address: str | None = None,
) -> purpose_choices.PurposeResult:
    """Turn one purpose on or off for the link's email address (no channel given), or for a
    cell number the link covers on texts or calls: choices the link covers, so a change
    spends it. Only those addresses: the link proves the mailbox, and the numbers of the
    people who have it."""
    purpose = purposes.by_id(link.org, purpose_id)
    if purpose is None or link.channel != Channel.EMAIL:
        raise UnknownPurposeChoice(purpose_id)
    channel = Channel(channel) if channel else Channel.EMAIL
    if channel == Channel.EMAIL:
        if address not in (None, "", link.address):
            raise UnknownPurposeChoice(purpose_id)
        address = link.address
    elif channel not in NUMBER_CHANNELS or address not in notifications.covered_cells(
        link.org.id, link.address
    ):
        raise UnknownPurposeChoice(purpose_id)  # not a number this link covers
    return purpose_choices.change(
        link.org,
        channel,
        address,
        purpose,
        on,
        source=Source.EMAIL_LINK,
        actor=_recipient(link),
        origin=origin,
        evidence={
            "token_id": link.claim.token_id,
            "email": link.address,
            "link": "preferences",
            "control": purpose.name_en,
        },
        locale=locale,
    )


# --- the public opt-back-in page ------------------------------------------------------------


def request_from_public(
    org: Organization, channel: str, address: str, *, origin: Origin, language: str = "en"
) -> str:
    """A visitor asks to opt `address` (normalized) back in to `channel`. Returns a code for
    the log and tests; the page answers the same whatever it is, so it tells no one what is on
    record.

    A phone gets nothing from here: anyone can type any number, and a text to a number that
    opted out is not the visitor's to ask for. The page tells them to text START (texts) or to
    call the district (calls). An email address gets a confirmation link only when it is
    opted out or bounced and got no confirmation request today.

    The request is recorded with source `email_link`: it is the recipient's own request, and
    it completes through a signed link (the ledger's sources have no "public page" of their own).
    """
    channel = Channel(channel)
    if channel != Channel.EMAIL:
        return "phone_not_sent"
    state = ledger.current(org, channel, address)
    if state is None or state.status not in MAY_ASK_AGAIN:
        return "nothing_to_confirm"
    if asked_today(org, address):
        return "already_sent_today"
    outcome = ledger.request_opt_back_in(
        org,
        channel,
        address,
        actor=Actor.recipient(PUBLIC_ACTOR),
        source=Source.EMAIL_LINK,
        attested=False,
        origin=origin,
        evidence={"page": "/opt-back-in"},
        language=language,
    )
    return outcome.code


def asked_today(org: Organization, destination: str) -> bool:
    """Has a confirmation request gone to this email address or number today (UTC)?"""
    start = datetime.combine(utcnow().date(), time())
    return (
        db.session.scalar(
            sa.select(OutboxMessage.id)
            .where(
                OutboxMessage.organization_id == org.id,
                OutboxMessage.purpose == "confirm_request",
                OutboxMessage.to_address == destination,
                OutboxMessage.created_at >= start,
            )
            .limit(1)
        )
        is not None
    )
