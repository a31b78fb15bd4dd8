"""An in-process snapshot of one organization's phone states, for the eligibility API.

Per (database, organization, channel) for text and voice: every channel-wide state as
{E.164 number as an int: code} (code = status 0 none/unknown, 1 opted_in, 2 opted_out,
3 bounced, + 4 when it carries a carrier block), and every per-purpose choice as
{purpose id: {number: status code}}. Built once per process from consent_states and
consent_purpose_states, then brought up to date on every use from the change feed's events in
ONE indexed query (consent_events by organization and id on SQLite, by txid on PostgreSQL), in
the same statement snapshot as nothing else: an answer is never staler than the last change
committed before the request asked.

Why it is exact (the property test in tests/test_eligibility_snapshot.py compares it with the
database path on random ledgers):
- every state and every per-purpose choice is moved by the ledger with an event whose
  `to_status` and `carrier_block` are the state's new values (consent/ledger.py,
  consent/ledger_bulk.py); so the newest event of an address is its state;
- SQLite: one writer at a time and ids taken under the lock, so id order is commit order; the
  events after the last id applied are exactly the changes committed since;
- PostgreSQL: the events not yet applied are those whose transaction was not visible in the
  statement snapshot of the last refresh (txid >= its xmin and not committed in it: at or above
  its xmax, or in its in-progress list). The refresh reads every event with txid >= that xmin
  together with `pg_current_snapshot()` (the same statement, so the same snapshot), applies
  the ones that are new in id order (one address's changes are serialized by its row lock, so
  its newest event has its highest id) and keeps the new snapshot. A transaction left open
  long keeps xmin back: the refresh then re-reads (and skips) the events since, it never misses.
- the build reads the cursor BEFORE the states, so a change committed in between is applied
  again by the next refresh: harmless, the newest event wins.
- a database emptied or restored under a running process (the tests do it between tests) is
  noticed: the last event applied is read back by id with its time; when it is gone or
  different, the snapshot is built again.

Memory: a Python int key and a dict slot, about 90 bytes per state of the channel (1,000,000
text states: about 90 MiB per process); nothing per request. Emails are not snapshotted (the
email channel keeps the database path). Callers must not hold uncommitted writes in the
session (the API's eligibility routes only read); consent.outbox keeps the database path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import sqlalchemy as sa

from consent.extensions import db

PHONE_CHANNELS = frozenset({"text", "voice"})
STATUS_CODE = {None: 0, "unknown": 0, "opted_in": 1, "opted_out": 2, "bounced": 3}
CODE_STATUS = (None, "opted_in", "opted_out", "bounced")
BLOCK = 4

_FIELDS = "e.id, e.channel, e.address, e.to_status, e.carrier_block, e.purpose_id, e.occurred_at"
_SQLITE_REFRESH = sa.text(
    "SELECT (SELECT occurred_at FROM consent_events WHERE id = :last) AS anchor, "  # noqa: S608
    f"{_FIELDS}, NULL AS txid FROM (SELECT 1) AS one "
    "LEFT JOIN consent_events AS e ON e.organization_id = :org AND e.id > :last "
    "AND e.kind IN ('change', 'revert') ORDER BY e.id"
)
_PG_REFRESH = sa.text(
    "SELECT (SELECT occurred_at FROM consent_events WHERE id = :last) AS anchor, "  # noqa: S608
    "e.id, CAST(e.channel AS text) AS channel, e.address, CAST(e.to_status AS text) AS to_status, "
    "e.carrier_block, e.purpose_id, e.occurred_at, CAST(e.txid AS text) AS txid, "
    "CAST(pg_current_snapshot() AS text) AS snap FROM (SELECT 1) AS one "
    "LEFT JOIN consent_events AS e ON e.organization_id = :org "
    "AND e.txid >= CAST(:xmin AS xid8) AND e.kind IN ('change', 'revert') ORDER BY e.id"
)
_SQLITE_LAST = sa.text(
    "SELECT id, occurred_at FROM consent_events WHERE organization_id = :org "
    "ORDER BY id DESC LIMIT 1"
)
_PG_NOW = sa.text(
    "SELECT CAST(pg_current_snapshot() AS text) AS snap, (SELECT id FROM consent_events "
    "ORDER BY id DESC LIMIT 1) AS last"
)
_ANCHOR = sa.text("SELECT occurred_at FROM consent_events WHERE id = :id")
_STATES = sa.text(
    "SELECT address, CAST(status AS text), carrier_block FROM consent_states "
    "WHERE organization_id = :org AND CAST(channel AS text) = :channel"
)
_PURPOSE_STATES = sa.text(
    "SELECT purpose_id, address, CAST(status AS text) FROM consent_purpose_states "
    "WHERE organization_id = :org AND CAST(channel AS text) = :channel"
)


def number_key(address: str) -> int | str:
    """The key of a normalized phone: the E.164 digits as an int ("+12025550111" ->
    12025550111); anything else (never written by the ledger for phones) as itself."""
    if address[:1] == "+" and address[1:].isascii() and address[1:].isdigit():
        return int(address[1:])
    return address


@dataclass(frozen=True)
class _PgSnapshot:
    xmin: int
    xmax: int
    running: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> _PgSnapshot:
        xmin, xmax, running = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in running.split(",") if x))

    def saw(self, txid: int) -> bool:
        """The transaction's writes were visible (committed) in this snapshot."""
        return txid < self.xmin or (txid < self.xmax and txid not in self.running)


