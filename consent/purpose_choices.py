"""Message purposes as people see and change them: each address × purpose × channel with its
status in words ("Sent", "Off", "Always sent", "Emergency still reaches you"), for the portal,
the preferences page and the admin's contact page; and a parent's or an admin's change of one
cell, through consent.ledger.change_purpose (docs/purposes.md).

What a cell says is what consent.eligibility.decide_for answers for it: a purpose "yes" never
lifts a channel "no", and the words say when the channel is what keeps a message away.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from consent import eligibility, ledger, purposes
from consent.i18n import gettext as _
from consent.ledger import Actor, Origin, Outcome
from consent.models import Channel, ConsentState, MessagePurpose, Organization, Source, Status
from consent.words import channel_words, shown_address

PORTAL_CHANNELS = (Channel.TEXT, Channel.VOICE, Channel.EMAIL)


@dataclass(frozen=True)
class PurposeCell:
    """One purpose on one channel of one address."""

    purpose: MessagePurpose
    channel: Channel
    address: str
    key: str  # "sent", "always", "reaches", "off", "channel_off": the css and tests read it
    words: str
    may_turn_off: bool  # False: "Always sent", nobody turns it off
    chosen_off: bool  # the purpose itself is turned off (a toggle turns it back on)

    @property
    def is_sent(self) -> bool:
        return self.key in ("sent", "always", "reaches")


@dataclass(frozen=True)
class PurposeRow:
    """One purpose across the channels of one address (a row of the table)."""

    purpose: MessagePurpose
    name: str
    cells: tuple[PurposeCell, ...]


def channel_off_words(channel: str, status: str | None) -> str:
    """Why a purpose is not sent when the whole channel keeps it away."""
    if status == Status.BOUNCED:
        return _("Off: this address cannot be reached")
    # Branches, not a dict of every translation: only the words shown are looked up.
    channel = Channel(channel)
    if status is None or status == Status.UNKNOWN:
        if channel == Channel.TEXT:
            return _("Off until texts are turned on")
        if channel == Channel.VOICE:
            return _("Off until calls are turned on")
        return _("Off until email is turned on")
    if channel == Channel.TEXT:
        return _("Off: all texts are off")
    if channel == Channel.VOICE:
        return _("Off: all calls are off")
    return _("Off: all email is off")


def cell_for(
    org: Organization,
    purpose: MessagePurpose,
    channel: str,
    address: str,
    state: ConsentState | None,
    chosen: Status | None,
    locale: str | None = None,
    for_staff: bool = False,
) -> PurposeCell:
    """The cell of one purpose, channel and address: its status decided as eligibility does."""
    channel = Channel(channel)
    status = state.status if state is not None else None
    blocked = bool(state is not None and state.carrier_block)
    reason = eligibility.decide_for(org, purpose, channel, status, blocked, chosen)
    may_turn_off = purpose.may_turn_off(channel)
    chosen_off = chosen == Status.OPTED_OUT and may_turn_off
    if reason == "ok" and status == Status.OPTED_OUT:
        key = "reaches"
        name = purpose.name(locale)
        if for_staff:
            words = _("%(purpose)s still reaches this address", purpose=name)
        else:
            words = _("%(purpose)s still reaches you", purpose=name)
    elif reason == "ok":
        key, words = ("sent", _("Sent")) if may_turn_off else ("always", _("Always sent"))
    elif chosen_off and reason == "opted_out" and status != Status.OPTED_OUT:
        key, words = "off", _("Off")
    else:
        key, words = "channel_off", channel_off_words(channel, status)
    return PurposeCell(purpose, channel, address, key, words, may_turn_off, chosen_off)


def table_for(
    org: Organization,
    cells: Iterable[tuple[str, str]],
    states: dict,
    locale: str | None = None,
    org_purposes: list[MessagePurpose] | None = None,
    chosen: dict | None = None,
    for_staff: bool = False,
) -> dict[tuple[str, str], dict[int, PurposeCell]]:
    """{(channel, address): {purpose_id: cell}} for these (channel, address) cells; `states`
    is {(channel, address): ConsentState} as the pages read it. Two queries at most."""
    cells = [(Channel(c), a) for c, a in cells]
    org_purposes = purposes.of(org) if org_purposes is None else org_purposes
    chosen = purposes.choices(org, cells) if chosen is None else chosen
    table: dict[tuple[str, str], dict[int, PurposeCell]] = {}
    for channel, address in cells:
        state = states.get((channel, address))
        table[(channel.value, address)] = {
            p.id: cell_for(
                org,
                p,
                channel,
                address,
                state,
                chosen.get((channel.value, address, p.id)),
                locale,
                for_staff,
            )
            for p in org_purposes
        }
    return table


def rows_for_address(
    org: Organization,
    channels: Iterable[str],
    address: str,
    table: dict,
    org_purposes: list[MessagePurpose],
    locale: str | None = None,
) -> list[PurposeRow]:
    """The rows (one per purpose) of one address's table, its channels as columns."""
    channels = [Channel(c) for c in channels]
    return [
        PurposeRow(
            purpose=p,
            name=p.name(locale),
            cells=tuple(table[(c.value, address)][p.id] for c in channels),
        )
        for p in org_purposes
    ]


# --- changing -------------------------------------------------------------------------------


@dataclass
class PurposeResult:
    ok: bool
    message: str
    outcome: Outcome | None = None


def change_words(
    purpose: MessagePurpose, channel: str, address: str, on: bool, locale: str | None = None
) -> str:
    values = {
        "purpose": purpose.name(locale),
        "channel": channel_words(channel),
        "address": shown_address(address),
    }
    if on:
        return _("%(purpose)s %(channel)s to %(address)s: on.", **values)
    return _("%(purpose)s %(channel)s to %(address)s: off.", **values)


def still_off_words(channel: str) -> str:
    """After a purpose is turned on for an address whose whole channel is off."""
    return {
        Channel.TEXT: _(
            "Texts stay off for this address: turning on one kind of message never turns "
            "texts back on."
        ),
        Channel.VOICE: _(
            "Calls stay off for this address: turning on one kind of message never turns "
            "calls back on."
        ),
        Channel.EMAIL: _(
            "Email stays off for this address: turning on one kind of message never turns "
            "email back on."
        ),
    }[Channel(channel)]


def change(
    org: Organization,
    channel: str,
    address: str,
    purpose: MessagePurpose,
    on: bool,
    *,
    source: Source,
    actor: Actor,
    origin: Origin,
    evidence: dict | None = None,
    note: str | None = None,
    locale: str | None = None,
) -> PurposeResult:
    """Turn one purpose on or off for one address on one channel (the ledger's rules decide
    who may), and say what it did in words."""
    outcome = ledger.change_purpose(
        org,
        channel,
        address,
        purpose,
        Status.OPTED_IN if on else Status.OPTED_OUT,
        source=source,
        actor=actor,
        evidence=evidence,
        note=note,
        origin=origin,
    )
    if outcome.refused:
        return PurposeResult(False, outcome.reason or "", outcome)
    if not outcome.changed:
        return PurposeResult(True, _("Nothing changed: that was already the choice."), outcome)
    message = change_words(purpose, channel, address, on, locale)
    state = ledger.current(org, channel, address)
    if on and state is not None and state.status in (Status.OPTED_OUT, Status.BOUNCED):
        message += " " + still_off_words(channel)
    return PurposeResult(True, message, outcome)
