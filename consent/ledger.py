"""The ledger: the only code that changes consent.

Every change, whatever asked for it (portal, enrollment, admin, import, SMS keyword, carrier,
signed link), comes through here. In one transaction it locks the (organization, channel,
address) state, checks the organization's rule for the source, appends a ConsentEvent with its
evidence, moves the state and its version, and queues the messages the change calls for.
It flushes; the caller commits (and the outbox delivers after the commit). The rules, in words:
docs/rules.md; how changes reach this module: docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from consent import ledger_bulk, notifications, webhooks
from consent.addresses import sort_fields
from consent.database import begin_write, is_sqlite, org_is
from consent.extensions import db
from consent.ledger_bulk import BulkRow
from consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    ImportBatch,
    MessagePurpose,
    Organization,
    PurposeState,
    Source,
    Status,
    User,
    utcnow,
)
from consent.words import carrier_block_reason

OPT_OUT_SOURCES = frozenset(
    {
        Source.ENROLLMENT,
        Source.PORTAL,
        Source.ADMIN,
        Source.IMPORT,
        Source.SMS_KEYWORD,
        Source.SMS_REPLY,
        Source.CARRIER,
        Source.EMAIL_LINK,
        Source.ONE_CLICK,
        Source.VOICE_KEYPRESS,
        Source.API,
        Source.COMPLAINT,
    }
)
# An opt-out staff recorded (by hand or by an import) may be undone; one that came from the
# person (STOP, the portal, a link, a complaint, the carrier) never is (docs/rules.md "Undo").
REVERTIBLE_SOURCES = frozenset({Source.ADMIN, Source.IMPORT})
REVERT_DAYS = 30
OPT_IN_SOURCES = frozenset(
    {Source.ENROLLMENT, Source.PORTAL, Source.SMS_KEYWORD, Source.EMAIL_LINK, Source.STAFF_ENTRY}
)


@dataclass(frozen=True)
class Actor:
    """Who made a change: a logged-in user, the recipient themself, or the system."""

    kind: str  # "user", "recipient" or "system"
    user_id: int | None = None
    label: str = ""

    @classmethod
    def for_user(cls, user: User) -> Actor:
        role = "parent" if user.role == "parent" else f"{user.role} admin"
        return cls("user", user.id, f"{user.name or user.email} ({role})")

    @classmethod
    def recipient(cls, label: str = "the recipient") -> Actor:
        return cls("recipient", None, label)

    @classmethod
    def system(cls, label: str = "Consent Desk") -> Actor:
        return cls("system", None, label)

    @classmethod
    def for_api_key(cls, key_id: int | None, name: str) -> Actor:
        """A system calling the API with one of the organization's keys (None: an API_KEYS
        key from the environment)."""
        kind = f"api_key:{key_id}" if key_id is not None else "api_key:env"
        return cls(kind, None, f"API key “{name}”")

    @property
    def key(self) -> str:
        return f"user:{self.user_id}" if self.kind == "user" else self.kind


@dataclass(frozen=True)
class Origin:
    """Where a request came from: kept on the event as evidence."""

    ip: str | None = None
    user_agent: str | None = None

    def as_params(self) -> dict:
        """As a background job keeps it (JSON), for the job's events: Origin.of_params."""
        return {"ip": self.ip, "user_agent": (self.user_agent or "")[:500]}

    @classmethod
    def of_params(cls, params: dict) -> Origin:
        return cls(ip=params.get("ip"), user_agent=params.get("user_agent"))


@dataclass
class Outcome:
    """What the ledger did. `reason` is a sentence a page can show when it refused."""

    ok: bool
    changed: bool
    code: str
    reason: str | None = None
    state: ConsentState | None = None
    event: ConsentEvent | None = None
    messages: list = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return not self.ok


class BulkOutcome(dict):
    """What `opt_out_many` did: {address: "imported" | "already"}. Refused, it is empty and
    carries `code` and `reason` as a single change's Outcome does."""

    def __init__(self, results=(), *, ok: bool = True, code: str = "done", reason=None):
        super().__init__(results)
        self.ok = ok
        self.code = code
        self.reason = reason

    @property
    def refused(self) -> bool:
        return not self.ok


def _refused(code: str, reason: str, state: ConsentState | None = None) -> Outcome:
    return Outcome(ok=False, changed=False, code=code, reason=reason, state=state)


