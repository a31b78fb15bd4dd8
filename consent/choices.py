"""What a parent sees and changes in the portal: each address of a person, its status in
words, and a toggle that becomes the right ledger call.

A parent opts their own and their students' addresses in directly (the disclosure shown is the
evidence); opting another adult contact in only sends that contact a confirmation. Opting out
is always immediate. The core knows no `request`: the view passes the origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from flask_babel import get_locale

from consent import ledger, notifications, purpose_choices, purposes, verification
from consent.addresses import format_phone
from consent.extensions import db
from consent.i18n import gettext as _
from consent.ledger import Actor, Origin, Outcome
from consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    Contact,
    EmailAddress,
    Family,
    Organization,
    Phone,
    PhoneKind,
    PurposeState,
    Source,
    Status,
    Student,
    User,
)
from consent.status import waiting_since
from consent.words import (
    carrier_block_words,
    channel_name,
    local_time,
    org_words,
    shown_address,
    status_label,
)


def text_disclosure(org: Organization) -> str:
    """The words shown beside every text-message choice; kept on the event as evidence. They
    end with the district's texting terms and privacy policy when it has given them (carriers
    look for both); templates show the addresses as links."""
    words = _(
        "%(org)s sends text messages from %(number)s about %(about)s, %(often)s. "
        "Msg & data rates may apply. Reply STOP to opt out, HELP for help.",
        org=org.name,
        number=format_phone(org.texting_number),
        about=org_words(org.texts_about),
        often=org_words(org.message_frequency),
    )
    if org.terms_url:
        words += " " + _("Texting terms: %(url)s", url=org.terms_url)
    if org.privacy_url:
        words += " " + _("Privacy policy: %(url)s", url=org.privacy_url)
    return words


# Branches, not a dict of every translation: only the words shown are looked up (a page calls
# these for each address and channel).


def toggle_label(channel: str) -> str:
    channel = Channel(channel)
    if channel == Channel.TEXT:
        return _("Allow text messaging")
    if channel == Channel.VOICE:
        return _("Allow calls")
    return _("Allow email")


def kind_words(kind: str) -> str:
    kind = PhoneKind(kind)
    if kind == PhoneKind.CELL:
        return _("Cell")
    if kind == PhoneKind.HOME:
        return _("Home")
    return _("Work")


def status_words(channel: str, state: ConsentState | None) -> tuple[str, str]:
    """(css status key, words) for an address: the status in words as well as colour."""
    if state is not None and state.carrier_block:
        return "blocked", str(status_label(state.status, carrier_block=True))
    status = state.status if state is not None else Status.UNKNOWN
    if status == Status.BOUNCED:
        return "bounced", str(status_label(status))
    if status == Status.UNKNOWN:
        if channel == Channel.VOICE:
            return "unknown", _("No choice yet: calls allowed")
        if channel == Channel.EMAIL:
            return "unknown", _("No choice yet: email allowed")
        return "unknown", str(status_label(status))
    on = status == Status.OPTED_IN
    channel = Channel(channel)
    if channel == Channel.TEXT:
        words = _("Texts allowed") if on else _("Texts off")
    elif channel == Channel.VOICE:
        words = _("Calls allowed") if on else _("Calls off")
    else:
        words = _("Email allowed") if on else _("Email off")
    return status.value, words


def is_allowed(org: Organization, channel: str, state: ConsentState | None) -> bool:
    """Whether messages on this channel may go to the address now (the toggle's position)."""
    if state is None or state.status == Status.UNKNOWN:
        return not (channel == Channel.TEXT and org.text_requires_consent)
    return state.status == Status.OPTED_IN


@dataclass
class Toggle:
    """One switch: a channel of one address."""

    channel: Channel
    label: str
    allowed: bool
    status: str
    words: str
    blocked: bool
    waiting_since: object = None  # a confirmation asked for after the last change: when
    waiting_since_shown: object = ""  # that time in the district's zone, UTC on hover


@dataclass
class AddressRow:
    """One phone or email of a person, with its toggles and who else in the family has it."""

    target: str  # "phone-<id>" or "email-<id>": what a toggle form posts
    shown: str
    kind: str  # "Cell", "Home", "Work" or "Email"
    toggles: list[Toggle]
    shared_with: list[str] = field(default_factory=list)
    record_id: int = 0  # the Phone's or EmailAddress's id (edit, remove, confirm)
    verified: bool = True  # proven its owner's; until then its toggles cannot change consent
    # The message purposes of this address (rows), its channels as columns.
    purposes: list[purpose_choices.PurposeRow] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)

    @property
    def channel_names(self) -> list[str]:
        return [str(channel_name(c)) for c in self.channels]