@dataclass
class Snapshot:
    """One organization's states of one phone channel, and the cursor they are up to."""

    org_id: int
    channel: str
    states: dict = field(default_factory=dict)
    purposes: dict = field(default_factory=dict)
    last_id: int = 0  # the newest event applied (SQLite: the cursor)
    anchor: object = None  # its occurred_at, as the driver gives it (reset detection)
    pg: _PgSnapshot | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, address: str, to_status: str | None, carrier_block, purpose_id) -> None:
        key = number_key(address)
        code = STATUS_CODE.get(to_status, 0)
        if purpose_id is None:
            self.states[key] = code | (BLOCK if carrier_block else 0)
        else:
            self.purposes.setdefault(purpose_id, {})[key] = code

    def size(self) -> int:
        return len(self.states) + sum(len(p) for p in self.purposes.values())


_SNAPSHOTS: dict[tuple, Snapshot] = {}
_REGISTRY_LOCK = threading.Lock()


def of(org_id: int, channel: str) -> Snapshot:
    """The organization's snapshot of this phone channel, up to date with every committed
    change (built on first use in this process; one query per use afterwards)."""
    channel = str(channel)
    if channel not in PHONE_CHANNELS:
        raise ValueError(f"no snapshot of the {channel} channel")
    session = db.session
    bind = session.get_bind()
    key = (str(bind.url), org_id, channel)
    with _REGISTRY_LOCK:
        snap = _SNAPSHOTS.get(key)
        if snap is None:
            snap = _SNAPSHOTS[key] = Snapshot(org_id, channel)
            snap.anchor = _UNBUILT
    postgres = bind.dialect.name == "postgresql"
    with snap.lock:
        if snap.anchor is _UNBUILT or not _refresh(session, snap, postgres):
            _build(session, snap, postgres)
    return snap


_REFRESH_COLUMNS = (
    "anchor", "id", "channel", "address", "to_status", "carrier_block", "purpose_id",
    "occurred_at", "txid",
)  # fmt: skip


_JOINED: dict = {}  # (around, PostgreSQL?) -> the statement it made (built once)