def _unchanged(state: ConsentState | None, code: str = "unchanged") -> Outcome:
    return Outcome(ok=True, changed=False, code=code, state=state)


def _event_values(
    org_id: int,
    channel: Channel,
    address: str | None,
    *,
    kind: str,
    from_status: Status | None,
    to_status: Status | None,
    carrier_block: bool,
    source: Source,
    actor: Actor,
    origin: Origin,
    occurred_at: datetime,
    note: str | None,
    evidence: dict,
    version: int,
) -> dict:
    """The columns of one ConsentEvent: every event, single or bulk, is built here."""
    return {
        "organization_id": org_id,
        "channel": channel,
        "address": address,
        "kind": kind,
        "from_status": from_status,
        "to_status": to_status,
        "carrier_block": carrier_block,
        "source": source,
        "actor": actor.key,
        "actor_user_id": actor.user_id,
        "actor_label": actor.label[:200],
        "occurred_at": occurred_at,
        "ip": origin.ip,
        "user_agent": (origin.user_agent or "")[:500] or None,
        "note": note,
        "evidence": evidence,
        "state_version": version,
    }


def _state_values(
    status: Status,
    carrier_block: bool,
    source: Source,
    actor: Actor,
    now: datetime,
    note: str | None,
    version: int,
    event_id: int | None,
) -> dict:
    """What a change moves on the ConsentState, single or bulk."""
    return {
        "status": status,
        "carrier_block": carrier_block,
        "source": source,
        "changed_at": now,
        "changed_by": actor.label[:200] or actor.key,
        "changed_by_user_id": actor.user_id,
        "note": note,
        "version": version,
        "last_event_id": event_id,
    }


# --- reading --------------------------------------------------------------------------------


def current(org: Organization | int, channel: str, address: str) -> ConsentState | None:
    """The current state of one address, or None when there is no choice on record."""
    org_id = org if isinstance(org, int) else org.id
    return db.session.scalars(
        sa.select(ConsentState).where(
            org_is(ConsentState.organization_id, org_id),
            ConsentState.channel == channel,
            ConsentState.address == address,
        )
    ).one_or_none()


def _lock(org_id: int, channel: str, address: str) -> ConsentState | None:
    begin_write()
    stmt = (
        sa.select(ConsentState)
        .where(
            org_is(ConsentState.organization_id, org_id),
            ConsentState.channel == channel,
            ConsentState.address == address,
        )
        .execution_options(populate_existing=True)
    )
    if not is_sqlite():
        stmt = stmt.with_for_update()
    return db.session.scalars(stmt).one_or_none()


# --- the rules ------------------------------------------------------------------------------


def check(
    org: Organization,
    state: ConsentState | None,
    channel: str,
    to_status: Status,
    source: Source,
) -> Outcome | None:
    """The rule for this source and target; an Outcome when refused or nothing to do, else None."""
    status = state.status if state else None
    blocked = bool(state and state.carrier_block)
    if to_status == Status.OPTED_OUT:
        if source not in OPT_OUT_SOURCES:
            return _refused("bad_source", f"An opt-out cannot come from {source.value}.", state)
        if source == Source.ADMIN and not org.admin_may_record_opt_out:
            return _refused(
                "admin_opt_out_off",
                "This organization does not let admins record opt-outs on someone's behalf.",
                state,
            )
        return None
    if to_status == Status.OPTED_IN:
        if source == Source.ADMIN:
            return _refused(
                "admin_cannot_opt_in",
                "An admin cannot opt someone in. Use Opt Back In: the person gets a "
                "confirmation, and only their confirmation opts them in.",
                state,
            )
        if source not in OPT_IN_SOURCES:
            return _refused("bad_source", f"An opt-in cannot come from {source.value}.", state)
        if source == Source.SMS_KEYWORD:
            if not org.start_opts_in:
                return _refused(
                    "start_off", "This organization does not opt numbers in by START.", state
                )
            return None
        if blocked:
            return _refused("carrier_block", carrier_block_reason(org), state)
        if source == Source.STAFF_ENTRY:
            if not org.staff_cell_starts_opted_in:
                return _unchanged(state, "staff_entry_off")
            if status not in (None, Status.UNKNOWN):
                return _unchanged(state, "kept")  # staff entry never overrides a choice
            if channel != Channel.TEXT:
                return _refused("bad_channel", "Staff entry applies to text only.", state)
        return None
    if to_status == Status.BOUNCED:
        if source not in (Source.BOUNCE,):
            return _refused("bad_source", "Only a delivery failure marks a bounce.", state)
        if status == Status.OPTED_OUT:
            return _unchanged(state, "opted_out_stands")
        return None
    if to_status == Status.UNKNOWN:
        if source != Source.ADMIN:
            return _refused("bad_source", "Only an admin clears a bounce.", state)
        if status != Status.BOUNCED:
            return _refused("not_bounced", "This address is not marked bounced.", state)
        return None
    return _refused("bad_target", f"Unknown target {to_status}.", state)