def family_of(user: User) -> Family | None:
    """The family a parent may see, or None for anyone who is not a parent."""
    if user is None or not user.is_authenticated or user.is_admin or user.contact is None:
        return None
    return user.contact.family


def find_person(family: Family, kind: str, person_id: int) -> Contact | Student | None:
    """A contact or student of this family by id, else None (other families look absent)."""
    people = family.contacts if kind == "contact" else family.students
    return next((p for p in people if p.id == person_id), None)


def rows_for(org: Organization, person: Contact | Student) -> list[AddressRow]:
    """Every address of a person with its toggles: one query (the family's phones and emails
    with their owners' names; the person's consent states, waiting confirmations and purpose
    choices; the purposes' fingerprint), however big the family."""
    me = ("student" if isinstance(person, Student) else "contact", person.id)
    facts = _page_facts(org, person)
    addresses, states, waiting = facts.addresses, facts.states, facts.waiting
    phones = [a for a in addresses if a.what == "phone" and (a.owner_kind, a.owner_id) == me]
    emails = [a for a in addresses if a.what == "email" and (a.owner_kind, a.owner_id) == me]
    owners: dict[str, list[str]] = {}  # address -> the names of the others who have it
    seen: set[tuple[str, tuple[str, int]]] = set()
    for item in addresses:
        key = (item.owner_kind, item.owner_id)
        if key == me or (item.address, key) in seen:
            continue
        seen.add((item.address, key))
        owners.setdefault(item.address, []).append(f"{item.first_name} {item.last_name}".strip())
    rows = []
    for phone in phones:
        channels = phone_channels(phone)
        rows.append(
            AddressRow(
                target=f"phone-{phone.id}",
                shown=format_phone(phone.address),
                kind=kind_words(phone.kind),
                toggles=[
                    _toggle(org, c, states.get((c, phone.address)), waiting.get((c, phone.address)))
                    for c in channels
                ],
                shared_with=owners.get(phone.address, []),
                record_id=phone.id,
                verified=phone.at is not None,  # its verified_at (verification.is_verified)
                channels=channels,
            )
        )
    for email in emails:
        rows.append(
            AddressRow(
                target=f"email-{email.id}",
                shown=email.address,
                kind=_("Email"),
                toggles=[
                    _toggle(
                        org,
                        Channel.EMAIL,
                        states.get((Channel.EMAIL, email.address)),
                        waiting.get(("email", email.address)),
                    )
                ],
                shared_with=owners.get(email.address, []),
                record_id=email.id,
                verified=email.at is not None,
                channels=[Channel.EMAIL],
            )
        )
    own = [*(p.address for p in phones), *(e.address for e in emails)]
    _add_purposes(org, rows, states, facts.chosen, facts.purposes, own)
    return rows


def phone_channels(phone: Phone) -> list[Channel]:
    return [Channel.TEXT, Channel.VOICE] if phone.kind == PhoneKind.CELL else [Channel.VOICE]


def _add_purposes(org, rows: list[AddressRow], states, chosen, org_purposes, addresses) -> None:
    """Each row's purposes table."""
    if not rows:
        return
    locale = str(get_locale() or "en")
    cells = [(c, a) for row, a in zip(rows, addresses, strict=True) for c in row.channels]
    table = purpose_choices.table_for(org, cells, states, locale, org_purposes, chosen)
    for row, address in zip(rows, addresses, strict=True):
        row.purposes = purpose_choices.rows_for_address(
            org, row.channels, address, table, org_purposes, locale
        )


def _toggle(org, channel, state, waiting_since=None) -> Toggle:
    status, words = status_words(channel, state)
    return Toggle(
        channel=channel,
        label=toggle_label(channel),
        allowed=is_allowed(org, channel, state),
        status=status,
        words=words,
        blocked=bool(state and state.carrier_block),
        waiting_since=waiting_since,
        waiting_since_shown=local_time(waiting_since, org) if waiting_since else "",
    )


