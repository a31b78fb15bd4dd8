"""The ledger's bulk engine: many opt-outs of one channel in a few statements per call.

`ledger.opt_out_many` checks the rule and builds what every row's event and state share; this
module writes them, per database: new addresses created with their first event in one step,
known ones locked, and those not yet opted out given an event and an update. It knows no rule
and sends no message (an import tells nobody).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import msgspec
import sqlalchemy as sa

from consent.addresses import sort_fields
from consent.database import begin_write, is_one_of, is_sqlite, org_is, pg_array
from consent.extensions import db
from consent.models import Channel, ConsentEvent, ConsentState, Source, Status

_ENCODE_JSON = msgspec.json.Encoder().encode


def evidence_json(value) -> str:
    """An event's evidence as JSON text, the same values json.dumps writes (compact, UTF-8 as
    is): msgspec takes a fifth of a microsecond where json.dumps takes four, once per row."""
    return _ENCODE_JSON(value).decode()


@dataclass
class BulkRow:
    """One address to opt out, with its evidence (file, row, batch) and note."""

    address: str
    evidence: dict
    note: str | None = None


@dataclass(frozen=True)
class BulkWrite:
    """What every row of one call shares: the event's and the state's values (built by the
    ledger), but for what each row brings."""

    org_id: int
    channel: Channel
    shared_event: dict
    shared_state: dict

    @property
    def source(self) -> Source:
        return self.shared_event["source"]

    @property
    def now(self) -> datetime:
        return self.shared_event["occurred_at"]

    @property
    def label(self) -> str:
        return self.shared_state["changed_by"]

    @property
    def user_id(self) -> int | None:
        return self.shared_state["changed_by_user_id"]

    def event(self, row: BulkRow, from_status, carrier_block: bool, version: int) -> dict:
        return self.shared_event | {
            "address": row.address,
            "from_status": from_status,
            "carrier_block": carrier_block,
            "note": row.note,
            "evidence": row.evidence,
            "state_version": version,
        }

    def state(self, row: BulkRow, carrier_block: bool, version: int, event_id: int) -> dict:
        return self.shared_state | {
            "carrier_block": carrier_block,
            "note": row.note,
            "version": version,
            "last_event_id": event_id,
        }


def opt_out_rows(
    write: BulkWrite, rows: list[BulkRow], meanwhile: Callable[[], None] | None = None
) -> dict[str, str]:
    """Opt out the rows (one per address), in the caller's transaction: {address: "imported" |
    "already"}.

    Addresses the organization has never seen (nearly every row of an import) are created with
    their event in one step: state version 1, `last_event_id` set, no second write of the row.
    Known addresses are locked, and those not already opted out get an event and an update.

    `meanwhile`, if given, may be run once in a thread of its own while the server finishes
    the new rows' events (see `_copy_new_postgresql`); it must touch neither the session nor the rows.
    """
    begin_write()
    result: dict[str, str] = {}
    if is_sqlite():
        states = _lock_many(write.org_id, write.channel, [row.address for row in rows])
        new_rows = [row for row in rows if row.address not in states]
        created = _create_many_sqlite(write, new_rows) if new_rows else set()
    else:
        states, created = _create_postgresql(write, rows, meanwhile)
        new_rows = [row for row in rows if row.address not in states]
    if new_rows:
        result.update(dict.fromkeys(created, "imported"))
        # PostgreSQL: another transaction created some of them meanwhile; they are known now.
        raced = [row.address for row in new_rows if row.address not in created]
        if raced:
            states.update(_lock_many(write.org_id, write.channel, raced))
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


def _change_many(write: BulkWrite, changed_rows: list[tuple[BulkRow, sa.Row]]) -> None:
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


def _sqlite_insert_many(
    cursor, table: sa.Table, shared: dict, varying: tuple[str, ...], rows: Iterable[tuple]
) -> None:
    """sqlite3's executemany of INSERTs: the `shared` values, converted once, then each
    row's `varying` values, each converted by its column's own type (what SQLAlchemy would
    send, without its per-row bookkeeping; the evidence by evidence_json)."""
    dialect = db.session.get_bind().dialect

    def processor(name: str):
        return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)

    fixed = tuple(
        convert(value) if (convert := processor(name)) else value for name, value in shared.items()
    )
    converters = [
        (i, evidence_json if name == "evidence" else convert)
        for i, name in enumerate(varying)
        if (convert := processor(name))
    ]

    def driver_row(values: tuple) -> tuple:
        if converters:
            values = list(values)
            for i, convert in converters:
                values[i] = convert(values[i])
        return fixed + tuple(values)

    names = (*shared, *varying)
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"  # noqa: S608
    cursor.executemany(sql, map(driver_row, rows))


def _create_many_sqlite(write: BulkWrite, rows: list[BulkRow]) -> set[str]:
    """Create the states of addresses not seen before, each with its first event (version 1).

    The transaction holds the write lock, so all are created: the event ids are the next
    rowids, and both inserts go through the driver's executemany (values converted once by the
    columns' own types). Returns the addresses."""
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
                (row.address, *sort_fields(write.channel, row.address), row.note, event_id)
                for event_id, row in numbered
            ),
        )
    finally:
        cursor.close()
    return {row.address for row in rows}