def check_revert(
    org: Organization, event: ConsentEvent | None, state: ConsentState | None, now: datetime
) -> Outcome | None:
    """May this event be undone? An Outcome saying why not, else None.

    Only an opt-out recorded by an admin or an import, of this organization, within
    REVERT_DAYS, never one that set a carrier block, and only while it is still the address's
    last change (nothing changed the address since). `state` is the state the event moved:
    the ConsentState, or for a per-purpose opt-out its PurposeState (`state_of_event`)."""
    if event is None or event.organization_id != org.id:
        return _refused("not_found", "There is no such change on record.", state)
    if event.kind != "change" or event.to_status != Status.OPTED_OUT:
        return _refused("not_an_opt_out", "Only an opt-out can be undone.", state)
    if event.source not in REVERTIBLE_SOURCES:
        return _refused(
            "from_the_person",
            "This opt-out came from the person themself; only they can change it.",
            state,
        )
    if event.carrier_block:
        return _refused("carrier_block", carrier_block_reason(org), state)
    occurred = event.occurred_at.replace(tzinfo=None)
    if now.replace(tzinfo=None) - occurred > timedelta(days=REVERT_DAYS):
        return _refused(
            "too_old",
            f"An opt-out can be undone within {REVERT_DAYS} days; this one is older.",
            state,
        )
    if state is None or state.last_event_id != event.id or state.version != event.state_version:
        return _refused(
            "changed_since",
            "The address changed after this opt-out, so undoing it would overwrite a later "
            "choice. Nothing was changed.",
            state,
        )
    return None


def revert(
    org: Organization,
    event_id: int,
    *,
    actor: Actor,
    note: str,
    origin: Origin | None = None,
    evidence: dict | None = None,
) -> Outcome:
    """Undo a mistaken opt-out recorded by an admin or an import: append a "revert" event
    that puts the address back to the status it had before (the reverted event's
    from_status; none on record reads as "no choice yet"). Sends nothing: no "you are
    subscribed" message, no notification. Refused (rules in `check_revert`) unless the event
    is still the address's last change. A per-purpose opt-out (an admin's, on the contact
    page) is undone the same way: its purpose's state goes back, the channel stays as it is.
    The caller checks who may (the organization team).
    """
    event = db.session.get(ConsentEvent, event_id)
    if event is None or event.organization_id != org.id:
        return _refused("not_found", "There is no such change on record.")
    state = state_of_event(org, event, lock=True)
    now = utcnow()
    refusal = check_revert(org, event, state, now)
    if refusal is not None:
        return refusal
    to_status = event.from_status or Status.UNKNOWN
    previous = db.session.scalars(
        sa.select(ConsentEvent)
        .where(
            org_is(ConsentEvent.organization_id, org.id),
            ConsentEvent.channel == event.channel,
            ConsentEvent.address == event.address,
            _same_purpose(event),
            ConsentEvent.kind.in_(("change", "revert")),
            ConsentEvent.id < event.id,
        )
        .order_by(ConsentEvent.id.desc())
        .limit(1)
    ).first()
    source = previous.source if previous is not None else Source.ADMIN
    version = (state.version or 0) + 1
    moved = _state_values(to_status, False, source, actor, now, note, version, None)
    if event.purpose_id is not None:  # a PurposeState keeps fewer columns
        moved = {k: moved[k] for k in ("status", "source", "changed_at", "changed_by", "version")}
    reverted = _append_and_move(
        org,
        state,
        _event_values(
            org.id,
            event.channel,
            event.address,
            kind="revert",
            from_status=state.status,
            to_status=to_status,
            carrier_block=False,
            source=Source.ADMIN,
            actor=actor,
            origin=origin or Origin(),
            occurred_at=now,
            note=note,
            evidence={**(evidence or {}), "reverts": event.id, **_purpose_evidence(event)},
            version=version,
        )
        | {"purpose_id": event.purpose_id},
        moved,
    )
    return Outcome(ok=True, changed=True, code="reverted", state=state, event=reverted)