# --- the page's one statement -----------------------------------------------------------------
# Built once (each call would build, and key for the cache, the same statement again). One
# UNION ALL of rows of several kinds, told apart by `what`, in the columns (what, id, address,
# kind, status, carrier_block, at, purpose_id, owner_kind, owner_id, first_name, last_name):
# - "phone" / "email": the family's addresses with their owners (kind: the phone's kind, at:
#   verified_at), a join per kind of owner;
# - "state", "request", "purpose": the consent states of the person's addresses, the
#   confirmations asked for them (consent.status.waiting_since, oldest first) and their
#   per-purpose choices (kind: the channel, at: changed_at / occurred_at);
# - "purposes": one row, the fingerprint of the organization's purposes (purposes.kept).
# The person's addresses come from one common table expression (their phones and emails by
# contact or student id), so nothing waits for the family's rows to come back first. Each branch
# an IN or a join on an index (no OR, which SQLite answers with a scan); a phone number is never
# an email address, so the channels cannot mix up. Tuples, not entities: the page changes none.
# Only the first branch names its columns and types its NULLs (a UNION takes both from its
# first SELECT, and PostgreSQL gives a later branch's bare NULL the column's type): the
# statement stays under psycopg's 4,096 characters, the longest whose conversion to the
# server's placeholders it keeps, instead of converting it again on every page
# (tests/test_query_counts.py).
# The channels written into the statement ('text', 'voice', 'email'): constants, shorter so.
_CHANNELS = sa.bindparam(
    "channels", [c.value for c in Channel], expanding=True, literal_execute=True
)
_PERSON = {"contact_id": sa.bindparam("contact_id"), "student_id": sa.bindparam("student_id")}
_MINE = sa.union_all(
    *(
        sa.select(column.label("address")).where(getattr(model, owner) == _PERSON[owner])
        for model, column in ((Phone, Phone.number), (EmailAddress, EmailAddress.address))
        for owner in ("contact_id", "student_id")
    )
).cte("mine")
_PERSON_ADDRESSES = sa.select(_MINE.c.address)
_NULL = sa.literal_column("NULL")  # a named column: no label of its own
_TYPED_NULLS = {
    "status": sa.cast(sa.null(), ConsentState.__table__.c.status.type),
    "carrier_block": sa.cast(sa.null(), sa.Boolean),
    "at": sa.cast(sa.null(), sa.DateTime),
    "purpose_id": sa.cast(sa.null(), sa.Integer),
    "owner_kind": sa.cast(sa.null(), sa.String),
    "owner_id": sa.cast(sa.null(), sa.Integer),
    "first_name": sa.cast(sa.null(), sa.String),
    "last_name": sa.cast(sa.null(), sa.String),
}


def _branch(what: str, id_, address, kind=None, first=False, **columns) -> sa.Select:
    """One branch of the page's statement: its columns in order, NULL where it has none; the
    first branch's named and typed (see above)."""
    row = {"what": sa.literal_column(f"'{what}'", sa.String), "id": id_, "address": address}
    row["kind"] = kind
    row.update((name, columns.get(name)) for name in _TYPED_NULLS)
    if not first:
        return sa.select(*(_NULL if c is None else c for c in row.values())).set_label_style(
            sa.LABEL_STYLE_NONE  # no "AS anon_1" for a name said twice: the first branch names
        )
    row["kind"] = sa.type_coerce(sa.null() if kind is None else kind, sa.String)
    return sa.select(*((_TYPED_NULLS[n] if c is None else c).label(n) for n, c in row.items()))


def _family_branches():
    family = sa.bindparam("family_id")
    first = True
    for source, model, address, kind in (
        ("phone", Phone, Phone.number, Phone.kind),
        ("email", EmailAddress, EmailAddress.address, None),
    ):
        for owner_kind, owner, fk in (
            ("contact", Contact, model.contact_id),
            ("student", Student, model.student_id),
        ):
            yield _branch(
                source, model.id, address, kind, first=first,
                at=model.verified_at, owner_kind=sa.literal_column(f"'{owner_kind}'", sa.String),
                owner_id=owner.id, first_name=owner.first_name, last_name=owner.last_name,
            ).join(owner, owner.id == fk).where(owner.family_id == family)  # fmt: skip
            first = False


_ORG = sa.bindparam("org_id")
_PAGE = sa.union_all(
    *_family_branches(),
    _branch(
        "state", ConsentState.id, ConsentState.address, ConsentState.channel,
        status=ConsentState.status, carrier_block=ConsentState.carrier_block,
        at=ConsentState.changed_at,
    ).where(
        ConsentState.organization_id == _ORG,
        ConsentState.channel.in_(_CHANNELS),
        ConsentState.address.in_(_PERSON_ADDRESSES),
    ),
    _branch("request", ConsentEvent.id, ConsentEvent.address, ConsentEvent.channel,
            at=ConsentEvent.occurred_at).where(
        ConsentEvent.organization_id == _ORG,
        ConsentEvent.kind == "request",
        ConsentEvent.address.in_(_PERSON_ADDRESSES),
    ),
    _branch(
        "purpose", PurposeState.id, PurposeState.address, PurposeState.channel,
        status=PurposeState.status, purpose_id=PurposeState.purpose_id,
    ).where(
        PurposeState.organization_id == _ORG,
        PurposeState.channel.in_(_CHANNELS),
        PurposeState.address.in_(_PERSON_ADDRESSES),
    ),
    _branch("purposes", sa.literal_column("0"), purposes.fingerprint_of(_ORG).scalar_subquery()),
).order_by(sa.column("id"))  # fmt: skip


