"""May we send on this channel to this address? For one address and for many.

Reasons: ok, opted_out, bounced, no_consent (text needs consent and none is on record),
invalid (not an address). Many addresses cost one query per chunk of CHUNK, never one each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import or_

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from consent import purposes, snapshot
from consent.addresses import AddressError, normalize
from consent.database import is_one_of, org_is, pg_array
from consent.e164 import SHAPE as E164_SHAPE
from consent.e164 import verdict, verdicts
from consent.extensions import db
from consent.models import Channel, ConsentState, MessagePurpose, Organization, PurposeState, Status

CHUNK = 10_000  # SQLite: fewer, larger IN (json_each) lists cost less per address
PG_CHUNK = 100_000  # PostgreSQL: the most one request may ask (api.openapi.MAX_ADDRESSES)
REASONS = ("ok", "opted_out", "bounced", "no_consent", "invalid")


@dataclass(frozen=True, slots=True)
class Eligibility:
    address: str
    normalized: str | None
    allowed: bool
    reason: str

    def as_dict(self) -> dict:
        return {
            "address": self.address,
            "normalized": self.normalized,
            "allowed": self.allowed,
            "reason": self.reason,
        }


def decide(org: Organization, channel: str, status: str | None) -> str:
    """The reason for one channel and current status (None: no choice on record)."""
    if status == Status.OPTED_OUT:
        return "opted_out"
    if status == Status.BOUNCED:
        return "bounced"
    if status == Status.OPTED_IN:
        return "ok"
    if channel == Channel.TEXT and org.text_requires_consent:
        return "no_consent"
    return "ok"


def decide_for(
    org: Organization,
    purpose: MessagePurpose,
    channel: str,
    status: str | None,
    blocked: bool,
    chosen: str | None,
) -> str:
    """The reason for one purpose: `status` the channel-wide state (None: none), `blocked` its
    carrier block, `chosen` the per-purpose choice (None: none). A carrier block of texts or a
    bounce always blocks; a channel opt-out blocks unless the purpose reaches opted-out
    addresses (emergency); a per-purpose opt-out blocks that purpose; an unknown text needs
    consent unless the purpose is an emergency one (FCC 16-88). A STOP that also stopped calls
    (the stop_blocks_voice rule, or revoke-all) marks calls with the block so that START lifts
    it, but no carrier blocks a call: an emergency call still reaches."""
    if status == Status.BOUNCED:
        return "bounced"
    blocked = blocked and channel == Channel.TEXT
    if status == Status.OPTED_OUT and (blocked or not purpose.reaches_opted_out):
        return "opted_out"
    if chosen == Status.OPTED_OUT and purpose.may_turn_off(channel):
        return "opted_out"
    if status == Status.OPTED_OUT or purpose.reaches_opted_out:
        return "ok"
    if status == Status.OPTED_IN or chosen == Status.OPTED_IN:
        return "ok"
    if channel == Channel.TEXT and org.text_requires_consent:
        return "no_consent"
    return "ok"


def check_one(
    org: Organization, channel: str, address: str, purpose: MessagePurpose | None = None
) -> Eligibility:
    """Eligibility of one address as given (normalized here)."""
    return check_many(org, channel, [address], purpose)[0]


def check_many(
    org: Organization,
    channel: str,
    addresses: Sequence[str],
    purpose: MessagePurpose | None = None,
) -> list[Eligibility]:
    """Eligibility of each address, in the order given."""
    return [Eligibility(*row) for row in check_rows(org, channel, addresses, purpose)]


def check_rows(
    org: Organization,
    channel: str,
    addresses: Sequence[str],
    purpose: MessagePurpose | None = None,
) -> list[tuple[str, str | None, bool, str]]:
    """Like check_many, as (address, normalized, allowed, reason) tuples: the bulk API's path
    (no object per address). Without a purpose: the channel-wide answer (as before purposes
    existed); with one, consent.eligibility.decide_for."""
    if purpose is not None:
        return _check_rows_for(org, Channel(channel), addresses, purpose)
    channel = Channel(channel)
    region = org.default_region or "US"
    normalized, unchecked = _normalize_all(channel, addresses, region)
    statuses = statuses_of(org.id, channel, list(dict.fromkeys(a for a in normalized if a)))
    again = _check_e164(channel, normalized, unchecked, statuses, region)
    if again:  # inputs that phonenumbers writes differently ("+1 1 202…"): rare
        statuses.update(statuses_of(org.id, channel, again))
    unknown = decide(org, channel, None)
    by_status = {status: decide(org, channel, status) for status in Status}
    results = []
    append = results.append
    get = statuses.get
    for raw, norm in zip(addresses, normalized, strict=True):
        if norm is None:
            append((str(raw), None, False, "invalid"))
            continue
        status = get(norm)
        reason = unknown if status is None else by_status[status]
        append((raw, norm, reason == "ok", reason))
    return results


def _normalize_all(
    channel: str, addresses: Sequence[str], region: str
) -> tuple[list[str | None], list[int]]:
    """Each address normalized for the channel (None: not an address), and the positions of
    E.164-looking phones taken as given but not yet checked (see _check_e164)."""
    out: list[str | None] = []
    unchecked: list[int] = []
    append = out.append
    phones = channel != Channel.EMAIL
    shape = E164_SHAPE.fullmatch
    for index, raw in enumerate(addresses):
        if phones and type(raw) is str and shape(raw):
            unchecked.append(index)
            append(raw)
            continue
        try:
            append(normalize(channel, raw, region))
        except (AddressError, TypeError):
            append(None)
    return out, unchecked


def _check_e164(channel, normalized, unchecked, statuses, region) -> list[str]:
    """Check the E.164-looking phones that have no state. One with a state needs no check: it
    was normalized when it was stored. Fast path (consent.e164, which agrees with
    phonenumbers) first, phonenumbers when it cannot tell. Returns the addresses whose
    normalized form differs from the input and still needs looking up."""
    again: dict[str, None] = {}
    for index in unchecked:
        raw = normalized[index]
        if raw in statuses:
            continue
        fast = verdict(raw)
        if fast is True:
            continue
        if fast is False:
            normalized[index] = None
            continue
        try:
            value = normalize(channel, raw, region)
        except AddressError:
            normalized[index] = None
            continue
        normalized[index] = value
        if value != raw and value not in statuses:
            again[value] = None
    return list(again)


def statuses_of(
    org_id: int, channel: str, addresses: Sequence[str], purpose_id: int | None = None
) -> dict[str, str]:
    """{address: status} for the addresses that have a state, one query per chunk.

    Each chunk travels as one parameter (a PostgreSQL array, a JSON list on SQLite), so a
    chunk is one short statement however many addresses it holds. PostgreSQL joins the whole
    list (up to PG_CHUNK, sorted) as `unnest(array)`: the planner probes the covering index for a few
    addresses and merges for many, a third of the CPU of 1,000-address `= ANY` chunks at
    100,000 addresses. SQLite probes the covering index per address, CHUNK at a time, in
    address order (the IN list is sorted). With `purpose_id`: the choices for that purpose
    (consent_purpose_states, through its own covering index), in the same way.
    """
    found: dict[str, str] = {}
    if not addresses:
        return found
    table = (ConsentState if purpose_id is None else PurposeState).__table__
    extra = () if purpose_id is None else (table.c.purpose_id == purpose_id,)
    # One string back per chunk, "address status address status …" (normalized addresses
    # hold no space): no row object, no enum conversion per address.
    pair = table.c.address + " " + sa.type_coerce(table.c.status, sa.String)
    columns = (sa.func.aggregate_strings(pair, " "),)
    postgres = db.session.get_bind().dialect.name == "postgresql"
    if postgres:
        # The list travels as one array literal: PostgreSQL folds the cast, so the planner
        # knows how many addresses there are (a nested loop over the index for a few, a merge
        # join for many), and psycopg does not escape each element in Python.
        literal = sa.cast(sa.bindparam("chunk", type_=sa.String), ARRAY(sa.String))
        wanted = sa.func.unnest(literal).table_valued("address").render_derived(name="wanted")
        stmt = sa.select(*columns).select_from(
            wanted.join(
                table,
                sa.and_(
                    org_is(table.c.organization_id, org_id),
                    table.c.channel == Channel(channel).value,
                    table.c.address == wanted.c.address,
                    *extra,
                ),
            )
        )
    else:
        values = sa.func.json_each(sa.bindparam("chunk")).table_valued("value")
        stmt = sa.select(*columns).where(
            table.c.organization_id == org_id,
            table.c.channel == Channel(channel).value,
            table.c.address.in_(sa.select(values.c.value)),
            *extra,
        )
    size = PG_CHUNK if postgres else CHUNK
    for start in range(0, len(addresses), size):
        chunk = list(addresses[start : start + size])
        if postgres:
            # In index order: PostgreSQL sorts the list for its merge join, and a list that
            # is already in order sorts much faster there than Python sorts it here
            # (bench/eligibility.py).
            chunk.sort()
        rows = db.session.execute(
            stmt, {"chunk": pg_array(chunk) if postgres else json.dumps(chunk)}
        )
        packed = rows.scalar()
        if packed:
            words = packed.split(" ")
            found.update(zip(words[::2], words[1::2], strict=True))
    return found


def _check_rows_for(org, channel, addresses, purpose):
    """check_rows for one purpose: the channel-wide statuses (the same covering index), the
    carrier blocks among the opted-out ones, and the purpose's choices (its own index)."""
    region = org.default_region or "US"
    normalized, unchecked = _normalize_all(channel, addresses, region)
    statuses = statuses_of(org.id, channel, list(dict.fromkeys(a for a in normalized if a)))
    again = _check_e164(channel, normalized, unchecked, statuses, region)
    if again:
        statuses.update(statuses_of(org.id, channel, again))
    wanted = list(dict.fromkeys(a for a in normalized if a))
    chosen = statuses_of(org.id, channel, wanted, purpose_id=purpose.id)
    blocked: set[str] = set()
    if purpose.reaches_opted_out and channel == Channel.TEXT:  # only texts are carrier-blocked
        blocked = blocked_of(org.id, channel, [a for a, s in statuses.items() if s == "opted_out"])
    results = []
    append = results.append
    for raw, norm in zip(addresses, normalized, strict=True):
        if norm is None:
            append((str(raw), None, False, "invalid"))
            continue
        reason = decide_for(
            org, purpose, channel, statuses.get(norm), norm in blocked, chosen.get(norm)
        )
        append((raw, norm, reason == "ok", reason))
    return results


