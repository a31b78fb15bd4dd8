"""The change feed: an organization's consent changes, oldest first, read page by page with a
cursor that misses nothing and returns nothing twice while changes keep committing.

Why not "id > cursor": on PostgreSQL event ids come from a sequence when the row is written,
not when its transaction commits, so a transaction that took id 10 may commit after one that
took id 11. A reader that had passed 11 would never see 10.

So on PostgreSQL every event keeps the id of the transaction that wrote it (`txid`, xid8,
filled by the database), and the feed reads in (txid, id) order, only events whose transaction
is older than the oldest one still running (`pg_snapshot_xmin(pg_current_snapshot())`): those
are all finished, so no event can appear later before the cursor. Any transaction that starts
afterwards gets a larger txid than every one returned. A transaction left open for a long time
holds the feed back (it lags, it never skips). On SQLite one writer holds the lock at a time and
ids are taken under it, so id order is commit order; txid is NULL and the cursor is the id.

The cursor is "<txid>-<id>" (opaque to callers); "0-0" or none starts at the beginning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from consent.database import is_sqlite
from consent.extensions import db

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
_CURSOR = re.compile(r"^(\d{1,20})-(\d{1,19})$")

_COLUMNS = (
    "e.id, e.occurred_at, e.channel, e.address, e.from_status, e.to_status, e.source, "
    "e.carrier_block, e.state_version, p.key AS purpose"
)
# The purpose's key (NULL: the change is channel-wide, every purpose reads it).
_FROM = "consent_events e LEFT JOIN message_purposes p ON p.id = e.purpose_id"
_PG_PAGE = sa.text(
    f"SELECT {_COLUMNS}, e.txid FROM {_FROM} "  # noqa: S608 - constant columns
    "WHERE e.organization_id = :org AND (e.txid, e.id) > (CAST(:txid AS xid8), :id) "
    "AND e.txid < pg_snapshot_xmin(pg_current_snapshot()) AND e.kind IN ('change', 'revert') "
    "ORDER BY e.txid, e.id LIMIT :limit"
).columns(occurred_at=sa.DateTime, carrier_block=sa.Boolean)
_SQLITE_PAGE = sa.text(
    f"SELECT {_COLUMNS}, 0 AS txid FROM {_FROM} "  # noqa: S608 - constant columns
    "WHERE e.organization_id = :org AND e.id > :id AND e.kind IN ('change', 'revert') "
    "ORDER BY e.id LIMIT :limit"
).columns(occurred_at=sa.DateTime, carrier_block=sa.Boolean)


class CursorError(ValueError):
    """A cursor this feed did not give."""


@dataclass(frozen=True)
class Cursor:
    txid: int = 0
    id: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if text is None or text == "":
            return cls()
        match = _CURSOR.match(text)
        if not match:
            raise CursorError("after must be a cursor given by this feed (its `next`).")
        txid, event_id = int(match.group(1)), int(match.group(2))
        if txid >= 2**63 or event_id >= 2**63:
            raise CursorError("after must be a cursor given by this feed (its `next`).")
        return cls(txid, event_id)

    def __str__(self) -> str:
        return f"{self.txid}-{self.id}"


def _iso(value) -> str:
    return value.isoformat(timespec="milliseconds") + "Z"


def event_dict(row) -> dict:
    """One change as the feed and the webhooks give it."""
    return {
        "id": row.id,
        "at": _iso(row.occurred_at),
        "channel": str(row.channel),
        "address": row.address,
        "from": row.from_status,
        "to": row.to_status,
        "source": str(row.source),
        "carrier_block": bool(row.carrier_block),
        "version": row.state_version,
        "purpose": row.purpose,
    }


def page(org_id: int, after: Cursor, limit: int = DEFAULT_LIMIT) -> tuple[list[dict], Cursor]:
    """Up to `limit` changes after the cursor, oldest first, and the cursor to continue."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    if is_sqlite():
        rows = db.session.execute(
            _SQLITE_PAGE, {"org": org_id, "id": after.id, "limit": limit}
        ).all()
    else:
        rows = db.session.execute(
            _PG_PAGE, {"org": org_id, "txid": str(after.txid), "id": after.id, "limit": limit}
        ).all()
    if not rows:
        return [], after
    last = rows[-1]
    return [event_dict(row) for row in rows], Cursor(int(last.txid or 0), last.id)