def _same_purpose(event: ConsentEvent):
    """The events of the same fold as `event`: channel-wide ones, or its purpose's."""
    if event.purpose_id is None:
        return ConsentEvent.purpose_id.is_(None)
    return ConsentEvent.purpose_id == event.purpose_id


def _purpose_evidence(event: ConsentEvent) -> dict:
    key = (event.evidence or {}).get("purpose")
    return {"purpose": key} if event.purpose_id is not None and key else {}


def state_of_event(org: Organization, event: ConsentEvent, *, lock: bool = False):
    """The state an event moved, as it is now: the address's ConsentState, or for an event
    that names a purpose that purpose's PurposeState (None: no state on record). With `lock`,
    locked for a change (the way `change` and `change_purpose` lock)."""
    if event.purpose_id is None:
        if lock:
            return _lock(org.id, event.channel, event.address)
        return current(org, event.channel, event.address)
    stmt = sa.select(PurposeState).where(
        org_is(PurposeState.organization_id, org.id),
        PurposeState.channel == event.channel,
        PurposeState.address == event.address,
        PurposeState.purpose_id == event.purpose_id,
    )
    if lock:
        begin_write()
        stmt = stmt.execution_options(populate_existing=True)
        if not is_sqlite():
            stmt = stmt.with_for_update()
    return db.session.scalars(stmt).one_or_none()


def batch_events(org: Organization, batch_id: int) -> list[ConsentEvent]:
    """The opt-outs an import batch recorded (each names the batch in its evidence)."""
    batch = db.session.get(ImportBatch, batch_id)
    if batch is None or batch.organization_id != org.id:
        return []
    candidates = db.session.scalars(
        sa.select(ConsentEvent)
        .where(
            org_is(ConsentEvent.organization_id, org.id),
            ConsentEvent.source == Source.IMPORT,
            ConsentEvent.kind == "change",
            ConsentEvent.occurred_at >= batch.created_at - timedelta(minutes=1),
        )
        .order_by(ConsentEvent.id)
    )
    return [e for e in candidates if (e.evidence or {}).get("batch") == batch_id]


@dataclass
class BatchRevert:
    """What undoing an import batch did: how many rows were put back, and each refusal."""

    reverted: int = 0
    refused: list = field(default_factory=list)  # [(address, reason)]


def revert_batch(
    org: Organization,
    batch_id: int,
    *,
    actor: Actor,
    note: str,
    origin: Origin | None = None,
) -> BatchRevert:
    """Undo every opt-out of an import batch that may still be undone (`revert` per row); the
    rows that changed since are left as they are and reported."""
    result = BatchRevert()
    for event in batch_events(org, batch_id):
        outcome = revert(
            org, event.id, actor=actor, note=note, origin=origin, evidence={"batch": batch_id}
        )
        if outcome.ok:
            result.reverted += 1
        else:
            result.refused.append((event.address, outcome.reason))
    return result


# --- changing -------------------------------------------------------------------------------