def blocked_of(org_id: int, channel: str, addresses: Sequence[str]) -> set[str]:
    """The addresses among these (opted out) whose state carries a carrier block."""
    found: set[str] = set()
    table = ConsentState.__table__
    for start in range(0, len(addresses), CHUNK):
        chunk = list(addresses[start : start + CHUNK])
        found.update(
            db.session.scalars(
                sa.select(table.c.address).where(
                    org_is(table.c.organization_id, org_id),
                    table.c.channel == Channel(channel).value,
                    is_one_of(table.c.address, chunk),
                    table.c.carrier_block.is_(True),
                )
            )
        )
    return found


# --- the snapshot path (consent.snapshot): the eligibility API's ----------------------------

_REASON_CODE = {reason: index for index, reason in enumerate(REASONS)}
_INVALID = _REASON_CODE["invalid"]


@dataclass(frozen=True, slots=True)
class Packed:
    """Answers for many addresses without an object per address: `reasons[i]` indexes
    REASONS; `normalized` holds the positions whose normalized form is not the input itself
    (None: invalid). The bulk API writes its JSON from this (api/eligibility.py)."""

    addresses: Sequence[str]
    normalized: dict[int, str | None]
    reasons: bytearray

    def rows(self) -> list[tuple[str, str | None, bool, str]]:
        out = []
        odd = self.normalized
        for index, (raw, code) in enumerate(zip(self.addresses, self.reasons, strict=True)):
            norm = odd.get(index, raw)
            reason = REASONS[code]
            out.append((str(raw) if norm is None else raw, norm, reason == "ok", reason))
        return out