def of_joined(org_id: int, channel: str, around, params: dict):
    """`of`, with the refresh's statement joined into the caller's (one round trip for both):
    around(refresh) -> a SELECT of the caller's columns and every column of `refresh` (built
    once per `around`, kept: its values go in `params`, beside the refresh's own) (a
    subquery of one row or more: the changes since, in id order when the caller orders by
    `refresh.c.id`). Returns (the snapshot, up to date, and the rows); (None, None) when the
    snapshot is not built yet (nothing was asked); (None, []) when the caller's statement found
    nothing (the snapshot is left as it was). In both cases the caller uses `of`."""
    channel = str(channel)
    if channel not in PHONE_CHANNELS:
        raise ValueError(f"no snapshot of the {channel} channel")
    session = db.session
    bind = session.get_bind()
    snap = _SNAPSHOTS.get((str(bind.url), org_id, channel))
    if snap is None or snap.anchor is _UNBUILT:
        return None, None
    postgres = bind.dialect.name == "postgresql"
    with snap.lock:
        statement, own = _refresh_statement(snap, postgres)
        joined = _JOINED.get((around, postgres))
        if joined is None:
            names = _REFRESH_COLUMNS + (("snap",) if postgres else ())
            refresh = statement.columns(*(sa.column(n) for n in names)).subquery("refresh")
            joined = _JOINED[(around, postgres)] = around(refresh)
        rows = session.execute(joined, {**params, **own}).all()
        if not rows:
            return None, rows
        if not _apply(snap, rows, postgres):
            _build(session, snap, postgres)
    return snap, rows


def forget() -> None:
    """Drop every snapshot of this process (the next use builds them again)."""
    with _REGISTRY_LOCK:
        _SNAPSHOTS.clear()


_UNBUILT = object()


def _build(session, snap: Snapshot, postgres: bool) -> None:
    """Read the cursor, then every state and choice of the channel."""
    states: dict = {}
    purposes: dict = {}
    if postgres:
        now = session.execute(_PG_NOW).one()
        pg, last = _PgSnapshot.parse(now.snap), now.last or 0
        anchor = session.execute(_ANCHOR, {"id": last}).scalar() if last else None
    else:
        row = session.execute(_SQLITE_LAST, {"org": snap.org_id}).first()
        pg, last, anchor = None, (row.id if row else 0), (row.occurred_at if row else None)
    params = {"org": snap.org_id, "channel": snap.channel}
    for address, status, blocked in session.execute(_STATES, params):
        states[number_key(address)] = STATUS_CODE.get(status, 0) | (BLOCK if blocked else 0)
    for purpose_id, address, status in session.execute(_PURPOSE_STATES, params):
        purposes.setdefault(purpose_id, {})[number_key(address)] = STATUS_CODE.get(status, 0)
    snap.states, snap.purposes = states, purposes
    snap.last_id, snap.anchor, snap.pg = last, anchor, pg
    if postgres:
        # The changes committed between the cursor and the states are applied once more.
        _refresh(session, snap, postgres)


def _refresh(session, snap: Snapshot, postgres: bool) -> bool:
    """Apply the changes committed since; False when the database no longer holds the last
    event applied (emptied or restored): the snapshot must be built again."""
    statement, params = _refresh_statement(snap, postgres)
    return _apply(snap, session.execute(statement, params).all(), postgres)


def _refresh_statement(snap: Snapshot, postgres: bool):
    if postgres:
        params = {"org": snap.org_id, "last": snap.last_id, "xmin": str(snap.pg.xmin)}
        return _PG_REFRESH, params
    return _SQLITE_REFRESH, {"org": snap.org_id, "last": snap.last_id}


def _apply(snap: Snapshot, rows, postgres: bool) -> bool:
    """Apply the refresh's rows (any order of rows but the events' own: by id)."""
    if snap.last_id and rows[0].anchor != snap.anchor:
        return False
    seen = snap.pg
    channel = snap.channel
    for row in rows:
        if row.id is None:
            continue
        if postgres and seen.saw(int(row.txid)):
            continue
        if row.channel == channel:
            snap.apply(row.address, row.to_status, row.carrier_block, row.purpose_id)
        if row.id > snap.last_id:
            snap.last_id, snap.anchor = row.id, row.occurred_at
    if postgres:
        snap.pg = _PgSnapshot.parse(rows[0].snap)
    return True
