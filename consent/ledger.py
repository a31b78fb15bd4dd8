"""The ledger: the only code that changes consent.

Every change, whatever asked for it (portal, enrollment, admin, import, SMS keyword, carrier,
signed link), comes through here. In one transaction it locks the (organization, channel,
address) state, checks the organization's rule for the source, appends a ConsentEvent with its
evidence, moves the state and its version, and queues the messages the change calls for.
It flushes; the caller commits (and the outbox delivers after the commit).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from consent import notifications
from consent.addresses import format_phone, phone_digits
from consent.database import begin_write, is_sqlite, org_is, pg_array
from consent.extensions import db
from consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    Organization,
    Source,
    Status,
    User,
    utcnow,
)

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
    }
)
OPT_IN_SOURCES = frozenset(
    {Source.ENROLLMENT, Source.PORTAL, Source.SMS_KEYWORD, Source.EMAIL_LINK, Source.STAFF_ENTRY}
)
# Sources whose opt-outs the organization hears about by email (seed 001).
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

    @property
    def key(self) -> str:
        return f"user:{self.user_id}" if self.kind == "user" else self.kind


@dataclass(frozen=True)
class Origin:
    """Where a request came from: kept on the event as evidence."""

    ip: str | None = None
    user_agent: str | None = None


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


def _refused(code: str, reason: str, state: ConsentState | None = None) -> Outcome:
    return Outcome(ok=False, changed=False, code=code, reason=reason, state=state)


def _unchanged(state: ConsentState | None, code: str = "unchanged") -> Outcome:
    return Outcome(ok=True, changed=False, code=code, state=state)


CHANNEL_WORDS = {Channel.TEXT: "text messages", Channel.VOICE: "calls", Channel.EMAIL: "email"}


def carrier_block_reason(org: Organization) -> str:
    """The words shown wherever a STOP reply blocks an opt-in."""
    from flask_babel import gettext

    return gettext(
        "This number replied STOP to our texts, so the carrier blocks them. Only the person "
        "can lift that, by texting START to %(number)s.",
        number=format_phone(org.texting_number),
    )


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


def _sort_fields(channel: str, address: str) -> tuple[str, str | None]:
    if channel == Channel.EMAIL:
        return address, None
    digits = address.lstrip("+")
    try:
        national = phone_digits(address)
    except Exception:  # a stored number that phonenumbers cannot parse: search by all digits
        national = digits
    return digits.rjust(15, "0"), national


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
    event = ConsentEvent(
        organization_id=org.id,
        channel=channel,
        address=address,
        kind="change",
        from_status=from_status,
        to_status=to_status,
        carrier_block=new_block,
        source=source,
        actor=actor.key,
        actor_user_id=actor.user_id,
        actor_label=actor.label[:200],
        occurred_at=now,
        ip=origin.ip,
        user_agent=(origin.user_agent or "")[:500] or None,
        note=note,
        evidence=evidence or {},
        state_version=version,
    )
    db.session.add(event)
    db.session.flush()
    state.status = to_status
    state.carrier_block = new_block
    state.source = source
    state.changed_at = now
    state.changed_by = actor.label[:200] or actor.key
    state.changed_by_user_id = actor.user_id
    state.note = note
    state.version = version
    state.last_event_id = event.id
    db.session.flush()
    outcome = Outcome(ok=True, changed=True, code="changed", state=state, event=event)
    outcome.messages = notifications.after_change(
        org, state, event, confirm=confirm, notify_org=notify_org
    )
    return outcome


def _insert_state(org, channel, address, status, source, actor, now, note):
    sort_key, digits = _sort_fields(channel, address)
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
        organization_id=org.id,
        channel=channel,
        address=address,
        kind="request",
        from_status=status,
        to_status=status,
        carrier_block=False,
        source=source,
        actor=actor.key,
        actor_user_id=actor.user_id,
        actor_label=actor.label[:200],
        occurred_at=utcnow(),
        ip=origin.ip,
        user_agent=(origin.user_agent or "")[:500] or None,
        note=note,
        evidence={
            **(evidence or {}),
            "attested": attested,
            "sent_to": destination.to,
            "sent_by": destination.channel.value,
        },
        state_version=state.version if state else 0,
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
        )
    return opt_in(
        org, channel, address, source=source, actor=actor, evidence=evidence, origin=origin
    )


# --- many at once (imports) -----------------------------------------------------------------


@dataclass
class BulkRow:
    address: str
    evidence: dict
    note: str | None = None


def opt_out_many(
    org: Organization,
    channel: str,
    rows: Iterable[BulkRow],
    *,
    source: Source,
    actor: Actor,
    origin: Origin | None = None,
) -> dict[str, str]:
    """Opt out many addresses of one channel in one transaction, a few statements per call.

    Returns {address: "imported" | "already"}. Same rules and events as `change`, without the
    per-row round trips. Callers pass chunks (an import: optout_import.CHUNK) and commit
    between them.

    Addresses the organization has never seen (nearly every row of an import) are created with
    their event in one step: state version 1, `last_event_id` set, no second write of the row.
    Known addresses are locked, and those not already opted out get an event and an update.
    """
    channel = Channel(channel)
    source = Source(source)
    rows = list({row.address: row for row in rows}.values())
    if not rows:
        return {}
    refusal = check(org, None, channel, Status.OPTED_OUT, source)
    if refusal is not None:
        raise ValueError(refusal.reason)
    begin_write()
    write = _BulkWrite(org.id, channel, source, actor, origin or Origin(), utcnow())
    states = _lock_many(org.id, channel, [row.address for row in rows])
    result: dict[str, str] = {}
    new_rows = [row for row in rows if row.address not in states]
    if new_rows:
        created = _create_many(write, new_rows)
        result.update(dict.fromkeys(created, "imported"))
        # PostgreSQL: another transaction created some of them meanwhile; they are known now.
        raced = [row.address for row in new_rows if row.address not in created]
        if raced:
            states.update(_lock_many(org.id, channel, raced))
    changed_rows = []
    for row in rows:
        if row.address in result:
            continue
        state = states[row.address]
        if state.status == Status.OPTED_OUT:
            result[row.address] = "already"
        else:
            result[row.address] = "imported"
            changed_rows.append((row, state))
    if changed_rows:
        _change_many(write, changed_rows)
    return result


@dataclass(frozen=True)
class _BulkWrite:
    """What every row of one opt_out_many call shares: who, how, when."""

    org_id: int
    channel: Channel
    source: Source
    actor: Actor
    origin: Origin
    now: datetime

    @property
    def label(self) -> str:
        return self.actor.label[:200] or self.actor.key

    def event(self, row: BulkRow, from_status, carrier_block: bool, version: int) -> dict:
        return {
            "organization_id": self.org_id,
            "channel": self.channel,
            "address": row.address,
            "kind": "change",
            "from_status": from_status,
            "to_status": Status.OPTED_OUT,
            "carrier_block": carrier_block,
            "source": self.source,
            "actor": self.actor.key,
            "actor_user_id": self.actor.user_id,
            "actor_label": self.actor.label[:200],
            "occurred_at": self.now,
            "ip": self.origin.ip,
            "user_agent": (self.origin.user_agent or "")[:500] or None,
            "note": row.note,
            "evidence": row.evidence,
            "state_version": version,
        }

    def state(self, row: BulkRow, carrier_block: bool, version: int, event_id: int) -> dict:
        return {
            "status": Status.OPTED_OUT,
            "carrier_block": carrier_block,
            "source": self.source,
            "changed_at": self.now,
            "changed_by": self.label,
            "changed_by_user_id": self.actor.user_id,
            "note": row.note,
            "version": version,
            "last_event_id": event_id,
        }


def _change_many(write: _BulkWrite, changed_rows: list[tuple[BulkRow, sa.Row]]) -> None:
    """Known addresses, locked, not yet opted out: one event each, then the states move."""
    # Core statements, not ORM ones: the ORM's per-row bookkeeping costs more than the database.
    events_table = ConsentEvent.__table__
    events = [
        write.event(row, state.status, bool(state.carrier_block), state.version + 1)
        for row, state in changed_rows
    ]
    event_ids = (
        db.session.execute(
            sa.insert(events_table).returning(events_table.c.id, sort_by_parameter_order=True),
            events,
        )
        .scalars()
        .all()
    )
    updates = [
        {"state_id": state.id}
        | write.state(row, bool(state.carrier_block), state.version + 1, event_id)
        for (row, state), event_id in zip(changed_rows, event_ids, strict=True)
    ]
    states_table = ConsentState.__table__
    db.session.execute(
        sa.update(states_table)
        .where(states_table.c.id == sa.bindparam("state_id"))
        .values({name: sa.bindparam(name) for name in updates[0] if name != "state_id"}),
        updates,
    )


def _create_many(write: _BulkWrite, rows: list[BulkRow]) -> set[str]:
    """Create the states of addresses not seen before, each with its first event (version 1).

    Returns the addresses created. SQLite: the transaction holds the write lock, so all are;
    the event ids are the next rowids, and both inserts go through the driver's executemany
    (values converted once by the columns' own types). PostgreSQL: event ids are taken from the
    sequence first, in the caller's order; then one statement inserts the states (ON CONFLICT
    DO NOTHING) and the events of the rows that went in; its foreign keys are checked at the
    end of the statement.
    """
    if is_sqlite():
        return _create_many_sqlite(write, rows)
    return _create_many_postgresql(write, rows)


def _sqlite_insert_many(
    cursor, table: sa.Table, shared: dict, varying: tuple[str, ...], rows: Iterable[tuple]
) -> None:
    """sqlite3's executemany of INSERTs: the `shared` values, converted once, then each
    row's `varying` values, each converted by its column's own type (what SQLAlchemy would
    send, without its per-row bookkeeping)."""
    dialect = db.session.get_bind().dialect

    def processor(name: str):
        return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)

    fixed = tuple(
        convert(value) if (convert := processor(name)) else value for name, value in shared.items()
    )
    converters = [(i, convert) for i, name in enumerate(varying) if (convert := processor(name))]

    def driver_row(values: tuple) -> tuple:
        if converters:
            values = list(values)
            for i, convert in converters:
                values[i] = convert(values[i])
        return fixed + tuple(values)

    names = (*shared, *varying)
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"  # noqa: S608
    cursor.executemany(sql, map(driver_row, rows))


def _create_many_sqlite(write: _BulkWrite, rows: list[BulkRow]) -> set[str]:
    cursor = db.session.connection().connection.driver_connection.cursor()
    try:
        # Under the write lock (begin_write): nobody else can take these rowids meanwhile.
        (first_id,) = cursor.execute(
            "SELECT coalesce(max(id), 0) + 1 FROM consent_events"
        ).fetchone()
        # Event ids in the caller's (the file's) order; rows written in address order, so
        # each index is filled page by page rather than at a thousand random places.
        numbered = sorted(enumerate(rows, start=first_id), key=lambda pair: pair[1].address)
        shared_event = write.event(rows[0], None, False, 1)
        for name in ("address", "note", "evidence"):
            del shared_event[name]
        _sqlite_insert_many(
            cursor,
            ConsentEvent.__table__,
            shared_event,
            ("id", "address", "note", "evidence"),
            ((event_id, row.address, row.note, row.evidence) for event_id, row in numbered),
        )
        shared_state = write.state(rows[0], False, 1, 0)
        del shared_state["note"], shared_state["last_event_id"]
        _sqlite_insert_many(
            cursor,
            ConsentState.__table__,
            {"organization_id": write.org_id, "channel": write.channel} | shared_state,
            ("address", "sort_key", "digits", "note", "last_event_id"),
            (
                (row.address, *_sort_fields(write.channel, row.address), row.note, event_id)
                for event_id, row in numbered
            ),
        )
    finally:
        cursor.close()
    return {row.address for row in rows}


# One statement per chunk: the states that are new (ON CONFLICT DO NOTHING skips any another
# transaction created meanwhile), each with its event id, then those rows' events, both in
# address order (each index filled page by page). The foreign key from a state to its event is
# checked at the end of the statement, when both are in.
_PG_CREATE = sa.text(
    """
    WITH input AS (
        SELECT * FROM unnest(
            CAST(:ids AS bigint[]), CAST(:addresses AS text[]), CAST(:sort_keys AS text[]),
            CAST(:digits AS text[]), CAST(:notes AS text[]), CAST(:evidence AS text[])
        ) AS t(id, address, sort_key, digits, note, evidence)
    ), created AS (
        INSERT INTO consent_states (
            organization_id, channel, address, sort_key, digits, status, carrier_block, source,
            changed_at, changed_by, changed_by_user_id, note, version, last_event_id
        )
        SELECT CAST(:org_id AS integer), CAST(:channel AS varchar), address, sort_key, digits,
            'opted_out', false, CAST(:source AS varchar), CAST(:now AS timestamp),
            CAST(:label AS varchar), CAST(:user_id AS integer), note, 1, id
        FROM input
        ORDER BY address
        ON CONFLICT (organization_id, channel, address) DO NOTHING
        RETURNING last_event_id
    )
    INSERT INTO consent_events (
        id, organization_id, channel, address, kind, from_status, to_status, carrier_block,
        source, actor, actor_user_id, actor_label, occurred_at, ip, user_agent, note, evidence,
        state_version
    )
    SELECT input.id, CAST(:org_id AS integer), CAST(:channel AS varchar), input.address,
        'change', NULL, 'opted_out', false, CAST(:source AS varchar), CAST(:actor AS varchar),
        CAST(:user_id AS integer), CAST(:actor_label AS varchar), CAST(:now AS timestamp),
        CAST(:ip AS varchar), CAST(:user_agent AS varchar), input.note,
        CAST(input.evidence AS json), 1
    FROM input JOIN created ON created.last_event_id = input.id
    ORDER BY input.address
    RETURNING address
    """
)
_PG_EVENT_IDS = sa.text(
    "SELECT nextval('consent_events_id_seq') FROM generate_series(1, :count) ORDER BY 1"
)


def _create_many_postgresql(write: _BulkWrite, rows: list[BulkRow]) -> set[str]:
    # Event ids in the caller's (the file's) order; ids of rows another transaction created
    # meanwhile are left unused.
    ids = db.session.scalars(_PG_EVENT_IDS, {"count": len(rows)}).all()
    sort_fields = [_sort_fields(write.channel, row.address) for row in rows]
    event = write.event(rows[0], None, False, 1)
    params = {
        "ids": pg_array(ids),
        "addresses": pg_array(row.address for row in rows),
        "sort_keys": pg_array(sort_key for sort_key, _digits in sort_fields),
        "digits": pg_array(digits for _sort_key, digits in sort_fields),
        "notes": pg_array(row.note for row in rows),
        "evidence": pg_array(json.dumps(row.evidence) for row in rows),
        "org_id": write.org_id,
        "channel": write.channel.value,
        "source": write.source.value,
        "now": write.now,
        "label": write.label,
        "user_id": write.actor.user_id,
        "actor": event["actor"],
        "actor_label": event["actor_label"],
        "ip": event["ip"],
        "user_agent": event["user_agent"],
    }
    return set(db.session.execute(_PG_CREATE, params).scalars())


def _lock_many(org_id: int, channel: str, addresses: list[str]) -> dict[str, sa.Row]:
    """The current (id, address, status, carrier_block, version) of these addresses, locked."""
    table = ConsentState.__table__
    columns = (table.c.id, table.c.address, table.c.status, table.c.carrier_block, table.c.version)
    if is_sqlite():
        stmt = sa.select(*columns).where(
            org_is(table.c.organization_id, org_id),
            table.c.channel == channel,
            table.c.address.in_(addresses),
        )
    else:
        # One index probe per listed address (a LATERAL subquery), whatever the statistics
        # say: during a big import into an organization that had few rows, they are stale,
        # and a plain join or "= ANY" then reads (and hashes) every row of the organization
        # for every chunk, which grows with the import (850 rows/s at 100,000 rows).
        from sqlalchemy.dialects.postgresql import ARRAY

        wanted = (
            sa.func.unnest(sa.bindparam("wanted", addresses, type_=ARRAY(sa.String)))
            .table_valued("address")
            .render_derived(name="wanted")
        )
        found = (
            sa.select(*columns)
            .where(
                org_is(table.c.organization_id, org_id),
                table.c.channel == channel,
                table.c.address == wanted.c.address,
            )
            .with_for_update()
            .lateral("found")
        )
        stmt = sa.select(*found.c).select_from(wanted).join(found, sa.true())
    return {row.address: row for row in db.session.execute(stmt)}


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
    its one event, as `change` would write them; such an opt-in calls for no message
    (notifications.after_change queues none for a staff entry). Every other number, one that
    has a state already (a choice to keep, a cleared bounce) or that another transaction
    created meanwhile, goes through `record_staff_entry` itself.
    """
    rows = list({row.address: row for row in rows}.values())
    if not rows:
        return {}
    if not org.staff_cell_starts_opted_in:
        return dict.fromkeys((row.address for row in rows), "staff_entry_off")
    begin_write()
    known = _lock_many(org.id, Channel.TEXT, [row.address for row in rows])
    result = {}
    new_rows = [row for row in rows if row.address not in known]
    if new_rows:
        result.update(dict.fromkeys(_create_staff_entries(org, new_rows, actor, origin), "changed"))
    for row in rows:
        if row.address not in result:
            outcome = record_staff_entry(
                org, row.address, actor=actor, evidence=row.evidence, origin=origin
            )
            result[row.address] = outcome.code
    return result