# PostgreSQL: the rows of one call are COPied into a temporary table of the session (event
# ids taken from the sequence in the caller's order as they go in); then one statement locks
# the known states (one index probe each) and another creates the new ones with their events.
_PG_STAGING = sa.text(
    """
    CREATE TEMPORARY TABLE IF NOT EXISTS bulk_opt_outs (
        id bigint NOT NULL DEFAULT nextval('consent_events_id_seq'),
        address text NOT NULL, sort_key text, digits text, note text, evidence json
    ) ON COMMIT DELETE ROWS
    """
)
_PG_STAGED_KNOWN = sa.text(
    """
    SELECT found.id, found.address, found.status, found.carrier_block, found.version
    FROM bulk_opt_outs AS wanted CROSS JOIN LATERAL (
        SELECT id, address, status, carrier_block, version FROM consent_states
        -- (SELECT :org_id): planned blind, as database.org_is explains (statistics taken
        -- before this import would send each probe through every row of the organization).
        WHERE organization_id = (SELECT CAST(:org_id AS integer)) AND channel = :channel
            AND address = wanted.address
        FOR UPDATE
    ) AS found
    """
)
# The states that are new (ON CONFLICT DO NOTHING skips the known ones and any another
# transaction created meanwhile), each with its event, both in address order (each index filled
# page by page); the foreign key from a state to its event is checked at the end of the
# statement, when both are in. The staging rows are deleted by the same statement.
_PG_CREATE_STAGED = sa.text(
    """
    WITH created AS (
        INSERT INTO consent_states (
            organization_id, channel, address, sort_key, digits, status, carrier_block, source,
            changed_at, changed_by, changed_by_user_id, note, version, last_event_id
        )
        SELECT CAST(:org_id AS integer), CAST(:channel AS varchar), address, sort_key, digits,
            'opted_out', false, CAST(:source AS varchar), CAST(:now AS timestamp),
            CAST(:label AS varchar), CAST(:user_id AS integer), note, 1, id
        FROM bulk_opt_outs
        ORDER BY address
        ON CONFLICT (organization_id, channel, address) DO NOTHING
        RETURNING last_event_id
    ), cleared AS (
        DELETE FROM bulk_opt_outs
    )
    INSERT INTO consent_events (
        id, organization_id, channel, address, kind, from_status, to_status, carrier_block,
        source, actor, actor_user_id, actor_label, occurred_at, ip, user_agent, note, evidence,
        state_version
    )
    SELECT staged.id, CAST(:org_id AS integer), CAST(:channel AS varchar), staged.address,
        'change', NULL, 'opted_out', false, CAST(:source AS varchar), CAST(:actor AS varchar),
        CAST(:user_id AS integer), CAST(:actor_label AS varchar), CAST(:now AS timestamp),
        CAST(:ip AS varchar), CAST(:user_agent AS varchar), staged.note, staged.evidence, 1
    FROM bulk_opt_outs AS staged JOIN created ON created.last_event_id = staged.id
    ORDER BY staged.address
    RETURNING address
    """
)


