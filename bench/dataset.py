"""The shared benchmark data set: a large district with years of opt-outs.

    python -m bench.dataset [--database URL ...] [--scale S] [--rebuild]

At scale 1 (README "Performance"): one organization with 24 sites, 100,000 families,
200,000 contacts (each with a cell phone and an email), 150,000 students (30,000 with a cell),
1,000,000 consent states with status opted_out (500,000 text, 200,000 voice, 300,000 email,
from every source a district sees), 210,000 opted_in text states (the families' cells that
still receive texts), and 2,000,000 consent events: each state's history (an opt-in, then the
opt-out; or a single opt-out from an import or a STOP without a recorded opt-in), with
`state.version` = the number of its change events and `state.last_event_id` its last one.
Events are numbered in time order over five years. Every phone is a valid US number in E.164
(`consent.addresses.normalize_phone` agrees: a sample is checked on each build); every email is
a valid lower-case address. Logins: an organization admin and a parent (Parent 1 of the first
family), both with the password PASSWORD.

This is a BENCHMARK FIXTURE written straight into the tables (COPY on PostgreSQL, executemany
in one transaction on SQLite with `PRAGMA synchronous=OFF`, foreign-key checks off and the
secondary indexes built after the load), NOT through consent.ledger: two million ledger calls
would take hours. It is the only code outside consent/ledger.py that writes consent rows, and it
writes only into a database of its own. The data set is kept and reused when the database holds
one of the same scale and version (the `bench_dataset` table records it); anything else in the
database is dropped first.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
VERSION = 1
PASSWORD = "bench-pass-1"
ADMIN_EMAIL = "admin@bench.example.org"
ORG_NAME = "Bench Unified School District"

# Area codes in service in the US and exchanges that phonenumbers accepts for them (no N11,
# no 555, 950, 958, 959, 976): every (area, exchange, line) below is a valid number.
AREA_CODES = (
    "201 202 203 205 206 207 208 209 210 212 213 214 215 216 217 218 219 224 225 228 229 231 "
    "234 239 240 248 251 252 253 254 256 260 262 267 269 270 272 276 281 301 302 303 304 305 "
    "307 308 309 310 312 313 314 315 316 317 318 319 320 321 323 325 330 331 334 336 337 339 "
    "347 351 352 360 361 385 386 401 402 404 405 406 407 408 409 410 412 413 414 415 417 419 "
    "423 424 425 430 432 434 435 440 442 443 469 470 475 478 479 480 484 501 502 503 504 505 "
    "507 508 509 510 512 513 515 516 517 518 520 530 539 540 541 551 559 561 562 563 567 570 "
    "571 573 574 575 580 585 586 601 602 603 605 606 607 608 609 610 612 614 615 616 617 618"
).split()
EXCHANGES = [e for e in range(200, 1000) if e % 100 != 11 and e not in (555, 950, 958, 959, 976)]
FIRST = (
    "ana luis sofia maria jose james mary john linda david emma noah olivia liam ava mia "
    "ethan amelia lucas harper mateo camila leo aria kai nora omar layla yusuf zoe wei mei "
    "hiro anh minh priya arjun fatima ali grace henry isabel jack kate leah max nina owen"
).split()
LAST = (
    "rivera garcia smith johnson nguyen tran kim lee patel shah brown jones miller davis "
    "lopez gonzalez wilson anderson thomas taylor moore martin jackson white harris clark "
    "lewis young walker hall allen king wright scott green baker adams nelson hill campbell"
).split()
DOMAINS = ("example.org", "example.com", "mail.example.net", "family.example.org")
SITE_NAMES = [f"{name} Elementary" for name in ("Oak", "Pine", "Cedar", "Birch", "Elm", "Ash")]
SITE_NAMES += [f"{name} Elementary" for name in ("Maple", "Willow", "Aspen", "Spruce", "Alder")]
SITE_NAMES += [f"{name} Elementary" for name in ("Hazel", "Laurel", "Juniper", "Poplar", "Fir")]
SITE_NAMES += [f"{name} Middle" for name in ("North", "South", "East", "West")]
SITE_NAMES += [f"{name} High" for name in ("Central", "Valley", "Ridge", "Harbor")]
GRADES = ["K", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]
START = datetime(2020, 8, 1, 7, 0, 0)
SPAN_S = 5 * 365 * 86400
# Opt-out sources by channel, as (source, weight): most text opt-outs are STOP replies.
SOURCES = {
    "text": (
        ("sms_keyword", 50),
        ("portal", 20),
        ("import", 13),
        ("admin", 10),
        ("carrier", 5),
        ("sms_reply", 2),
    ),
    "voice": (("portal", 50), ("admin", 30), ("import", 20)),
    "email": (("one_click", 40), ("email_link", 30), ("portal", 15), ("import", 10), ("admin", 5)),
}
BLOCKING = ("sms_keyword", "carrier", "sms_reply")
USER_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"


def phone(i: int) -> str:
    """The i-th number of the pool: distinct for every i below 1.2 billion, always valid."""
    area = AREA_CODES[i % len(AREA_CODES)]
    rest = i // len(AREA_CODES)
    exchange_index = rest % len(EXCHANGES)
    q = rest // len(EXCHANGES)
    line = (q * 7919 + exchange_index * 31 + (i % len(AREA_CODES)) * 17) % 10000
    return f"+1{area}{EXCHANGES[exchange_index]}{line:04d}"


def email(i: int) -> str:
    """The i-th email of the pool (distinct by its number)."""
    first = FIRST[i % len(FIRST)]
    last = LAST[(i // len(FIRST)) % len(LAST)]
    return f"{first}.{last}{i}@{DOMAINS[i % len(DOMAINS)]}"


@dataclass(frozen=True)
class Layout:
    """The sizes of one scale, and where each kind of address sits in the pools.

    Phone pool: [contacts' cells][students' cells][history: numbers no longer on record].
    Email pool: [contacts' emails][history].
    """

    scale: float
    families: int
    contacts: int
    students: int
    student_cells: int
    text_out_contacts: int  # the last ones of the contacts' cells
    text_out_history: int
    voice_out_contacts: int
    voice_out_history: int  # history[voice_history_start:...]: also opted out of texts
    voice_history_start: int
    email_out_contacts: int
    email_out_history: int
    events: int

    @classmethod
    def of(cls, scale: float) -> Layout:
        def n(value: int) -> int:
            return max(1, round(value * scale))

        families = n(100_000)
        contacts = 2 * families
        return cls(
            scale=scale,
            families=families,
            contacts=contacts,
            students=families + families // 2,
            student_cells=n(30_000),
            text_out_contacts=n(20_000),
            text_out_history=n(480_000),
            voice_out_contacts=n(30_000),
            voice_out_history=n(170_000),
            voice_history_start=n(300_000),
            email_out_contacts=n(30_000),
            email_out_history=n(270_000),
            events=n(2_000_000),
        )

    @property
    def history_phone_start(self) -> int:
        return self.contacts + self.student_cells

    @property
    def history_email_start(self) -> int:
        return self.contacts

    @property
    def opted_out(self) -> int:
        return (
            self.text_out_contacts
            + self.text_out_history
            + self.voice_out_contacts
            + self.voice_out_history
            + self.email_out_contacts
            + self.email_out_history
        )

    @property
    def opted_in(self) -> int:
        return self.contacts - self.text_out_contacts + self.student_cells

    def states(self):
        """Every state as (channel, address, status), in state-index order."""
        h = self.history_phone_start
        c = self.contacts
        for i in range(c - self.text_out_contacts):
            yield "text", phone(i), "opted_in"
        for i in range(self.student_cells):
            yield "text", phone(c + i), "opted_in"
        for i in range(c - self.text_out_contacts, c):
            yield "text", phone(i), "opted_out"
        for i in range(self.text_out_history):
            yield "text", phone(h + i), "opted_out"
        for i in range(c - self.voice_out_contacts, c):
            yield "voice", phone(i), "opted_out"
        start = h + self.voice_history_start
        for i in range(self.voice_out_history):
            yield "voice", phone(start + i), "opted_out"
        for i in range(c - self.email_out_contacts, c):
            yield "email", email(i), "opted_out"
        for i in range(self.email_out_history):
            yield "email", email(self.history_email_start + i), "opted_out"

    # Samples for the benchmarks, computed, not read back.
    def text_opted_out(self, k: int, rng: random.Random) -> list[str]:
        """k text numbers that are opted out (distinct when the data set has that many)."""
        total = self.text_out_history
        picks = rng.sample(range(total), k) if k <= total else rng.choices(range(total), k=k)
        return [phone(self.history_phone_start + i) for i in picks]

    def unknown_numbers(self, k: int, rng: random.Random) -> list[str]:
        """k distinct valid numbers with no state at all (beyond every pool in use)."""
        base = self.history_phone_start + self.voice_history_start + self.voice_out_history
        base = max(base, self.history_phone_start + self.text_out_history) + 1000
        picks = rng.sample(range(10 * max(k, 1000)), k)
        return [phone(base + i) for i in picks]

    def email_opted_out(self, i: int) -> str:
        return email(self.history_email_start + i % self.email_out_history)


@dataclass
class Dataset:
    """A built data set: its layout and the handles the benchmarks need."""

    layout: Layout
    org_id: int
    admin_id: int
    admin_email: str
    parent_id: int
    parent_email: str
    password: str = PASSWORD


def _weights(pairs):
    out = []
    for name, weight in pairs:
        out.extend([name] * weight)
    return out


_SOURCE_TABLE = {channel: _weights(pairs) for channel, pairs in SOURCES.items()}


def _source(channel: str, index: int) -> str:
    table = _SOURCE_TABLE[channel]
    return table[(index * 2654435761 >> 7) % len(table)]


def _opt_in_source(index: int) -> str:
    return ("enrollment", "enrollment", "portal", "staff_entry")[(index * 40503 >> 3) % 4]


IMPORT_ORG_NAME = "Bench Import District"


def import_org(app) -> int:
    """A second organization in the same database, for import benchmarks: emptied of its
    consent rows and batches (the shared data set stays as built). Returns its id."""
    from consent.extensions import db
    from consent.models import Organization

    with app.app_context():
        org_id = db.session.scalar(
            sa.select(Organization.id).where(Organization.name == IMPORT_ORG_NAME)
        )
        if org_id is None:
            org = Organization(
                name=IMPORT_ORG_NAME,
                texting_number="+12025550199",
                notification_email="office@import.example.org",
            )
            db.session.add(org)
            db.session.commit()
            org_id = org.id
        db.session.remove()
        _empty_organization(db.engine, org_id)
    return org_id


def _empty_organization(engine, org_id: int) -> None:
    """Delete an organization's consent rows, events included: the bench's scratch space, not
    a ledger (the models refuse to delete events). Foreign-key checks are off meanwhile, or
    each deleted event would scan the states for a reference (last_event_id has no index:
    the app never deletes events)."""
    tables = ("consent_states", "outbox_messages", "consent_events", "import_batches")
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        else:
            cursor.execute("PRAGMA foreign_keys = OFF")
            cursor.execute("BEGIN IMMEDIATE")
        marker = "%s" if engine.dialect.name == "postgresql" else "?"
        deleted = 0
        for name in tables:
            cursor.execute(f"DELETE FROM {name} WHERE organization_id = {marker}", (org_id,))  # noqa: S608
            deleted += max(cursor.rowcount, 0)
        if engine.dialect.name == "postgresql":
            cursor.execute("SET session_replication_role = origin")
            raw.commit()
        else:
            cursor.execute("COMMIT")
            cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()
    finally:
        raw.close()
    if deleted and engine.dialect.name == "postgresql":
        # Dead rows left behind would slow every later bench (index-only scans visit the
        # heap for them) until a vacuum; servers run with autovacuum off, as this machine's
        # does, would never get one. No ANALYZE: the import's stale statistics stay real.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in tables:
                conn.exec_driver_sql(f"VACUUM {name}")


def write_import_csv(path: str | Path, layout: Layout, rows: int) -> int:
    """A CSV of `rows` phone numbers with no state, as staff files have them (E.164, (202)
    555-0123, 202-555-0123 in turn) under a "Phone,Note" header. Returns its size in bytes."""
    numbers = layout.unknown_numbers(rows, random.Random(17))
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("Phone,Note\r\n")
        for i, e164 in enumerate(numbers):
            national = e164[2:]
            form = i % 3
            if form == 0:
                shown = e164
            elif form == 1:
                shown = f"({national[:3]}) {national[3:6]}-{national[6:]}"
            else:
                shown = f"{national[:3]}-{national[3:6]}-{national[6:]}"
            out.write(f"{shown},row {i}\r\n")
    return Path(path).stat().st_size


# --- the build -------------------------------------------------------------------------------


def app_for(url: str):
    """The app on `url`, configured for benchmarks (no rate limits, no delivery), its startup
    objects left out of the garbage collector's scans as run.py leaves them in every server
    and worker process (consent.app.freeze_startup_objects): what is measured here runs there."""
    from consent import create_app
    from consent.app import freeze_startup_objects
    from consent.extensions import limiter

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "bench-secret",
            "API_KEYS": ["bench-api-key"],
            "RATELIMIT_ENABLED": False,
            "EMAIL_TRANSPORT": "record",
            "OUTBOX_DELIVER_AFTER_COMMIT": False,
        }
    )
    limiter.enabled = False
    freeze_startup_objects()
    return app


def database_url(value: str | None, scale: float) -> str:
    """A SQLAlchemy URL: "sqlite" (or nothing) is instance/bench-<scale>.sqlite3. A PostgreSQL
    database holds the data set of scale 1; another scale goes in a database of its own beside
    it, `<name>_s<scale>` (created when missing), so that a bench run at a small scale (as
    bench.export_jobs_memory's) never drops the large data set for the next run to rebuild."""
    if not value or value == "sqlite":
        (ROOT / "instance").mkdir(exist_ok=True)
        return f"sqlite:///{ROOT / 'instance' / f'bench-{scale:g}.sqlite3'}"
    for prefix in ("postgresql://", "postgres://"):
        if value.startswith(prefix):
            value = "postgresql+psycopg://" + value[len(prefix) :]
    if value.startswith("postgresql") and scale != 1:
        url = sa.engine.make_url(value)
        name = f"{url.database}_s{scale:g}".replace(".", "_")
        _create_database(url, name)
        value = url.set(database=name).render_as_string(hide_password=False)
    return value


def _create_database(url, name: str) -> None:
    """CREATE DATABASE `name` on url's server unless it is there (through url's database)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            found = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not found:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


def ensure(app, scale: float, rebuild: bool = False, quiet: bool = False) -> Dataset:
    """The data set of `scale` in the app's database: reused when present, else built."""
    from consent.extensions import db

    layout = Layout.of(scale)
    with app.app_context():
        engine = db.engine
        marker = _marker(engine)
        if not rebuild and marker == {"scale": scale, "version": VERSION}:
            missing = _missing_columns(db)
            if not missing:
                if not quiet:
                    print(f"reusing the data set of scale {scale:g} in {engine.url.database}")
                db.metadata.create_all(engine)  # tables the models gained since: empty
                _add_missing_indexes(db, quiet)
                return _handles(db, layout)
            if not quiet:
                print(f"rebuilding the data set: the models have columns it lacks ({missing})")
        started = time.perf_counter()
        _build(db, layout)
        if not quiet:
            print(
                f"built the data set of scale {scale:g} ({layout.opted_out:,} opt-outs, "
                f"{layout.events:,} events) in {time.perf_counter() - started:.0f} s"
            )
        return _handles(db, layout)


def _missing_columns(db) -> str:
    """Columns of the models that the data set's existing tables lack, or required columns the
    models dropped (a migration since it was built), as "table.column, ..."; empty when none."""
    inspector = sa.inspect(db.engine)
    tables = set(inspector.get_table_names())
    missing = []
    for table in db.metadata.sorted_tables:
        if table.name not in tables:
            continue
        columns = inspector.get_columns(table.name)
        have = {column["name"] for column in columns}
        missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in have]
        # a column the models dropped that would refuse their inserts
        missing += [
            f"{table.name}.{c['name']} (dropped)"
            for c in columns
            if c["name"] not in table.columns and not c["nullable"] and c.get("default") is None
        ]
    return ", ".join(missing)


def _add_missing_indexes(db, quiet: bool) -> None:
    """Indexes the models gained since the data set was built (a new migration's)."""
    from consent.database import create_email_search, has_email_search, include_object

    engine = db.engine
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite" and not has_email_search(conn):
            if not quiet:
                print("adding SQLite's trigram index of the emails")
            create_email_search(conn)
    inspector = sa.inspect(engine)
    here = include_object(engine.dialect.name)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for table in db.metadata.sorted_tables:
        have = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if not here(index, index.name, "index", False, None):
                continue
            if index.name in have and _partial(index, engine) and not _partial_in(engine, index):
                if not quiet:
                    print(f"making index {index.name} partial")
                index.drop(engine)
                have.discard(index.name)
            if index.name not in have:
                if not quiet:
                    print(f"adding index {index.name}")
                index.create(engine)
                _analyze(engine)


def _partial(index: sa.Index, engine) -> bool:
    """The model's index has a WHERE clause on this database."""
    return index.dialect_options[engine.dialect.name].get("where") is not None


def _partial_in(engine, index: sa.Index) -> bool:
    """The database's index of that name has a WHERE clause (a migration's partial index)."""
    if engine.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
    else:
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    with engine.connect() as conn:
        definition = conn.execute(sa.text(query), {"name": index.name}).scalar() or ""
    return " WHERE " in definition.upper()


def _marker(engine) -> dict | None:
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT scale, version FROM bench_dataset")).first()
    except sa.exc.DBAPIError:
        return None
    return {"scale": float(row[0]), "version": int(row[1])} if row else None


def _handles(db, layout: Layout) -> Dataset:
    from consent.models import Organization, Role, User

    org_id = db.session.scalar(sa.select(Organization.id).where(Organization.name == ORG_NAME))
    admin = db.session.scalars(sa.select(User).where(User.email == ADMIN_EMAIL)).one()
    parent = db.session.scalars(
        sa.select(User).where(User.role == Role.PARENT).order_by(User.id)
    ).first()
    return Dataset(layout, org_id, admin.id, admin.email, parent.id, parent.email)


def _build(db, layout: Layout) -> None:
    from consent import models

    engine = db.engine
    _verify_numbers(layout)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_dataset")
    db.metadata.drop_all(engine)
    db.metadata.create_all(engine)
    big = ("consent_states", "consent_events", "phones", "email_addresses", "contacts", "students")
    deferred = [
        index for table in db.metadata.sorted_tables if table.name in big for index in table.indexes
    ]
    for index in deferred:
        index.drop(engine)

    org, admin, sites = _small_rows(db, models)
    writer = _writer(engine)
    with writer:
        _people(writer, layout, org, sites)
        _consent(writer, layout, org, admin)
    for index in deferred:
        index.create(engine)
    parent_contact = 1  # the first contact: Parent 1 of the first family
    user = models.User(
        organization_id=org,
        email="parent@bench.example.org",
        name="Parent One",
        role=models.Role.PARENT,
        contact_id=parent_contact,
        email_verified_at=models.utcnow(),
    )
    user.set_password(PASSWORD)
    db.session.add(user)
    db.session.commit()
    _analyze(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE bench_dataset (scale FLOAT, version INTEGER, built_at VARCHAR(40), "
            "counts TEXT)"
        )
        conn.execute(
            sa.text("INSERT INTO bench_dataset VALUES (:scale, :version, :built, :counts)"),
            {
                "scale": layout.scale,
                "version": VERSION,
                "built": datetime.now().isoformat(timespec="seconds"),
                "counts": json.dumps(
                    {"opted_out": layout.opted_out, "events": layout.events}, sort_keys=True
                ),
            },
        )


def _verify_numbers(layout: Layout) -> None:
    """A sample of the pool, checked by the app's own normalizer."""
    from consent.addresses import normalize_email, normalize_phone

    rng = random.Random(3)
    top = layout.history_phone_start + layout.text_out_history + layout.voice_out_history + 10**6
    for i in rng.sample(range(top), 5000):
        number = phone(i)
        assert normalize_phone(number) == number, number
    for i in rng.sample(range(layout.contacts + layout.email_out_history), 500):
        assert normalize_email(email(i)) == email(i), email(i)


def _small_rows(db, models) -> tuple[int, int, list[int]]:
    org = models.Organization(
        name=ORG_NAME,
        texting_number="+12025550100",
        notification_email="office@bench.example.org",
        help_contact="the district office at (202) 555-0100",
    )
    db.session.add(org)
    db.session.flush()
    sites = [models.Site(organization_id=org.id, name=name) for name in SITE_NAMES]
    db.session.add_all(sites)
    admin = models.User(
        organization_id=org.id,
        email=ADMIN_EMAIL,
        name="District Office",
        role=models.Role.ORG,
        email_verified_at=models.utcnow(),
    )
    admin.set_password(PASSWORD)
    db.session.add(admin)
    db.session.flush()
    ids = org.id, admin.id, [s.id for s in sites]
    db.session.commit()
    db.session.close()
    return ids


class _Writer:
    """Rows into tables, as fast as the database takes them; one transaction."""

    def __init__(self, engine):
        self.engine = engine
        self.raw = None

    def __enter__(self):
        self.raw = self.engine.raw_connection()
        return self

    def __exit__(self, kind, value, tb):
        try:
            if kind is None:
                self.commit()
            else:
                self.raw.rollback()
        finally:
            self.raw.close()


class _PostgresWriter(_Writer):
    def __enter__(self):
        super().__enter__()
        with self.raw.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
            cursor.execute("SET session_replication_role = replica")  # no FK triggers
        return self

    def rows(self, table: str, columns: tuple[str, ...], rows) -> None:
        with self.raw.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def commit(self):
        with self.raw.cursor() as cursor:
            cursor.execute("SET session_replication_role = origin")
        self.raw.commit()


class _SqliteWriter(_Writer):
    BATCH = 50_000

    def __enter__(self):
        super().__enter__()
        cursor = self.raw.cursor()
        cursor.execute("PRAGMA foreign_keys = OFF")
        cursor.execute("PRAGMA synchronous = OFF")
        cursor.execute("BEGIN")
        cursor.close()
        return self

    def rows(self, table: str, columns: tuple[str, ...], rows) -> None:
        cursor = self.raw.cursor()
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) >= self.BATCH:
                cursor.executemany(sql, batch)
                batch.clear()
        if batch:
            cursor.executemany(sql, batch)
        cursor.close()

    def commit(self):
        cursor = self.raw.cursor()
        cursor.execute("COMMIT")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()


def _writer(engine) -> _Writer:
    return (_PostgresWriter if engine.dialect.name == "postgresql" else _SqliteWriter)(engine)


def _when(seconds: float, postgres: bool):
    value = START + timedelta(seconds=int(seconds))
    return value if postgres else value.isoformat(" ")


def _people(writer: _Writer, layout: Layout, org: int, sites: list[int]) -> None:
    """Families, contacts (two per family), students, their phones and emails; ids from 1."""
    pg = isinstance(writer, _PostgresWriter)
    created = _when(0, pg)
    writer.rows(
        "families",
        ("id", "organization_id", "name", "created_at"),
        (
            (f + 1, org, f"{LAST[f % len(LAST)].title()} family {f + 1}", created)
            for f in range(layout.families)
        ),
    )
    writer.rows(
        "contacts",
        (
            "id",
            "family_id",
            "external_id",
            "first_name",
            "last_name",
            "relationship_to_student",
            "position",
            "language",
            "created_at",
        ),
        (
            (
                c + 1,
                c // 2 + 1,
                f"C{c + 1:07d}",
                FIRST[c % len(FIRST)].title(),
                LAST[(c // 2) % len(LAST)].title(),
                "Mother" if c % 2 == 0 else "Father",
                c % 2 + 1,
                "es" if c % 5 == 0 else "en",
                created,
            )
            for c in range(layout.contacts)
        ),
    )
    writer.rows(
        "students",
        (
            "id",
            "family_id",
            "site_id",
            "external_id",
            "first_name",
            "last_name",
            "grade",
            "enrollment_status",
            "language",
            "created_at",
        ),
        (
            (
                s + 1,
                _family_of_student(s, layout) + 1,
                sites[s % len(sites)],
                f"S{s + 1:07d}",
                FIRST[(s * 7) % len(FIRST)].title(),
                LAST[_family_of_student(s, layout) % len(LAST)].title(),
                GRADES[s % len(GRADES)],
                "enrolled" if s % 50 else "withdrawn",
                "en",
                created,
            )
            for s in range(layout.students)
        ),
    )
    columns = ("id", "contact_id", "student_id", "number", "kind", "is_primary")
    contact_phones = ((c + 1, c + 1, None, phone(c), "cell", True) for c in range(layout.contacts))
    writer.rows("phones", columns, contact_phones)
    student_phones = (
        (layout.contacts + s + 1, None, s * 5 + 1, phone(layout.contacts + s), "cell", True)
        for s in range(min(layout.student_cells, layout.students // 5))
    )
    writer.rows("phones", columns, student_phones)
    writer.rows(
        "email_addresses",
        ("id", "contact_id", "student_id", "address"),
        ((c + 1, c + 1, None, email(c)) for c in range(layout.contacts)),
    )


def _family_of_student(s: int, layout: Layout) -> int:
    # Even families have one student, odd families two: students = 1.5 x families.
    return (2 * s) // 3 % layout.families


def _consent(writer: _Writer, layout: Layout, org: int, admin: int) -> None:
    """The events in time order, then the states that they fold to."""
    pg = isinstance(writer, _PostgresWriter)
    states = list(layout.states())
    n_states = len(states)
    n_in = layout.opted_in
    n_out = n_states - n_in
    # Events: one per opted_in state, one or two per opted_out state (opt-in, then opt-out).
    doubles = max(0, min(n_out, layout.events - n_states))
    rng = random.Random(11)
    two = bytearray(n_states)
    for index in rng.sample(range(n_in, n_states), doubles):
        two[index] = 1
    tokens = array("i", range(n_states))
    tokens.extend(i for i in range(n_in, n_states) if two[i])
    order = list(tokens)
    del tokens
    rng.shuffle(order)
    total = len(order)
    seen = bytearray(n_states)
    last_event = array("i", bytes(4 * n_states))
    last_time = array("d", bytes(8 * n_states))
    step = SPAN_S / max(total, 1)

    def events():
        for position, index in enumerate(order):
            event_id = position + 1
            seconds = position * step + (index % 97)
            channel, address, final = states[index]
            first = not seen[index]
            seen[index] = 1
            if final == "opted_in" or (first and two[index]):
                to_status, source, version = "opted_in", _opt_in_source(index), 1
            else:
                to_status, source = "opted_out", _source(channel, index)
                version = 2 if two[index] else 1
            from_status = "opted_in" if version == 2 else None
            block = to_status == "opted_out" and source in BLOCKING
            actor, actor_user, label, evidence, note, ip, agent = _who(
                source, address, channel, admin, index
            )
            last_event[index] = event_id
            last_time[index] = seconds
            yield (
                event_id,
                org,
                channel,
                address,
                "change",
                from_status,
                to_status,
                block,
                source,
                actor,
                actor_user,
                label,
                _when(seconds, pg),
                ip,
                agent,
                note,
                json.dumps(evidence),
                version,
            )

    writer.rows(
        "consent_events",
        (
            "id",
            "organization_id",
            "channel",
            "address",
            "kind",
            "from_status",
            "to_status",
            "carrier_block",
            "source",
            "actor",
            "actor_user_id",
            "actor_label",
            "occurred_at",
            "ip",
            "user_agent",
            "note",
            "evidence",
            "state_version",
        ),
        events(),
    )
    order.clear()

    def state_rows():
        for index, (channel, address, final) in enumerate(states):
            version = 2 if two[index] else 1
            if final == "opted_in":
                source = _opt_in_source(index)
            else:
                source = _source(channel, index)
            block = final == "opted_out" and source in BLOCKING
            _a, actor_user, label, _e, note, _ip, _ua = _who(source, address, channel, admin, index)
            if channel == "email":
                sort_key, digits = address, None
            else:
                sort_key, digits = address[1:].rjust(15, "0"), address[2:]
            yield (
                index + 1,
                org,
                channel,
                address,
                sort_key,
                digits,
                final,
                block,
                source,
                _when(last_time[index], pg),
                label,
                actor_user,
                note,
                version,
                last_event[index],
            )

    writer.rows(
        "consent_states",
        (
            "id",
            "organization_id",
            "channel",
            "address",
            "sort_key",
            "digits",
            "status",
            "carrier_block",
            "source",
            "changed_at",
            "changed_by",
            "changed_by_user_id",
            "note",
            "version",
            "last_event_id",
        ),
        state_rows(),
    )
    if pg:  # ids were given: move the sequences past them
        with writer.raw.cursor() as cursor:
            for table in ("families", "contacts", "students", "phones", "email_addresses"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                    f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
                )
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('consent_events', 'id'), %s)", (total,)
            )
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('consent_states', 'id'), %s)", (n_states,)
            )


def _who(source, address, channel, admin, index):
    """(actor, actor_user_id, label, evidence, note, ip, user agent) of an event from `source`."""
    if source in ("sms_keyword", "sms_reply"):
        body = "STOP" if source == "sms_keyword" else "please stop texting me"
        evidence = {"body": body, "message_sid": f"SM{index:032x}"}
        return "recipient", None, address, evidence, None, None, None
    if source == "carrier":
        return "system", None, "Carrier opt-out", {"error_code": "21610"}, None, None, None
    if source in ("one_click", "email_link"):
        evidence = {"token": f"t{index:08x}", "purpose": "unsubscribe"}
        return "recipient", None, address, evidence, None, "203.0.113.7", USER_AGENT
    if source == "import":
        year = 2020 + index % 5
        evidence = {"file": f"optouts-{year}.csv", "row": index % 5000 + 2, "batch": year - 2019}
        return f"user:{admin}", admin, "District Office (org admin)", evidence, None, None, None
    if source == "admin":
        note = "Asked at the front office" if index % 2 else "Called the district office"
        return f"user:{admin}", admin, "District Office (org admin)", {}, note, "10.0.0.5", None
    if source == "staff_entry":
        return f"user:{admin}", admin, "District Office (org admin)", {}, None, None, None
    if source == "enrollment":
        evidence = {"disclosure": "By choosing Yes you agree to receive text messages.", "form": 1}
        return "recipient", None, "Parent (enrollment)", evidence, None, "198.51.100.4", USER_AGENT
    # portal
    evidence = {"page": "/account/settings"}
    return "user:0", None, "Parent (portal)", evidence, None, "198.51.100.9", USER_AGENT


def _analyze(engine) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dataset", description=__doc__)
    parser.add_argument("--database", action="append", help="URL, or 'sqlite' (repeatable)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rebuild", action="store_true", help="build even when present")
    args, _rest = parser.parse_known_args(argv)
    for value in args.database or ["sqlite"]:
        url = database_url(value, args.scale)
        ensure(app_for(url), args.scale, rebuild=args.rebuild)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