def _create_staff_entries(org, rows: list[BulkRow], actor: Actor, origin: Origin | None):
    """States (ON CONFLICT DO NOTHING: a number created meanwhile is left to the caller), then
    the events of those created, then each state's last event. Returns the numbers created."""
    from sqlalchemy.dialects import postgresql, sqlite

    origin = origin or Origin()
    now = utcnow()
    label = actor.label[:200] or actor.key
    states_table, events_table = ConsentState.__table__, ConsentEvent.__table__
    insert = (sqlite.insert if is_sqlite() else postgresql.insert)(states_table)
    created = db.session.execute(
        insert.on_conflict_do_nothing(
            index_elements=["organization_id", "channel", "address"]
        ).returning(states_table.c.id, states_table.c.address),
        [
            {
                "organization_id": org.id,
                "channel": Channel.TEXT,
                "address": row.address,
                "sort_key": sort_key,
                "digits": digits,
                "status": Status.OPTED_IN,
                "carrier_block": False,
                "source": Source.STAFF_ENTRY,
                "changed_at": now,
                "changed_by": label,
                "changed_by_user_id": actor.user_id,
                "note": row.note,
                "version": 1,
            }
            for row in sorted(rows, key=lambda r: r.address)
            for sort_key, digits in [_sort_fields(Channel.TEXT, row.address)]
        ],
    ).all()
    state_ids = {address: state_id for state_id, address in created}
    if not state_ids:
        return set()
    events = db.session.execute(
        sa.insert(events_table).returning(events_table.c.id, events_table.c.address),
        [
            {
                "organization_id": org.id,
                "channel": Channel.TEXT,
                "address": row.address,
                "kind": "change",
                "from_status": None,
                "to_status": Status.OPTED_IN,
                "carrier_block": False,
                "source": Source.STAFF_ENTRY,
                "actor": actor.key,
                "actor_user_id": actor.user_id,
                "actor_label": actor.label[:200],
                "occurred_at": now,
                "ip": origin.ip,
                "user_agent": (origin.user_agent or "")[:500] or None,
                "note": row.note,
                "evidence": row.evidence,
                "state_version": 1,
            }
            for row in rows
            if row.address in state_ids
        ],
    ).all()
    pairs = [(state_ids[address], event_id) for event_id, address in events]
    if is_sqlite():
        db.session.execute(
            sa.update(states_table)
            .where(states_table.c.id == sa.bindparam("state_id"))
            .values(last_event_id=sa.bindparam("event_id")),
            [{"state_id": state_id, "event_id": event_id} for state_id, event_id in pairs],
        )
    else:  # one statement, not one round of the pipeline per row
        db.session.execute(
            sa.text(
                "UPDATE consent_states SET last_event_id = v.event_id FROM unnest("
                "CAST(:state_ids AS integer[]), CAST(:event_ids AS integer[])) AS v(state_id, "
                "event_id) WHERE consent_states.id = v.state_id"
            ),
            {
                "state_ids": pg_array(p[0] for p in pairs),
                "event_ids": pg_array(p[1] for p in pairs),
            },
        )
    return set(state_ids)