# Taken on the driver's cursor: through the session, 5,000 ids took 12.6 ms (9.8 ms of it
# SQLAlchemy's handling of 5,000 rows); on the cursor, 3.1 ms.
_PG_EVENT_IDS = "SELECT nextval('consent_events_id_seq') FROM generate_series(1, %s) ORDER BY 1"
_EVENT_COLUMNS = (
    "id, organization_id, channel, address, kind, from_status, to_status, carrier_block, "
    "source, actor, actor_user_id, actor_label, occurred_at, ip, user_agent, note, evidence, "
    "state_version"
)
_STATE_COLUMNS = (
    "organization_id, channel, address, sort_key, digits, status, carrier_block, source, "
    "changed_at, changed_by, changed_by_user_id, note, version, last_event_id"
)
# Set on the session when a call found known addresses: the next calls of that session (the
# rest of a re-imported file) go straight to the staging path.
_KNOWN_SEEN = "ledger_bulk_known_seen"


def _create_postgresql(
    write: BulkWrite, rows: list[BulkRow], meanwhile: Callable[[], None] | None = None
) -> tuple[dict[str, sa.Row], set[str]]:
    """(known states, locked; addresses created). Nearly every row of an import is an address
    the organization has never seen: those go straight in by COPY (`_copy_new_postgresql`);
    when any of them has a state already, nothing of that attempt stays, and the staging path
    sorts the rows out under the ledger's rules."""
    if not db.session.info.get(_KNOWN_SEEN) and _copy_new_postgresql(write, rows, meanwhile):
        return {}, {row.address for row in rows}
    known, created = _stage_and_create_postgresql(write, rows)
    db.session.info[_KNOWN_SEEN] = bool(known)
    return known, created


def _copy_new_postgresql(
    write: BulkWrite, rows: list[BulkRow], meanwhile: Callable[[], None] | None = None
) -> bool:
    """Write every row as a new address, its event and its state (version 1), by COPY, under a
    savepoint; False, with nothing written, when any of them has a state already (the unique
    index refuses it; one created meanwhile by another transaction is refused the same way).

    Event ids are taken from the sequence in the caller's order; the rows go in address order
    (each index filled page by page), events first (each state points at its event).

    `meanwhile` is run in a thread of its own once the events are sent. The server is still
    inserting them then and, at the end of the statement, checks their foreign keys, while
    this thread only waits, without the GIL (4.1 s of the 5.6 s that an import's COPYs of
    100,000 new addresses took): work started there (an import reading and planning its
    next chunk) runs in that wait instead of after it. What it raises is raised here."""
    import psycopg
    from psycopg.copy import QueuedLibpqWriter

    event = write.event(rows[0], None, False, 1)
    org_id, channel, source = write.org_id, write.channel.value, write.source.value
    actor, user_id, actor_label = event["actor"], write.user_id, event["actor_label"]
    now, ip, user_agent, label = write.now, event["ip"], event["user_agent"], write.label
    dumps = evidence_json
    driver = db.session.connection().connection.driver_connection
    pending = None
    # The pool's exit waits for the work, raising nothing: on a database error, that error is
    # the one to see.
    with (
        driver.cursor() as cursor,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-meanwhile") as helper,
    ):
        cursor.execute(_PG_EVENT_IDS, (len(rows),))
        ids = [event_id for (event_id,) in cursor]
        numbered = sorted(zip(ids, rows, strict=True), key=lambda pair: pair[1].address)
        cursor.execute("SAVEPOINT ledger_bulk_copy")
        try:
            # The queued writer sends from a thread: the rows are formatted here while the
            # server takes the ones before.
            events_sql = f"COPY consent_events ({_EVENT_COLUMNS}) FROM STDIN"  # noqa: S608
            with cursor.copy(events_sql, writer=QueuedLibpqWriter(cursor)) as copy:
                for event_id, row in numbered:
                    copy.write_row(
                        (
                            event_id, org_id, channel, row.address, "change", None, "opted_out",
                            False, source, actor, user_id, actor_label, now, ip, user_agent,
                            row.note, dumps(row.evidence), 1,
                        )
                    )  # fmt: skip
                if meanwhile is not None:  # the server takes the rows; exit waits for it
                    pending = helper.submit(meanwhile)
            if pending is not None:
                pending.result()
            states_sql = f"COPY consent_states ({_STATE_COLUMNS}) FROM STDIN"  # noqa: S608
            with cursor.copy(states_sql, writer=QueuedLibpqWriter(cursor)) as copy:
                for event_id, row in numbered:
                    copy.write_row(
                        (
                            org_id, channel, row.address, *sort_fields(write.channel, row.address),
                            "opted_out", False, source, now, label, user_id, row.note, 1, event_id,
                        )
                    )  # fmt: skip
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT ledger_bulk_copy")
            if pending is not None:
                pending.result()
            return False
        cursor.execute("RELEASE SAVEPOINT ledger_bulk_copy")
    return True