_TABLES: dict[tuple, bytes] = {}


def _tables(org, channel, purpose) -> bytes:
    """A bytes.translate table: reason code by state code * 4 + choice code (state code as
    consent.snapshot: status and carrier block; choice code the purpose's status, 0 without a
    purpose or a choice). Kept by what decide and decide_for read."""
    key = (
        bool(org.text_requires_consent),
        str(channel),
        None if purpose is None else (purpose.reaches_opted_out, purpose.may_turn_off(channel)),
    )
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = _table(org, channel, purpose)
    return table


def _table(org, channel, purpose) -> bytes:
    table = bytearray(256)
    for code in range(8):
        status = snapshot.CODE_STATUS[code & 3]
        blocked = bool(code & snapshot.BLOCK)
        for choice in range(4):
            if purpose is None:
                reason = decide(org, channel, status)
            else:
                chosen = snapshot.CODE_STATUS[choice]
                reason = decide_for(org, purpose, channel, status, blocked, chosen)
            table[code * 4 + choice] = _REASON_CODE[reason]
    return bytes(table)


def uses_snapshot(channel: str) -> bool:
    """The snapshot answers this channel (phones) unless ELIGIBILITY_SNAPSHOT is off."""
    from flask import current_app

    return str(channel) in snapshot.PHONE_CHANNELS and current_app.config.get(
        "ELIGIBILITY_SNAPSHOT", True
    )