def change(
    org: Organization,
    channel: str,
    address: str,
    to_status: Status,
    *,
    source: Source,
    actor: Actor,
    evidence: dict | None = None,
    note: str | None = None,
    origin: Origin | None = None,
    carrier_block: bool | None = None,
    confirm: bool = True,
    notify_org: bool | None = None,
) -> Outcome:
    """Change the consent of one address, if the organization's rules allow it.

    `address` must already be normalized (consent.addresses). `carrier_block=True` marks an
    opt-out that came from a STOP reply or the carrier; START clears it. `confirm=False` skips
    the recipient's confirmation (imports of old lists). Returns an Outcome; never raises for
    a refusal.
    """
    channel = Channel(channel)
    to_status = Status(to_status)
    source = Source(source)
    state = _lock(org.id, channel, address)
    refusal = check(org, state, channel, to_status, source)
    if refusal is not None:
        return refusal

    from_status = state.status if state else None
    old_block = bool(state and state.carrier_block)
    if to_status == Status.OPTED_OUT:
        new_block = old_block or bool(carrier_block)
    elif to_status == Status.OPTED_IN:
        new_block = False  # only START (sms_keyword) gets here with a block on
    else:
        new_block = old_block

    if to_status == Status.UNKNOWN:
        to_status = _status_before_bounce(org.id, channel, address)
    if from_status == to_status and new_block == old_block:
        return _unchanged(state)

    now = utcnow()
    if state is None:
        state, retry = _insert_state(org, channel, address, to_status, source, actor, now, note)
        if retry:  # another transaction created it first: start over under its lock
            return change(
                org,
                channel,
                address,
                to_status,
                source=source,
                actor=actor,
                evidence=evidence,
                note=note,
                origin=origin,
                carrier_block=carrier_block,
                confirm=confirm,
                notify_org=notify_org,
            )
    origin = origin or Origin()
    version = (state.version or 0) + 1
    event = _append_and_move(
        org,
        state,
        _event_values(
            org.id,
            channel,
            address,
            kind="change",
            from_status=from_status,
            to_status=to_status,
            carrier_block=new_block,
            source=source,
            actor=actor,
            origin=origin,
            occurred_at=now,
            note=note,
            evidence=evidence or {},
            version=version,
        ),
        _state_values(to_status, new_block, source, actor, now, note, version, None),
    )
    outcome = Outcome(ok=True, changed=True, code="changed", state=state, event=event)
    outcome.messages = notifications.after_change(
        org, state, event, confirm=confirm, notify_org=notify_org
    )
    return outcome


def _append_and_move(
    org: Organization, state: ConsentState, event_values: dict, moved: dict
) -> ConsentEvent:
    """Append the event, move the state to it and queue its webhooks: how a change, an undo
    and a per-purpose choice (`state` a PurposeState) are all written."""
    event = ConsentEvent(**event_values)
    db.session.add(event)
    db.session.flush()
    for name, value in (moved | {"last_event_id": event.id}).items():
        setattr(state, name, value)
    db.session.flush()
    webhooks.queue_for_event(org.id, event)
    return event


def _insert_state(org, channel, address, status, source, actor, now, note):
    sort_key, digits = sort_fields(channel, address)
    state = ConsentState(
        organization_id=org.id,
        channel=channel,
        address=address,
        sort_key=sort_key,
        digits=digits,
        status=status,
        carrier_block=False,
        source=source,
        changed_at=now,
        changed_by=actor.label[:200] or actor.key,
        version=0,
    )
    try:
        with db.session.begin_nested():
            db.session.add(state)
    except IntegrityError:
        return None, True
    return state, False


def _status_before_bounce(org_id: int, channel: str, address: str) -> Status:
    last_bounce = db.session.scalars(
        sa.select(ConsentEvent)
        .where(
            org_is(ConsentEvent.organization_id, org_id),
            ConsentEvent.channel == channel,
            ConsentEvent.address == address,
            ConsentEvent.to_status == Status.BOUNCED,
        )
        .order_by(ConsentEvent.id.desc())
        .limit(1)
    ).first()
    before = last_bounce.from_status if last_bounce else None
    return before if before not in (None, Status.BOUNCED) else Status.UNKNOWN


def opt_out(org, channel, address, **kwargs) -> Outcome:
    """Opt an address out of a channel: always allowed from an opt-out source, at once."""
    return change(org, channel, address, Status.OPTED_OUT, **kwargs)


def opt_in(org, channel, address, **kwargs) -> Outcome:
    """Opt an address in, when the source may (never an admin; never past a carrier block)."""
    return change(org, channel, address, Status.OPTED_IN, **kwargs)


def mark_bounced(org, channel, address, **kwargs) -> Outcome:
    """Mark an address bounced after a delivery failure (an opt-out stands over it)."""
    kwargs.setdefault("source", Source.BOUNCE)
    kwargs.setdefault("actor", Actor.system("delivery callback"))
    return change(org, channel, address, Status.BOUNCED, **kwargs)


def clear_bounce(org, channel, address, **kwargs) -> Outcome:
    """An admin clears a bounce: the address goes back to what it was before."""
    kwargs.setdefault("source", Source.ADMIN)
    return change(org, channel, address, Status.UNKNOWN, **kwargs)


def record_staff_entry(org, number: str, *, actor: Actor, evidence=None, origin=None) -> Outcome:
    """A cell number entered by staff: opted in (source staff_entry) when the rule is on and
    no choice is on record; otherwise nothing changes."""
    return change(
        org,
        Channel.TEXT,
        number,
        Status.OPTED_IN,
        source=Source.STAFF_ENTRY,
        actor=actor,
        evidence=evidence,
        origin=origin,
    )