def _stage_and_create_postgresql(
    write: BulkWrite, rows: list[BulkRow]
) -> tuple[dict[str, sa.Row], set[str]]:
    """COPY the rows into the session's staging table, lock the states already known (returned
    by address), and create the others with their events. Returns (known, created)."""
    connection = db.session.connection()
    # Every time: a transaction rolled back takes the table it created with it.
    connection.execute(_PG_STAGING)
    driver = connection.connection.driver_connection
    channel = write.channel
    dumps = evidence_json
    with driver.cursor() as cursor:
        with cursor.copy(
            "COPY bulk_opt_outs (address, sort_key, digits, note, evidence) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(
                    (row.address, *sort_fields(channel, row.address), row.note, dumps(row.evidence))
                )
    params = {"org_id": write.org_id, "channel": channel.value}
    known = {row.address: row for row in connection.execute(_PG_STAGED_KNOWN, params)}
    event = write.event(rows[0], None, False, 1)
    params |= {
        "source": write.source.value,
        "now": write.now,
        "label": write.label,
        "user_id": write.user_id,
        "actor": event["actor"],
        "actor_label": event["actor_label"],
        "ip": event["ip"],
        "user_agent": event["user_agent"],
    }
    created = set(connection.execute(_PG_CREATE_STAGED, params).scalars())
    return known, created


def _lock_many(org_id: int, channel: str, addresses: list[str]) -> dict[str, sa.Row]:
    """The current (id, address, status, carrier_block, version) of these addresses, locked."""
    table = ConsentState.__table__
    columns = (table.c.id, table.c.address, table.c.status, table.c.carrier_block, table.c.version)
    if is_sqlite():
        stmt = sa.select(*columns).where(
            org_is(table.c.organization_id, org_id),
            table.c.channel == channel,
            is_one_of(table.c.address, addresses),  # one parameter, not 5,000
        )
    else:
        # One index probe per listed address (a LATERAL subquery), whatever the statistics
        # say: during a big import into an organization that had few rows, they are stale,
        # and a plain join or "= ANY" then reads (and hashes) every row of the organization
        # for every chunk, so each chunk costs more than the last.
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


def create_new_states(write: BulkWrite, rows: list[BulkRow]) -> set[str]:
    """Of these rows, create the states of the addresses that have none, each with its first
    event (version 1, the write's status and source): states first (ON CONFLICT DO NOTHING,
    so an address created meanwhile is left to the caller), then their events, then each
    state's last event. Returns the addresses created."""
    from sqlalchemy.dialects import postgresql, sqlite

    begin_write()
    known = _lock_many(write.org_id, write.channel, [row.address for row in rows])
    rows = sorted((row for row in rows if row.address not in known), key=lambda r: r.address)
    if not rows:
        return set()
    states_table, events_table = ConsentState.__table__, ConsentEvent.__table__
    insert = (sqlite.insert if is_sqlite() else postgresql.insert)(states_table)
    created = db.session.execute(
        insert.on_conflict_do_nothing(
            index_elements=["organization_id", "channel", "address"]
        ).returning(states_table.c.id, states_table.c.address),
        [
            write.state(row, False, 1, None)
            | {
                "organization_id": write.org_id,
                "channel": write.channel,
                "address": row.address,
                "sort_key": sort_key,
                "digits": digits,
            }
            for row in rows
            for sort_key, digits in [sort_fields(write.channel, row.address)]
        ],
    ).all()
    state_ids = {address: state_id for state_id, address in created}
    if not state_ids:
        return set()
    events = db.session.execute(
        sa.insert(events_table).returning(events_table.c.id, events_table.c.address),
        [write.event(row, None, False, 1) for row in rows if row.address in state_ids],
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
