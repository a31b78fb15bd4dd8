"""Each address's consent per channel, in the words and colours every page uses.

Pages show a status as a coloured badge with its words (never colour alone): green "Opted in",
red "Opted out", red "Blocked by STOP reply", amber "Bounced", grey "No choice yet".
Statuses of many addresses cost one query per channel kind, never one per address.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from consent.database import is_one_of
from consent.extensions import db
from consent.models import Channel, ConsentEvent, ConsentState, Contact, Status, Student
from consent.words import channel_name, shown_address, status_label

PHONE_CHANNELS = (Channel.TEXT, Channel.VOICE)
EMAIL_CHANNELS = (Channel.EMAIL,)

# key -> (words, css class); the css classes are those of static/css/site.css.
SHOWN = {
    "opted_in": (status_label(Status.OPTED_IN), "status-opted_in"),
    "opted_out": (status_label(Status.OPTED_OUT), "status-opted_out"),
    "blocked": (status_label(Status.OPTED_OUT, carrier_block=True), "status-blocked"),
    "bounced": (status_label(Status.BOUNCED), "status-bounced"),
    "unknown": (status_label(None), "status-unknown"),
}


@dataclass(frozen=True)
class Shown:
    """One address's consent on one channel, as a page shows it."""

    channel: Channel
    address: str
    state: ConsentState | None

    @property
    def key(self) -> str:
        return status_key(self.state)

    @property
    def words(self) -> str:
        return str(SHOWN[self.key][0])

    @property
    def css(self) -> str:
        return SHOWN[self.key][1]

    @property
    def channel_name(self) -> str:
        return str(channel_name(self.channel))

    @property
    def carrier_block(self) -> bool:
        return bool(self.state and self.state.carrier_block)

    @property
    def is_on(self) -> bool:
        """Whether the staff toggle reads "on" (opted in; anything else is "off")."""
        return self.key == "opted_in"


def status_key(state: ConsentState | None) -> str:
    """opted_in, opted_out, blocked, bounced or unknown."""
    if state is None:
        return "unknown"
    if state.carrier_block:
        return "blocked"
    if state.status == Status.OPTED_IN:
        return "opted_in"
    if state.status == Status.OPTED_OUT:
        return "opted_out"
    if state.status == Status.BOUNCED:
        return "bounced"
    return "unknown"


def words_for(key: str) -> str:
    """The words of a status key ("Opted out")."""
    return str(SHOWN[key][0])


class StatusBook:
    """The states of a set of addresses, read in one query per kind of address."""

    def __init__(self, org_id: int, phones: Iterable[str] = (), emails: Iterable[str] = ()):
        self.org_id = org_id
        self.states: dict[tuple[str, str], ConsentState] = {}
        self._read(PHONE_CHANNELS, set(phones))
        self._read(EMAIL_CHANNELS, set(emails))

    def _read(self, channels, addresses: set[str]) -> None:
        if not addresses:
            return
        wanted = sorted(addresses)
        for start in range(0, len(wanted), 1000):
            rows = db.session.scalars(
                sa.select(ConsentState).where(
                    ConsentState.organization_id == self.org_id,
                    ConsentState.channel.in_(channels),
                    is_one_of(ConsentState.address, wanted[start : start + 1000]),
                )
            )
            for state in rows:
                self.states[(state.channel, state.address)] = state

    def shown(self, channel: str, address: str) -> Shown:
        channel = Channel(channel)
        return Shown(channel, address, self.states.get((channel, address)))

    @classmethod
    def for_people(cls, org_id: int, people: Iterable[Contact | Student]) -> StatusBook:
        """The states of every phone and email of these people (phones and emails loaded)."""
        phones: set[str] = set()
        emails: set[str] = set()
        for person in people:
            phones.update(p.number for p in person.phones)
            emails.update(e.address for e in person.emails)
        return cls(org_id, phones, emails)


@dataclass(frozen=True)
class AddressRow:
    """One phone or email of a person, with its status on each of its channels."""

    kind: str  # "cell", "home", "work" or "email"
    address: str
    shown_address: str
    statuses: tuple[Shown, ...]

    @property
    def is_phone(self) -> bool:
        return self.kind != "email"


def address_rows(person: Contact | Student, book: StatusBook) -> list[AddressRow]:
    """Every address of a person, phones first, with its status per channel."""
    rows = [
        AddressRow(
            phone.kind.value,
            phone.number,
            shown_address(phone.number),
            tuple(book.shown(channel, phone.number) for channel in PHONE_CHANNELS),
        )
        for phone in person.phones
    ]
    rows += [
        AddressRow(
            "email",
            email.address,
            email.address,
            tuple(book.shown(channel, email.address) for channel in EMAIL_CHANNELS),
        )
        for email in person.emails
    ]
    return rows


# Built once (a page asks on every view): the addresses go in as an expanding parameter.
_REQUESTS = (
    sa.select(ConsentEvent.channel, ConsentEvent.address, ConsentEvent.occurred_at)
    .where(
        ConsentEvent.organization_id == sa.bindparam("org_id"),
        ConsentEvent.kind == "request",
        ConsentEvent.address.in_(sa.bindparam("addresses", expanding=True)),
    )
    .order_by(ConsentEvent.id)
)


def pending_confirmations(
    org_id: int, states: dict[tuple[str, str], ConsentState | None], addresses: Iterable[str]
) -> dict[tuple[str, str], object]:
    """{(channel value, address): since} for each confirmation asked for (a "request" event)
    after the state's last change, the earliest such request: "Waiting for confirmation since
    …". One query for all the addresses."""
    wanted = sorted(set(addresses))
    rows = []
    for start in range(0, len(wanted), 1000):
        rows += db.session.execute(
            _REQUESTS, {"org_id": org_id, "addresses": wanted[start : start + 1000]}
        )
    return waiting_since(rows, states)


def waiting_since(
    requests: Iterable[tuple[str, str, object]], states: dict
) -> dict[tuple[str, str], object]:
    """pending_confirmations' answer from the (channel, address, occurred_at) of the requests,
    oldest first, however they were read."""
    pending: dict[tuple[str, str], object] = {}
    for channel, address, when in requests:
        state = states.get((Channel(channel), address))
        if state is not None and state.changed_at and when < state.changed_at:
            continue
        pending.setdefault((Channel(channel).value, address), when)
    return pending