class _State(NamedTuple):
    """A consent state as the page reads it (the columns of ConsentState it shows)."""

    channel: Channel
    address: str
    status: Status
    carrier_block: bool
    changed_at: datetime


@dataclass
class _Facts:
    """What a person's page reads, from the page's one statement (see above)."""

    addresses: list  # the family's "phone" and "email" rows, each kind in id order
    states: dict  # {(Channel, address): state row}
    waiting: dict  # consent.status.pending_confirmations' {(channel, address): since}
    chosen: dict  # consent.purposes.choices' {(channel, address, purpose_id): Status}
    purposes: list  # the organization's purposes (purposes.kept)


def _page_facts(org, person: Contact | Student) -> _Facts:
    """The family's addresses, and the states, waiting confirmations and purpose choices of
    the person's own addresses, with the organization's purposes: one query."""
    is_student = isinstance(person, Student)
    parameters = {
        "org_id": org.id,
        "family_id": person.family_id,
        "contact_id": None if is_student else person.id,
        "student_id": person.id if is_student else None,
    }
    addresses, states, requests, choices, fingerprint = [], {}, [], [], None
    for row in db.session.execute(_PAGE, parameters):
        what = row.what
        if what in ("phone", "email"):
            addresses.append(row)
        elif what == "state":
            channel = Channel(row.kind)
            states[(channel, row.address)] = _State(
                channel, row.address, row.status, row.carrier_block, row.at
            )
        elif what == "request":
            requests.append((row.kind, row.address, row.at))
        elif what == "purpose":
            choices.append((row.kind, row.address, row.purpose_id, row.status))
        else:
            fingerprint = row.address
    me = ("student" if is_student else "contact", person.id)
    cells = [
        (channel, a.address)
        for a in addresses
        if (a.owner_kind, a.owner_id) == me
        for channel in ((Channel.TEXT, Channel.VOICE) if a.what == "phone" else (Channel.EMAIL,))
    ]
    return _Facts(
        addresses,
        states,
        waiting_since(requests, states),
        purposes.choices_of(choices, cells),
        purposes.kept(org, fingerprint),
    )


# --- changing ---------------------------------------------------------------------------------


@dataclass
class Result:
    """What a toggle did, as a sentence for the page."""

    ok: bool
    message: str
    outcome: Outcome | None = None


class NotFound(LookupError):
    """The target is not an address of this person (or not one for this channel)."""


def resolve(person: Contact | Student, target: str, channel: str) -> str:
    """The normalized address a toggle names, checked against the person and the channel."""
    try:
        kind, _sep, raw_id = target.partition("-")
        target_id = int(raw_id)
        channel = Channel(channel)
    except ValueError:
        raise NotFound(target) from None
    if kind == "phone" and channel in (Channel.TEXT, Channel.VOICE):
        phone = next((p for p in person.phones if p.id == target_id), None)
        if phone is not None and (channel == Channel.VOICE or phone.kind == PhoneKind.CELL):
            return phone.number
    if kind == "email" and channel == Channel.EMAIL:
        email = next((e for e in person.emails if e.id == target_id), None)
        if email is not None:
            return email.address
    raise NotFound(target)


def opts_in_directly(user: User, address: str) -> bool:
    """A parent opts in their own and their students' addresses; other adults confirm."""
    family = user.contact.family
    mine = [user.contact, *family.students]
    return any(
        address in {p.number for p in person.phones} | {e.address for e in person.emails}
        for person in mine
    )


