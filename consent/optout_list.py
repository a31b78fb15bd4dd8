"""The opt-out list: its search, who an address belongs to, Add Opt-Out, and its exports
(CSV and XLSX).

Add Opt-Out changes consent only through the ledger; everything else here reads. The list is one status (opted out, or bounced) in
address order per channel, using the `ix_consent_states_list` index; searches use the
`digits` index (phones) or the address (emails).

Exports neutralize spreadsheet formulas (OWASP "CSV injection"): in CSV a cell that starts with
`=`, `+`, `-`, `@`, tab or carriage return gets a leading single quote, so Excel shows it as text
(`'+12025550123`; our importer reads such cells back). In XLSX every cell is written as a text
cell, never a formula, and those cells also get Excel's "quote prefix" style, so they show as
typed, without a visible quote.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa

from consent import ledger
from consent.addresses import AddressError, normalize_any, normalize_phone
from consent.database import has_email_search
from consent.export import csv_chunks, write_xlsx
from consent.export import when as _when
from consent.extensions import db
from consent.i18n import gettext as _
from consent.imports import CHANNEL_CHOICES, channels_for
from consent.models import (
    Channel,
    ConsentState,
    Contact,
    EmailAddress,
    Family,
    Organization,
    Phone,
    Source,
    Status,
    Student,
)
from consent.words import CHANNEL_LABELS, SOURCE_WORDS, STATUS_WORDS, channel_words, shown_address

LIST_HEADER = [
    "Address",
    "Channel",
    "Status",
    "Carrier block",
    "Source",
    "Date added (UTC)",
    "Added by",
    "Note",
    "Contact or student",
]
PEOPLE_HEADER = [
    "Person",
    "ID",
    "Name",
    "Family",
    "Number",
    "Type",
    "Opted out of",
    "Date opted out (UTC)",
]
EXPORT_CHUNK = 1_000


# --- search -------------------------------------------------------------------------------


def search_condition(term: str) -> sa.ColumnElement[bool]:
    """Rows matching one search term: a phone in any form people type it, or part of an email.

    "2025550123", "202-555-0123", "(202) 555-0123" and "+12025550123" find the number; fewer
    digits find numbers whose national digits start with them; a term with letters or "@" finds
    email addresses containing it.
    """
    term = term.strip()
    if not term:
        return sa.true()
    if "@" in term or any(ch.isalpha() for ch in term):
        pattern = "%" + _escape_like(term.lower()) + "%"
        # An email's sort_key is its address. PostgreSQL finds address in its trigram index of
        # the emails. SQLite asks its own trigram index for the few emails that hold the term
        # (then reads just those rows); when many do, it tests sort_key inside the list index,
        # in list order, and meets a page of matches early.
        # The channel is written into the SQL, not bound, so that PostgreSQL's plan for any
        # value still matches the trigram index's "channel = 'email'".
        condition = sa.and_(
            ConsentState.channel == sa.literal_column("'email'"),
            ConsentState.sort_key.like(pattern, escape="\\"),
            ConsentState.address.like(pattern, escape="\\"),
        )
        holding = _emails_holding(term.lower())
        if holding is not None:  # their rows by the list index's sort_key (or the address)
            addresses, sort_keys = [a for a, _k in holding], [k for _a, k in holding]
            condition = sa.and_(
                _in_json(ConsentState.sort_key, sort_keys),
                _in_json(ConsentState.address, addresses),
                condition,
            )
        return condition
    digits = re.sub(r"\D", "", term)
    if not digits:
        return sa.false()
    conditions = []
    try:
        e164 = normalize_phone(term)
    except AddressError:
        e164 = None
    if e164:
        conditions.append(
            sa.and_(
                ConsentState.channel.in_([Channel.TEXT, Channel.VOICE]),
                ConsentState.address == e164,
            )
        )
    prefixes = {digits}
    if term.lstrip().startswith("+") and digits.startswith("1") and len(digits) > 1:
        prefixes.add(digits[1:])  # "+1202…" typed part-way: the national digits follow the 1
    for prefix in sorted(prefixes):
        conditions.append(
            sa.and_(ConsentState.digits >= prefix, ConsentState.digits < _after(prefix))
        )
    return sa.or_(*conditions)


# More emails than this holding a term: the list index's ordered scan finds a page sooner.
EMAIL_SEARCH_FEW = 1000


def _emails_holding(term: str) -> list[tuple[str, str]] | None:
    """SQLite: (address, sort_key) of the email states whose address holds `term`, from its
    trigram index (consent.database.EMAIL_SEARCH); None when there are more than
    EMAIL_SEARCH_FEW, when the term is under three characters (a trigram's length), or without
    the index (PostgreSQL). The list then reads them by its own index, whatever SQLite's
    statistics say (given their ids, it may still prefer to scan the list index)."""
    if len(term) < 3:
        return None
    connection = db.session.connection()
    if not has_email_search(connection):
        return None
    phrase = '"' + term.replace('"', '""') + '"'  # an FTS5 string: the term, as typed
    rows = connection.exec_driver_sql(
        "SELECT address, sort_key FROM consent_states WHERE id IN (SELECT rowid FROM "
        "consent_states_email_fts WHERE consent_states_email_fts MATCH ? LIMIT ?)",
        (phrase, EMAIL_SEARCH_FEW + 1),
    ).all()
    return [tuple(row) for row in rows] if len(rows) <= EMAIL_SEARCH_FEW else None


def _in_json(column: sa.ColumnElement, values: list[str]) -> sa.ColumnElement[bool]:
    listed = sa.func.json_each(json.dumps(values)).table_valued("value")
    return column.in_(sa.select(listed.c.value))


def search_conditions(search: str) -> list[sa.ColumnElement[bool]]:
    """The list's search box: a phone typed with spaces, "(202) 555-0123", is one term; the
    words of an email search are each a term (all must match)."""
    search = (search or "").strip()
    if not search:
        return []
    phone_like = not any(ch.isalpha() or ch == "@" for ch in search)
    return [search_condition(term) for term in ([search] if phone_like else search.split())]


LIST_FILTERS = ("status", "channel", "source", "from", "to", "carrier_block")


def filtered_statement(
    org_id: int,
    *,
    search: str = "",
    filters: dict | None = None,
    sort: str | None = None,
    desc: bool = False,
) -> sa.Select:
    """The list as the admin shows it (its search, filters and sort), every page: what its
    export writes. `filters` holds the list's filter values as typed in its URL, a list of
    them per kind ({"status": ["opted_out"], "channel": ["text"], "source": ["import"],
    "from"/"to": ["YYYY-MM-DD"], "carrier_block": ["1"]}; a lone value stands for a list of
    one). As on the list page, every filter applies, two of one kind too (two channels: the
    rows of both, that is none); the status is "opted out" unless one is chosen."""
    from datetime import datetime, timedelta

    def values(kind: str) -> list[str]:
        found = (filters or {}).get(kind)
        found = found if isinstance(found, list | tuple) else [found]
        return [value for value in found if value]

    stmt = sa.select(ConsentState).where(ConsentState.organization_id == org_id)
    for status in values("status") or [Status.OPTED_OUT.value]:
        stmt = stmt.where(ConsentState.status == Status(status))
    for channel in values("channel"):
        stmt = stmt.where(ConsentState.channel == Channel(channel))
    for source in values("source"):
        stmt = stmt.where(ConsentState.source == Source(source))
    for value in values("from"):
        day = datetime.strptime(value.strip(), "%Y-%m-%d")
        stmt = stmt.where(ConsentState.changed_at >= day)
    for value in values("to"):
        day = datetime.strptime(value.strip(), "%Y-%m-%d")
        stmt = stmt.where(ConsentState.changed_at < day + timedelta(days=1))
    for value in values("carrier_block"):
        if value in ("0", "1"):
            stmt = stmt.where(ConsentState.carrier_block.is_(value == "1"))
    for condition in search_conditions(search):
        stmt = stmt.where(condition)
    if sort == "changed_at":
        order = [ConsentState.changed_at, ConsentState.id]
    else:
        order = [ConsentState.channel, ConsentState.sort_key]
    return stmt.order_by(*(column.desc() if desc else column for column in order))


def _after(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix` (digits only)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- whose address is it ------------------------------------------------------------------


def owners_by_address(
    org_id: int, states: Iterable[ConsentState], site_id: int | None = None
) -> dict[tuple[str, str], str]:
    """{(kind, address): "Ana Rivera (contact), Sofia Rivera (student)"} for a page of rows,
    in two queries (phones, emails) whatever the page size. With `site_id` (a site team),
    only the people of that site are named: its students, and contacts with a student there."""
    phones = {s.address for s in states if s.channel != Channel.EMAIL}
    emails = {s.address for s in states if s.channel == Channel.EMAIL}
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for kind, model, column, values in (
        ("phone", Phone, Phone.number, phones),
        ("email", EmailAddress, EmailAddress.address, emails),
    ):
        if not values:
            continue
        for address, contact, student in _owner_rows(org_id, model, column, values, site_id):
            if contact is not None:
                found[(kind, address)].append(f"{contact.name} (contact)")
            if student is not None:
                found[(kind, address)].append(f"{student.name} (student)")
    return {key: ", ".join(dict.fromkeys(names)) for key, names in found.items()}


def _owner_rows(org_id, model, column, values, site_id=None):
    contact_family = sa.orm.aliased(Family)
    student_family = sa.orm.aliased(Family)
    stmt = (
        sa.select(column, Contact, Student)
        .select_from(model)
        .outerjoin(Contact, model.contact_id == Contact.id)
        .outerjoin(contact_family, Contact.family_id == contact_family.id)
        .outerjoin(Student, model.student_id == Student.id)
        .outerjoin(student_family, Student.family_id == student_family.id)
        .where(
            column.in_(sorted(values)),
            sa.or_(
                _at_site(contact_family.organization_id == org_id, Contact, site_id),
                _at_site(student_family.organization_id == org_id, Student, site_id),
            ),
        )
        .order_by(column, model.id)
    )
    return db.session.execute(stmt).all()


def _at_site(in_org, model, site_id: int | None):
    """`in_org`, and for a site team: a student of the site, or a contact with one there."""
    if site_id is None:
        return in_org
    if model is Student:
        return sa.and_(in_org, Student.site_id == site_id)
    at_site = sa.select(Student.family_id).where(Student.site_id == site_id)
    return sa.and_(in_org, Contact.family_id.in_(at_site))


def kind_of(channel: str) -> str:
    return "email" if channel == Channel.EMAIL else "phone"


def shown(state: ConsentState) -> str:
    """The address the way staff read it."""
    return shown_address(state.address)


# --- Add Opt-Out ----------------------------------------------------------------------------


@dataclass
class AddedOptOut:
    """What Add Opt-Out did. Refused: `error` says why, for the form field `field_name`
    ("address" or "channel") or, from the ledger, for the page. Done: the sentences to show, with their kind
    ("success" or "info")."""

    ok: bool
    error: str | None = None
    field_name: str | None = None
    messages: list[tuple[str, str]] = field(default_factory=list)


def add_opt_out(
    org: Organization,
    typed: str,
    choice: str,
    *,
    actor: ledger.Actor,
    note: str | None = None,
    origin: ledger.Origin | None = None,
) -> AddedOptOut:
    """Opt a typed address out of the chosen channels ("text", "voice", "email", or "all": each
    channel that fits the address), one ledger change per channel. Flushes; the caller commits,
    or rolls back when refused."""
    try:
        kind, address = normalize_any(typed)
    except AddressError as exc:
        why = _("This is not a phone number or email address: %(why)s.", why=exc.why)
        return AddedOptOut(False, why, "address")
    channels = channels_for(kind, choice) if choice in CHANNEL_CHOICES else ()
    if not channels:
        if kind == "email":
            why = _("An email address can only be opted out of email.")
        else:
            why = _("A phone number can be opted out of text messages or calls, not email.")
        return AddedOptOut(False, why, "channel")
    note = (note or "").strip() or None
    changed, already = [], []
    for channel in channels:
        outcome = ledger.opt_out(
            org, channel, address, source=Source.ADMIN, actor=actor, note=note, origin=origin
        )
        if outcome.refused:
            return AddedOptOut(False, outcome.reason)
        (changed if outcome.changed else already).append(str(channel_words(channel)))
    shown = shown_address(address)
    done = AddedOptOut(True)
    if changed:
        what = " and ".join(changed)
        done.messages.append(
            (_("%(who)s is now opted out of %(what)s.", who=shown, what=what), "success")
        )
    if already:
        what = " and ".join(already)
        done.messages.append(
            (_("%(who)s was already opted out of %(what)s.", who=shown, what=what), "info")
        )
    return done


# --- exports ------------------------------------------------------------------------------


def list_rows(stmt: sa.Select, site_id: int | None = None) -> Iterator[list[str]]:
    """The list's rows for `stmt` (a select of ConsentState), header first, streamed by chunk.
    With `site_id`, the "Contact or student" column names only that site's people."""
    yield list(LIST_HEADER)
    chunk: list[ConsentState] = []
    for state in db.session.scalars(stmt.execution_options(yield_per=EXPORT_CHUNK)):
        chunk.append(state)
        if len(chunk) >= EXPORT_CHUNK:
            yield from _list_chunk(chunk, site_id)
            chunk = []
    if chunk:
        yield from _list_chunk(chunk, site_id)


def _list_chunk(states: list[ConsentState], site_id: int | None) -> Iterator[list[str]]:
    owners = owners_by_address(states[0].organization_id, states, site_id)
    for state in states:
        yield [
            state.address,
            CHANNEL_LABELS[state.channel],
            STATUS_WORDS[state.status],
            "Yes" if state.carrier_block else "No",
            SOURCE_WORDS.get(state.source, state.source),
            _when(state.changed_at),
            state.changed_by or "",
            state.note or "",
            owners.get((kind_of(state.channel), state.address), ""),
        ]


def list_statement(org: Organization, status: Status = Status.OPTED_OUT) -> sa.Select:
    """Every address of one status, per channel, in address order."""
    return (
        sa.select(ConsentState)
        .where(ConsentState.organization_id == org.id, ConsentState.status == status)
        .order_by(ConsentState.channel, ConsentState.sort_key)
    )


def people_statement(org: Organization, site_id: int | None = None) -> sa.Select:
    """(phone, contact, student, channel, changed_at) for every opted-out text or voice number
    of a contact or student (of the site, with `site_id`), by phone."""
    family = sa.orm.aliased(Family)
    student_family = sa.orm.aliased(Family)
    return (
        sa.select(Phone, Contact, Student, ConsentState.channel, ConsentState.changed_at)
        .join(
            ConsentState,
            sa.and_(
                ConsentState.address == Phone.number,
                ConsentState.organization_id == org.id,
                ConsentState.channel.in_([Channel.TEXT, Channel.VOICE]),
                ConsentState.status == Status.OPTED_OUT,
            ),
        )
        .outerjoin(Contact, Phone.contact_id == Contact.id)
        .outerjoin(family, Contact.family_id == family.id)
        .outerjoin(Student, Phone.student_id == Student.id)
        .outerjoin(student_family, Student.family_id == student_family.id)
        .where(
            sa.or_(
                _at_site(family.organization_id == org.id, Contact, site_id),
                _at_site(student_family.organization_id == org.id, Student, site_id),
            )
        )
        .order_by(Phone.id, ConsentState.channel)
    )


def people_rows(org: Organization, site_id: int | None = None) -> Iterator[list[str]]:
    """Seed 002's export: every contact's and student's number that is opted out (text or
    voice), with the person's ID, name, the number and its type, header first. With
    `site_id` (a site team), only that site's people."""
    yield list(PEOPLE_HEADER)
    stmt = people_statement(org, site_id).execution_options(yield_per=EXPORT_CHUNK)
    current: list | None = None
    for phone, contact, student, channel, changed_at in db.session.execute(stmt):
        if current is not None and current[0] == phone.id:
            current[2].append(CHANNEL_LABELS[channel])
            current[3] = max(current[3], changed_at)
            continue
        if current is not None:
            yield _person_row(*current)
        current = [phone.id, (phone, contact, student), [CHANNEL_LABELS[channel]], changed_at]
    if current is not None:
        yield _person_row(*current)


def _person_row(_phone_id, owner, channels, changed_at) -> list[str]:
    phone, contact, student = owner
    person = contact or student
    what = "Contact" if contact is not None else "Student"
    return [
        what,
        person.external_id or f"{what[0]}{person.id}",
        person.name,
        person.family.name,
        phone.number,
        phone.kind.value.capitalize(),
        ", ".join(channels),
        _when(changed_at),
    ]


def write_file(path: str, rows: Iterable[list[str]]) -> None:
    """Write rows to a CSV or XLSX file, by the path's extension."""
    if path.lower().endswith(".xlsx"):
        with open(path, "wb") as target:
            write_xlsx(rows, target)
        return
    with open(path, "w", encoding="utf-8", newline="") as target:
        for chunk in csv_chunks(rows):
            target.write(chunk)
