"""An organization's message purposes and the per-purpose choices of its addresses.

Reading only: every choice is changed by consent.ledger.change_purpose. The rules in words:
docs/purposes.md.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from consent.database import org_is
from consent.extensions import db
from consent.models import Channel, MessagePurpose, Organization, PurposeState, Status


class UnknownPurpose(LookupError):
    """No purpose of this organization has that key."""


def of(org: Organization | int) -> list[MessagePurpose]:
    """The organization's purposes, in their order."""
    org_id = org if isinstance(org, int) else org.id
    return list(db.session.scalars(_of_statement(), {"org_id": org_id}))


_OF: dict[str, sa.Select] = {}


# --- kept per process for the portal's pages -------------------------------------------------
# Every portal page shows the organization's purposes. Rather than read them on every page, the
# page's own statement reads their fingerprint (`fingerprint_of`: every column of every purpose,
# as one string), and `kept` answers from this process's copy while the fingerprint is the one
# the copy was made with: a change committed elsewhere is seen by the next page, as if read.

_FIELDS = (
    "id", "key", "name_en", "name_es", "position", "parents_may_turn_off_text",
    "parents_may_turn_off_voice", "parents_may_turn_off_email", "reaches_opted_out", "is_general",
)  # fmt: skip
_KEPT: dict[tuple[str, int], tuple[str | None, tuple[MessagePurpose, ...]]] = {}


def fingerprint_of(org_id: sa.BindParameter) -> sa.Select:
    """SELECT one string of the organization's purposes, every column of each (NULL when it
    has none): to be read in the statement a page already sends."""
    # The separators written into the statement, not sent as parameters, and no CAST of a
    # column that is text already: the statement a page sends stays short (consent.choices).
    separator = sa.literal("\x1f", literal_execute=True)
    parts = [getattr(MessagePurpose, name) for name in _FIELDS]
    parts = [c if isinstance(c.type, sa.String) else sa.cast(c, sa.String) for c in parts]
    text = parts[0]
    for part in parts[1:]:
        text = text + separator + part
    between = sa.literal("\x1e", literal_execute=True)
    return sa.select(sa.func.aggregate_strings(text, between)).where(
        MessagePurpose.organization_id == org_id
    )


def kept(org: Organization, fingerprint: str | None) -> list[MessagePurpose]:
    """`of(org)`, from this process's copy when `fingerprint` (fingerprint_of, read just now)
    is the one it was made with; else read, and kept. The copies are plain objects (in no
    session): for showing, not for changing."""
    key = (str(db.session.get_bind().url), org.id)
    hit = _KEPT.get(key)
    if hit is None or hit[0] != fingerprint:
        copies = tuple(MessagePurpose(**{n: getattr(p, n) for n in _FIELDS}) for p in of(org))
        hit = _KEPT[key] = (fingerprint, copies)
    return list(hit[1])


def _of_statement() -> sa.Select:
    """`of`'s statement, built once per database kind (every portal page asks)."""
    dialect = db.session.get_bind().dialect.name
    if dialect not in _OF:
        org_id = sa.bindparam("org_id", type_=sa.Integer)
        _OF[dialect] = (
            sa.select(MessagePurpose)
            .where(org_is(MessagePurpose.organization_id, org_id))
            .order_by(MessagePurpose.position, MessagePurpose.id)
        )
    return _OF[dialect]


def by_key(org: Organization | int, key: str) -> MessagePurpose:
    """The purpose with this key; UnknownPurpose when the organization has none."""
    org_id = org if isinstance(org, int) else org.id
    found = db.session.scalars(
        sa.select(MessagePurpose).where(
            org_is(MessagePurpose.organization_id, org_id), MessagePurpose.key == key
        )
    ).one_or_none()
    if found is None:
        raise UnknownPurpose(key)
    return found


def organization_statement(org_id: int | None, key: str | None) -> sa.Select:
    """SELECT the organization (by id; None: the deployment's, the first one) and its purpose
    with this key (NULL when the key is None or names none of its purposes). The statement
    is the same for every id and key (bound parameters `org_id` and `purpose_key`; see
    organization_parameters)."""
    if key is None:
        stmt = sa.select(Organization, sa.null())
    else:
        stmt = sa.select(Organization, MessagePurpose).outerjoin(
            MessagePurpose,
            sa.and_(
                MessagePurpose.organization_id == Organization.id,
                MessagePurpose.key == sa.bindparam("purpose_key", type_=sa.String),
            ),
        )
    if org_id is None:
        first = sa.select(sa.func.min(Organization.id)).scalar_subquery()
        return stmt.where(Organization.id == first)
    return stmt.where(Organization.id == sa.bindparam("org_id", type_=sa.Integer))


def organization_parameters(org_id: int | None, key: str | None) -> dict:
    return {"org_id": org_id, "purpose_key": key}


def organization_with(org_id: int | None, key: str | None):
    """(organization, its purpose with this key) in one query (organization_statement): the
    organization None when there is none, the purpose None when the key is None or names none
    of its purposes."""
    stmt = organization_statement(org_id, key)
    row = db.session.execute(stmt, organization_parameters(org_id, key)).first()
    return (None, None) if row is None else (row[0], row[1])


def by_id(org: Organization | int, purpose_id: int) -> MessagePurpose | None:
    org_id = org if isinstance(org, int) else org.id
    purpose = db.session.get(MessagePurpose, purpose_id)
    return purpose if purpose is not None and purpose.organization_id == org_id else None


def general(org: Organization | int) -> MessagePurpose | None:
    """The organization's general purpose (what a message about nothing in particular is)."""
    for purpose in of(org):
        if purpose.is_general:
            return purpose
    return None


def choices(
    org: Organization | int, cells: Iterable[tuple[str, str]]
) -> dict[tuple[str, str, int], Status]:
    """{(channel, address, purpose_id): status} of the per-purpose choices on record for
    these (channel, address) cells."""
    org_id = org if isinstance(org, int) else org.id
    cells = list(dict.fromkeys((Channel(c).value, a) for c, a in cells))
    if not cells:
        return {}
    addresses = sorted({a for _, a in cells})
    rows = db.session.execute(
        sa.select(
            PurposeState.channel, PurposeState.address, PurposeState.purpose_id, PurposeState.status
        ).where(org_is(PurposeState.organization_id, org_id), PurposeState.address.in_(addresses))
    )
    return choices_of(rows, cells)


def choices_of(
    rows: Iterable[tuple[str, str, int, str]], cells: Iterable[tuple[str, str]]
) -> dict[tuple[str, str, int], Status]:
    """choices' answer from (channel, address, purpose_id, status) rows of purpose states,
    however they were read: the rows of these cells only."""
    wanted = {(Channel(c).value, a) for c, a in cells}
    return {
        (Channel(ch).value, addr, pid): Status(st)
        for ch, addr, pid, st in rows
        if (Channel(ch).value, addr) in wanted
    }