def _around(org_id, key):
    def around(refresh):
        stmt = purposes.organization_statement(org_id, key)
        return stmt.add_columns(*refresh.c).join(refresh, sa.true()).order_by(refresh.c.id)

    return around


# The organization's statement joined with the refresh, by (the deployment's organization?,
# no purpose?): four statements, each built once (consent.snapshot.of_joined keeps them).
_AROUND = {
    (deployment, no_purpose): _around(None if deployment else 0, None if no_purpose else "")
    for deployment in (True, False)
    for no_purpose in (True, False)
}
_DEPLOYMENT_ORG: dict[str, int] = {}  # database URL -> its first organization's id, last seen


def organization_for_check(org_id: int | None, key: str | None, channel: str):
    """(organization, purpose, snapshot or None) for an eligibility check: the organization by
    id (None: the deployment's, the first one), its purpose with this key (None when the key
    is None or names none), and, for a channel of the snapshot already built, the snapshot
    brought up to date by the same statement (consent.snapshot.of_joined: one round trip for
    the three). The organization None when there is none."""
    url = str(db.session.get_bind().url)
    hint = org_id if org_id is not None else _DEPLOYMENT_ORG.get(url)
    snap = rows = None
    if hint is not None and uses_snapshot(channel):
        around = _AROUND[(org_id is None, key is None)]
        params = purposes.organization_parameters(org_id, key)
        snap, rows = snapshot.of_joined(hint, channel, around, params)
    if rows:
        org, purpose = rows[0][0], rows[0][1]
    else:
        org, purpose = purposes.organization_with(org_id, key)
    if org is None:
        return None, None, None
    if org_id is None:
        _DEPLOYMENT_ORG[url] = org.id
    if org.id != hint:
        snap = None  # the deployment's first organization is another one now
    return org, purpose, snap


