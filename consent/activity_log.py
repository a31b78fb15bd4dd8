"""The activity log's export: every consent event of the organization under the log's filters,
newest first, as rows (header first) read from one server-side cursor. Times stay in UTC."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import sqlalchemy as sa

from consent import export
from consent.addresses import AddressError, normalize_any
from consent.extensions import db
from consent.models import ConsentEvent

EXPORT_COLUMNS = [
    ("id", "Event"),
    ("occurred_at", "When (UTC)"),
    ("channel", "Channel"),
    ("address", "Address"),
    ("kind", "Kind"),
    ("from_status", "From"),
    ("to_status", "To"),
    ("carrier_block", "Carrier block"),
    ("source", "Source"),
    ("actor_label", "By"),
    ("ip", "IP"),
    ("note", "Note"),
    ("evidence", "Evidence"),
    ("purpose", "Purpose"),  # last: columns before it keep their places
]
FILTERS = ("address", "channel", "source", "by", "from", "to", "kind")
EXPORT_CHUNK = 1_000


def cell(event: ConsentEvent, name: str) -> object:
    if name == "purpose":  # its key; empty for a change of the whole channel
        return event.purpose.key if event.purpose is not None else ""
    value = getattr(event, name)
    if name == "occurred_at":
        return export.when(value)
    if name == "carrier_block":
        return "Yes" if value else "No"
    if hasattr(value, "value"):
        return value.value
    return value


def address_of(value: str) -> str:
    """An address as staff type it: a phone any way (to E.164) or an email (any case)."""
    try:
        _kind, address = normalize_any(value)
    except AddressError:
        address = value.strip().lower()
    return address


def day(value: str) -> datetime | None:
    try:
        return datetime.strptime(value.strip(), "%Y-%m-%d")
    except ValueError:
        return None


def statement(
    org_id: int, filters: dict | None = None, *, sort: str | None = None, desc: bool = True
) -> sa.Select:
    """The log's events under its filters ({"address", "channel", "source", "by", "from",
    "to", "kind"}, as typed in its URL), newest first unless sorted by time ascending."""
    filters = {k: str(v).strip() for k, v in (filters or {}).items() if str(v).strip()}
    stmt = sa.select(ConsentEvent).where(ConsentEvent.organization_id == org_id)
    if "address" in filters:
        stmt = stmt.where(ConsentEvent.address == address_of(filters["address"]))
    for name in ("channel", "source", "kind"):
        if name in filters:
            stmt = stmt.where(getattr(ConsentEvent, name) == filters[name])
    if "by" in filters:
        stmt = stmt.where(ConsentEvent.actor_label.ilike(f"%{filters['by']}%"))
    if "from" in filters and day(filters["from"]):
        stmt = stmt.where(ConsentEvent.occurred_at >= day(filters["from"]))
    if "to" in filters and day(filters["to"]):
        stmt = stmt.where(ConsentEvent.occurred_at < day(filters["to"]) + timedelta(days=1))
    if sort == "occurred_at":
        order = [ConsentEvent.occurred_at, ConsentEvent.id]
    else:
        order = [ConsentEvent.id]
    return stmt.order_by(*(column.desc() if desc else column for column in order))


def rows(stmt: sa.Select) -> Iterator[list]:
    """The export's rows, header first, from one server-side cursor."""
    yield [label for _name, label in EXPORT_COLUMNS]
    for event in db.session.scalars(stmt.execution_options(yield_per=EXPORT_CHUNK)):
        yield [cell(event, name) for name, _label in EXPORT_COLUMNS]