def check_opt_back_in(org: Organization, channel: str, address: str) -> Outcome:
    """May this address be sent a confirmation to opt back in? Refuses a carrier block."""
    state = current(org, channel, address)
    if state and state.carrier_block:
        return _refused("carrier_block", carrier_block_reason(org), state)
    if state and state.status == Status.OPTED_IN:
        return _unchanged(state, "already_opted_in")
    return Outcome(ok=True, changed=False, code="may_confirm", state=state)


def request_opt_back_in(
    org: Organization,
    channel: str,
    address: str,
    *,
    actor: Actor,
    source: Source,
    attested: bool,
    note: str | None = None,
    origin: Origin | None = None,
    evidence: dict | None = None,
    send_to: str | None = None,
    language: str = "en",
) -> Outcome:
    """Record that someone asked to opt this address back in, and send the person a
    confirmation. The state does not move: only the person's confirmation opts them in.

    The confirmation goes to the address itself or, when `send_to` names one, to an email on
    the record of a person who has this address (notifications.confirmation_destinations);
    never to another address, nor to one that is itself opted out or bounced. The request
    event records where it went. An admin must attest that the person asked (`attested=True`).
    """
    channel = Channel(channel)
    source = Source(source)
    if source == Source.ADMIN and not attested:
        return _refused(
            "not_attested",
            "Tick “This person asked me to opt them back in” to send the confirmation.",
        )
    state = _lock(org.id, channel, address)
    if state and state.carrier_block:
        return _refused("carrier_block", carrier_block_reason(org), state)
    if state and state.status == Status.OPTED_IN:
        return _unchanged(state, "already_opted_in")
    destinations = notifications.confirmation_destinations(org, channel, address)
    if send_to is not None:
        destination = next(
            (d for d in destinations if d.channel == Channel.EMAIL and d.to == send_to), None
        )
        if destination is None:
            return _refused(
                "not_their_address",
                "A confirmation goes only to the address itself, or to an email on the "
                "record of the person who has it (and not opted out of email).",
                state,
            )
    elif destinations:
        destination = destinations[0]
    else:
        return _refused(
            "no_way_to_confirm",
            "There is no way to reach this person for a confirmation: their number cannot get "
            "texts and they have no email on record that can get one.",
            state,
        )
    origin = origin or Origin()
    status = state.status if state else None
    event = ConsentEvent(
        **_event_values(
            org.id,
            channel,
            address,
            kind="request",
            from_status=status,
            to_status=status,
            carrier_block=False,
            source=source,
            actor=actor,
            origin=origin,
            occurred_at=utcnow(),
            note=note,
            evidence={
                **(evidence or {}),
                "attested": attested,
                "sent_to": destination.to,
                "sent_by": destination.channel.value,
            },
            version=state.version if state else 0,
        )
    )
    db.session.add(event)
    db.session.flush()
    messages = notifications.confirmation_request(
        org,
        channel,
        address,
        state_version=state.version if state else 0,
        event=event,
        send_to=destination.to if destination.channel == Channel.EMAIL else None,
        language=language,
    )
    return Outcome(
        ok=True,
        changed=False,
        code="confirmation_sent",
        state=state,
        event=event,
        messages=messages,
    )


def opt_in_or_confirm(
    org: Organization,
    channel: str,
    address: str,
    *,
    source: Source,
    actor: Actor,
    evidence: dict | None = None,
    origin: Origin | None = None,
    language: str = "en",
    send_to: str | None = None,
) -> Outcome:
    """A "Yes" from someone the address has not proven to be its owner (a form, a parent).

    An address with no choice (or opted in, or bounced) is opted in, the words shown as
    evidence. An opted-out one is never opted in here: it gets its own confirmation and stays
    opted out until it confirms (code "confirmation_sent"); a carrier-blocked one gets nothing
    (code "carrier_block": only START from the phone lifts it).
    """
    state = _lock(org.id, Channel(channel), address)
    if state is not None and state.status == Status.OPTED_OUT:
        if state.carrier_block:
            return _refused("carrier_block", carrier_block_reason(org), state)
        return request_opt_back_in(
            org,
            channel,
            address,
            actor=actor,
            source=source,
            attested=False,
            evidence=evidence,
            origin=origin,
            language=language,
            send_to=send_to,
        )
    return opt_in(
        org, channel, address, source=source, actor=actor, evidence=evidence, origin=origin
    )