def set_choice(
    org: Organization,
    user: User,
    person: Contact | Student,
    target: str,
    channel: str,
    allow: bool,
    origin: Origin,
) -> Result:
    """Turn one channel of one of the person's addresses on or off, through the ledger."""
    channel = Channel(channel)
    address = resolve(person, target, channel)
    not_proven = verification.unverified_reason(person, target)
    if not_proven:  # only the address's owner may speak for it: proven first
        return Result(False, not_proven)
    shown = shown_address(address)
    actor = Actor.for_user(user)
    evidence = {"page": "account", "person": person.name, "control": toggle_label(channel)}
    if not allow:
        outcome = ledger.opt_out(
            org,
            channel,
            address,
            source=Source.PORTAL,
            actor=actor,
            origin=origin,
            evidence=evidence,
        )
        if not outcome.ok:
            return Result(False, outcome.reason or "", outcome)
        return Result(True, _off_words(channel, shown), outcome)
    language = getattr(person, "language", None) or "en"
    send_to = _email_for_calls(org, person, address) if channel == Channel.VOICE else None
    if opts_in_directly(user, address):
        if channel == Channel.TEXT:
            evidence["disclosure"] = text_disclosure(org)
        # Read and decided under the address's lock: an opt-out is lifted only by the address
        # itself (it gets its own confirmation); anything else is opted in.
        outcome = ledger.opt_in_or_confirm(
            org,
            channel,
            address,
            source=Source.PORTAL,
            actor=actor,
            origin=origin,
            evidence=evidence,
            language=language,
            send_to=send_to,
        )
        if not outcome.ok:
            return Result(False, _blocked_or(org, outcome), outcome)
        if outcome.code == "confirmation_sent":
            return Result(True, _sent_words(outcome), outcome)
        return Result(True, _on_words(channel, shown), outcome)
    if channel == Channel.VOICE and send_to is None:
        return Result(
            False,
            _(
                "%(name)s has no email address, so we cannot ask them to confirm. "
                "They can ask the school to turn calls back on.",
                name=person.name,
            ),
        )
    outcome = ledger.request_opt_back_in(
        org,
        channel,
        address,
        actor=actor,
        source=Source.PORTAL,
        attested=True,
        origin=origin,
        evidence=evidence,
        send_to=send_to,
        language=language,
    )
    if not outcome.ok:
        return Result(False, _blocked_or(org, outcome), outcome)
    if outcome.code == "already_opted_in":
        return Result(True, _on_words(channel, shown), outcome)
    return Result(
        True,
        _(
            "We sent %(name)s a message to confirm. Nothing changes until they confirm.",
            name=person.name,
        ),
        outcome,
    )


def _email_for_calls(org, person, number: str) -> str | None:
    """The person's email a calls confirmation goes to (not one opted out or bounced)."""
    allowed = {
        d.to
        for d in notifications.confirmation_destinations(org, Channel.VOICE, number)
        if d.channel == Channel.EMAIL
    }
    return next((e.address for e in person.emails if e.address in allowed), None)


def _sent_words(outcome: Outcome) -> str:
    sent_to = outcome.event.evidence["sent_to"]
    return _(
        "That choice was opted out, so we sent a confirmation to %(address)s. It changes only "
        "when the confirmation is answered.",
        address=sent_to if "@" in sent_to else format_phone(sent_to),
    )


def _blocked_or(org, outcome: Outcome) -> str:
    if outcome.code == "carrier_block":
        return carrier_block_words(org)
    return outcome.reason or _("That change is not allowed.")


def _off_words(channel, shown) -> str:
    return {
        Channel.TEXT: _("Text messages to %(address)s are off.", address=shown),
        Channel.VOICE: _("Calls to %(address)s are off.", address=shown),
        Channel.EMAIL: _("Email to %(address)s is off.", address=shown),
    }[channel]


def _on_words(channel, shown) -> str:
    return {
        Channel.TEXT: _("Text messages to %(address)s are allowed.", address=shown),
        Channel.VOICE: _("Calls to %(address)s are allowed.", address=shown),
        Channel.EMAIL: _("Email to %(address)s is allowed.", address=shown),
    }[channel]


def set_purpose(
    org: Organization,
    user: User,
    person: Contact | Student,
    target: str,
    channel: str,
    purpose_id: int,
    allow: bool,
    origin: Origin,
) -> Result:
    """Turn one message purpose on or off for one channel of one of the person's addresses,
    through the ledger (consent.purpose_choices.change). It never moves the channel-wide
    choice: turning a purpose on where the channel is off leaves the channel off."""
    channel = Channel(channel)
    address = resolve(person, target, channel)
    purpose = purposes.by_id(org, purpose_id)
    if purpose is None:
        raise NotFound(str(purpose_id))
    not_proven = verification.unverified_reason(person, target)
    if not_proven:
        return Result(False, not_proven)
    done = purpose_choices.change(
        org,
        channel,
        address,
        purpose,
        allow,
        source=Source.PORTAL,
        actor=Actor.for_user(user),
        origin=origin,
        evidence={"page": "account", "person": person.name, "control": purpose.name_en},
        locale=str(get_locale() or "en"),
    )
    return Result(done.ok, done.message, done.outcome)