def check_packed(
    org: Organization,
    channel: str,
    addresses: Sequence[str],
    purpose: MessagePurpose | None = None,
    snap: snapshot.Snapshot | None = None,
) -> Packed:
    """check_rows's answers from the organization's snapshot of a phone channel (one query:
    its refresh; none when `snap`, the organization's snapshot of the channel, is given up to
    date: organization_for_check), packed. The same answers as the database path (check_rows).

    When every address is an E.164-looking string (what a messaging system sends), each step
    is one pass in C over all of them (map, bytes.translate, one regular expression): no
    Python statement per address but for the numbers with no state; otherwise one address at
    a time."""
    channel = Channel(channel)
    if snap is None:
        snap = snapshot.of(org.id, channel)
    table = _tables(org, channel, purpose)
    states = snap.states.get
    chosen = snap.purposes.get(purpose.id) if purpose is not None else None
    choice = chosen.get if chosen else None
    region = org.default_region or "US"
    if _all_e164(addresses):
        keys = list(map(int, addresses))  # int("+12025550111"): the shape is checked
        index = bytes(map(states, keys, repeat(_NO_STATE))).translate(_TIMES_4)
        unchecked = list(compress(range(len(keys)), map(_NO_STATE_INDEX.__eq__, index)))
        if choice is not None:
            index = bytes(map(or_, index, map(choice, keys, repeat(0))))
        reasons = bytearray(index.translate(table))
        odd: dict[int, str | None] = {}
    else:
        keys = None
        reasons, odd, unchecked = _one_by_one(channel, addresses, region, states, choice, table)
    if unchecked:
        _check_unknown(channel, addresses, keys, unchecked, region, states, choice, table,
                       reasons, odd)  # fmt: skip
    return Packed(addresses, odd, reasons)


_NO_STATE = 8  # a state code above every real one (consent.snapshot: 0-7)
_NO_STATE_INDEX = _NO_STATE * 4
_TIMES_4 = bytes((code * 4) & 0xFF for code in range(256))
_LINES_E164 = re.compile(r"(?:\+[1-9][0-9]{7,14}\n)*\+[1-9][0-9]{7,14}")  # E164_SHAPE a line


def _all_e164(addresses: Sequence) -> bool:
    """Every address is a string of consent.e164.SHAPE (no line break inside: one a line)."""
    if not addresses:
        return False
    try:
        lines = "\n".join(addresses)
    except TypeError:
        return False
    return lines.count("\n") == len(addresses) - 1 and _LINES_E164.fullmatch(lines) is not None


def _one_by_one(channel, addresses, region, states, choice, table):
    """check_packed's first pass for a list with other inputs than E.164 strings."""
    shape = E164_SHAPE.fullmatch
    reasons = bytearray(len(addresses))
    odd: dict[int, str | None] = {}
    unchecked: list[int] = []
    for index, raw in enumerate(addresses):
        if type(raw) is str and shape(raw):
            key = int(raw[1:])
            code = states(key)
            if code is None:
                unchecked.append(index)  # no state: is it a valid number? (check_packed)
                continue
        else:
            try:
                norm = normalize(channel, raw, region)
            except (AddressError, TypeError):
                odd[index] = None
                reasons[index] = _INVALID
                continue
            odd[index] = norm
            key = snapshot.number_key(norm)
            code = states(key, 0)
        reasons[index] = table[code * 4 + (choice(key, 0) if choice else 0)]
    return reasons, odd, unchecked


def _check_unknown(channel, addresses, keys, unchecked, region, states, choice, table, reasons,
                   odd) -> None:  # fmt: skip
    """The E.164-looking phones with no state: valid (consent.e164, phonenumbers when it cannot
    tell) or invalid, and the normalized form looked up when phonenumbers writes it otherwise."""
    fits = verdicts([addresses[i] for i in unchecked])
    unknown = table[0]
    for index, fast in zip(unchecked, fits, strict=True):
        if fast is True and choice is None:
            reasons[index] = unknown  # the common case: a valid number with no state
            continue
        raw = addresses[index]
        if fast is False:
            odd[index] = None
            reasons[index] = _INVALID
            continue
        key = keys[index] if keys is not None else int(raw[1:])
        code = 0
        if fast is None:
            try:
                value = normalize(channel, raw, region)
            except AddressError:
                odd[index] = None
                reasons[index] = _INVALID
                continue
            if value != raw:
                odd[index] = value
                key = snapshot.number_key(value)
                code = states(key, 0)
        reasons[index] = table[code * 4 + (choice(key, 0) if choice else 0)]