# --- many at once (imports) -----------------------------------------------------------------


def opt_out_many(
    org: Organization,
    channel: str,
    rows: Iterable[BulkRow],
    *,
    source: Source,
    actor: Actor,
    origin: Origin | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> BulkOutcome:
    """Opt out many addresses of one channel in one transaction, a few statements per call.

    Returns a BulkOutcome, {address: "imported" | "already"}; a refusal is returned, never
    raised. Same rules and events as `change`, without the per-row round trips (the engine is
    consent/ledger_bulk.py), and no messages. Callers pass chunks (an import:
    imports.CHUNK) and commit between them. `meanwhile`: work (touching neither the session
    nor these rows) that PostgreSQL's COPY of new addresses may run in a thread while it
    waits for the server; it is run at most once, and done by the time this returns.
    """
    channel = Channel(channel)
    source = Source(source)
    rows = list({row.address: row for row in rows}.values())
    if not rows:
        return BulkOutcome()
    refusal = check(org, None, channel, Status.OPTED_OUT, source)
    if refusal is not None:
        return BulkOutcome(ok=False, code=refusal.code, reason=refusal.reason)
    now = utcnow()
    write = ledger_bulk.BulkWrite(
        org.id,
        channel,
        shared_event=_event_values(
            org.id,
            channel,
            None,
            kind="change",
            from_status=None,
            to_status=Status.OPTED_OUT,
            carrier_block=False,
            source=source,
            actor=actor,
            origin=origin or Origin(),
            occurred_at=now,
            note=None,
            evidence={},
            version=1,
        ),
        shared_state=_state_values(Status.OPTED_OUT, False, source, actor, now, None, 1, None),
    )
    results = ledger_bulk.opt_out_rows(write, rows, meanwhile)
    webhooks.queue_for_addresses(
        org.id, channel, [a for a, r in results.items() if r == "imported"], Status.OPTED_OUT
    )
    return BulkOutcome(results)


def record_staff_entries(
    org: Organization,
    rows: Iterable[BulkRow],
    *,
    actor: Actor,
    origin: Origin | None = None,
) -> dict[str, str]:
    """Many cell numbers entered by staff (a roster import) at once: the rule and the events of
    `record_staff_entry`, in a few statements per call. Returns {number: outcome code}.

    A number with no consent state gets its state (opted in, source staff_entry, version 1) and
    its one event, as `change` would write them; such an opt-in calls for no message. Every
    other number (one with a state already, or one another transaction created meanwhile)
    goes through `record_staff_entry` itself.
    """
    rows = list({row.address: row for row in rows}.values())
    if not rows:
        return {}
    if not org.staff_cell_starts_opted_in:
        return dict.fromkeys((row.address for row in rows), "staff_entry_off")
    now = utcnow()
    write = ledger_bulk.BulkWrite(
        org.id,
        Channel.TEXT,
        shared_event=_event_values(
            org.id,
            Channel.TEXT,
            None,
            kind="change",
            from_status=None,
            to_status=Status.OPTED_IN,
            carrier_block=False,
            source=Source.STAFF_ENTRY,
            actor=actor,
            origin=origin or Origin(),
            occurred_at=now,
            note=None,
            evidence={},
            version=1,
        ),
        shared_state=_state_values(
            Status.OPTED_IN, False, Source.STAFF_ENTRY, actor, now, None, 1, None
        ),
    )
    created = ledger_bulk.create_new_states(write, rows)
    webhooks.queue_for_addresses(org.id, Channel.TEXT, sorted(created), Status.OPTED_IN)
    result = dict.fromkeys(created, "changed")
    for row in rows:
        if row.address not in result:
            outcome = record_staff_entry(
                org, row.address, actor=actor, evidence=row.evidence, origin=origin
            )
            result[row.address] = outcome.code
    return result


# --- purposes -------------------------------------------------------------------------------

PURPOSE_SOURCES = frozenset(
    {Source.ENROLLMENT, Source.PORTAL, Source.ADMIN, Source.EMAIL_LINK, Source.SMS_REPLY}
)
PARENT_SOURCES = frozenset({Source.ENROLLMENT, Source.PORTAL, Source.EMAIL_LINK})
# A text in words ("stop sending the lunch menu") turns a purpose off, never on.
OPT_OUT_ONLY_SOURCES = frozenset({Source.SMS_REPLY})


def current_purpose(org_id: int, channel: str, address: str, purpose_id: int):
    """The per-purpose choice of one address, or None (the channel-wide state decides)."""
    return db.session.scalars(
        sa.select(PurposeState).where(
            org_is(PurposeState.organization_id, org_id),
            PurposeState.channel == channel,
            PurposeState.address == address,
            PurposeState.purpose_id == purpose_id,
        )
    ).one_or_none()


def check_purpose(org: Organization, purpose: MessagePurpose, channel, to_status, source):
    """The rule for a per-purpose choice; an Outcome when refused, else None. The rules of a
    channel-wide change apply (an admin records an opt-out when allowed, never an opt-in),
    and a purpose that parents may not turn off on the channel is not turned off by them."""
    if purpose.organization_id != org.id:
        return _refused("bad_purpose", "This purpose belongs to another organization.")
    if source not in PURPOSE_SOURCES or (
        source in OPT_OUT_ONLY_SOURCES and to_status != Status.OPTED_OUT
    ):
        return _refused("bad_source", f"A purpose choice cannot come from {source.value}.")
    if to_status == Status.OPTED_OUT:
        if not purpose.may_turn_off(channel):
            return _refused("always_sent", "Parents may not turn off these messages.")
        if source == Source.ADMIN and not org.admin_may_record_opt_out:
            return _refused(
                "admin_opt_out_off",
                "This organization does not let admins record opt-outs on someone's behalf.",
            )
        return None
    if to_status == Status.OPTED_IN:
        if source == Source.ADMIN:
            return _refused(
                "admin_cannot_opt_in", "An admin cannot opt someone in to these messages."
            )
        return None
    return _refused("bad_target", "A purpose choice is opted in or opted out.")


def change_purpose(
    org: Organization,
    channel: str,
    address: str,
    purpose: MessagePurpose,
    to_status: Status,
    *,
    source: Source,
    actor: Actor,
    evidence: dict | None = None,
    note: str | None = None,
    origin: Origin | None = None,
) -> Outcome:
    """Choose one purpose on one channel for one (normalized) address: an event that names the
    purpose and the fold of it into that purpose's state. The channel-wide state is not moved:
    a purpose "yes" never lifts a channel "no" (consent.eligibility reads both)."""
    channel = Channel(channel)
    to_status = Status(to_status)
    source = Source(source)
    refusal = check_purpose(org, purpose, channel, to_status, source)
    if refusal is not None:
        return refusal
    begin_write()
    stmt = (
        sa.select(PurposeState)
        .where(
            org_is(PurposeState.organization_id, org.id),
            PurposeState.channel == channel,
            PurposeState.address == address,
            PurposeState.purpose_id == purpose.id,
        )
        .execution_options(populate_existing=True)
    )
    if not is_sqlite():
        stmt = stmt.with_for_update()
    state = db.session.scalars(stmt).one_or_none()
    from_status = state.status if state else None
    if from_status == to_status:
        return Outcome(ok=True, changed=False, code="unchanged")
    now = utcnow()
    label = actor.label[:200] or actor.key
    if state is None:
        state = PurposeState(
            organization_id=org.id,
            purpose_id=purpose.id,
            channel=channel,
            address=address,
            status=to_status,
            source=source,
            changed_at=now,
            changed_by=label,
            version=0,
        )
        try:
            with db.session.begin_nested():
                db.session.add(state)
        except IntegrityError:  # another transaction chose first: start over under its lock
            return change_purpose(
                org,
                channel,
                address,
                purpose,
                to_status,
                source=source,
                actor=actor,
                evidence=evidence,
                note=note,
                origin=origin,
            )
    version = (state.version or 0) + 1
    values = _event_values(
        org.id,
        channel,
        address,
        kind="change",
        from_status=from_status,
        to_status=to_status,
        carrier_block=False,
        source=source,
        actor=actor,
        origin=origin or Origin(),
        occurred_at=now,
        note=note,
        evidence={"purpose": purpose.key, **(evidence or {})},
        version=version,
    )
    moved = {
        "status": to_status,
        "source": source,
        "changed_at": now,
        "changed_by": label,
        "version": version,
    }
    # The same door as a channel change: the event, the state moved, its webhooks queued.
    event = _append_and_move(org, state, values | {"purpose_id": purpose.id}, moved)
    return Outcome(ok=True, changed=True, code="changed", event=event)
