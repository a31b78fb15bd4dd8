"""The district's people from its records: a OneRoster 1.1 CSV roster (`orgs.csv` and
`users.csv`, in a folder or a .zip) read into contacts, students and their families.

`users.csv` rows with role student, parent, guardian or relative become students and contacts;
other OneRoster roles (teachers, aides, administrators) are counted as ignored. A row's
`agentSourcedIds` ties it to other people: everyone linked by agents is one family (an existing
family when one of them has one already, else a new one). A student's school org
(`orgSourcedIds`) names its site, matched to an existing site by the org's sourcedId, its
identifier or its name; no site is ever created here. `sms` is a cell phone, `phone` a home
phone, `email` an email; `identifier` is the ID staff know and `sourcedId` the roster's own key:
re-importing updates the record with that sourcedId. A changed phone or email replaces the old
one on the record; the old address's consent stays in the ledger, untouched. `status`
tobedeleted or `enabledUser` false make the person inactive (kept, hidden from lists, the
portal login of an inactive contact cannot sign in).

A cell that arrives on a record from the roster is a staff entry (`ledger.record_staff_entry`,
with the file and row as evidence): opted in, or unknown, as the organization's setting says;
an address that already has a consent state keeps it (the ledger's rule).

Reading (`build_plan`) checks every row and writes nothing; bad rows are reported with their
row number and reason. Writing (`run`) goes family by family in chunks of about ROSTER_CHUNK
rows; each chunk looks its people up by sourcedId in a few queries, and the caller commits after
each (the CLI; a background job, consent.jobs, with its progress in the same transaction).
"""

from __future__ import annotations

import csv
import io
import os
import re
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from consent import jobs, ledger
from consent.addresses import AddressError, normalize_email, normalize_phone
from consent.database import begin_write, is_one_of, is_sqlite
from consent.extensions import db
from consent.models import (
    ConsentEvent,
    ConsentState,
    Contact,
    EmailAddress,
    Family,
    Organization,
    Phone,
    PhoneKind,
    Role,
    Site,
    Student,
    User,
)

JOB_KIND = "roster_import"
CHUNK = 2_000
MAX_UNZIPPED = 200 * 1024 * 1024  # a roster bigger than this is refused (zip bombs too)
KEPT_REJECTED = 1_000  # rejected rows kept in a stored report (counts are always complete)
KEPT_OTHER = 200  # other rows kept (the first ones)

FAMILY_ROLES = {"student": "student", "parent": "contact", "guardian": "contact"}
FAMILY_ROLES["relative"] = "contact"
OTHER_ROLES = frozenset({"teacher", "aide", "administrator", "proctor"})

NEW, UPDATED, UNCHANGED, INACTIVE, IGNORED, REJECTED = (
    "new",
    "updated",
    "unchanged",
    "inactive",
    "ignored",
    "rejected",
)
OUTCOMES = (NEW, UPDATED, UNCHANGED, INACTIVE, IGNORED, REJECTED)
WORDS = {
    NEW: "Added",
    UPDATED: "Updated",
    UNCHANGED: "Unchanged",
    INACTIVE: "Made inactive",
    IGNORED: "Ignored",
    REJECTED: "Rejected",
}
PREVIEW_WORDS = {
    NEW: "Will be added",
    UPDATED: "Will be updated",
    UNCHANGED: "Unchanged",
    INACTIVE: "Will be made inactive",
    IGNORED: "Ignored",
    REJECTED: "Rejected",
}

USERS_COLUMNS = {
    name.lower(): name
    for name in (
        "sourcedId",
        "status",
        "enabledUser",
        "orgSourcedIds",
        "role",
        "givenName",
        "familyName",
        "identifier",
        "email",
        "sms",
        "phone",
        "agentSourcedIds",
        "grades",
    )
}
ORGS_COLUMNS = {n.lower(): n for n in ("sourcedId", "status", "name", "type", "identifier")}
MAX_LENGTH = {"sourcedId": 255, "identifier": 64, "givenName": 100, "familyName": 100}
# The PostgreSQL advisory lock two roster imports of one organization take in turn, so two
# workers never both create the person with the same sourcedId.
_ADVISORY_KEY = 7_263


class RosterFileError(ValueError):
    """The roster cannot be read at all (missing file or column, not CSV, too big)."""


# --- reading the files ---------------------------------------------------------------------


def open_path(path: str) -> dict[str, bytes]:
    """The roster's CSV files, from a folder or a .zip: {"orgs.csv": bytes, "users.csv": …}."""
    if os.path.isdir(path):
        files = {}
        for entry in sorted(os.listdir(path)):
            full = os.path.join(path, entry)
            if entry.lower().endswith(".csv") and os.path.isfile(full):
                if os.path.getsize(full) > MAX_UNZIPPED:
                    raise RosterFileError(f"{entry} is larger than {MAX_UNZIPPED >> 20} MB.")
                with open(full, "rb") as stream:
                    files[entry.lower()] = stream.read()
        return require_files(files)
    with open(path, "rb") as stream:
        return read_archive(stream.read())


def read_archive(data: bytes) -> dict[str, bytes]:
    """The CSV files of a roster .zip (in any folder inside it), by lower-case name."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise RosterFileError("The file is not a .zip archive.") from None
    files: dict[str, bytes] = {}
    with archive:
        for info in archive.infolist():
            name = info.filename.replace("\\", "/").rsplit("/", 1)[-1].lower()
            if info.is_dir() or not name.endswith(".csv") or name in files:
                continue
            if info.file_size > MAX_UNZIPPED:
                raise RosterFileError(f"{name} is larger than {MAX_UNZIPPED >> 20} MB.")
            with archive.open(info) as member:
                content = member.read(MAX_UNZIPPED + 1)
            if len(content) > MAX_UNZIPPED:
                raise RosterFileError(f"{name} is larger than {MAX_UNZIPPED >> 20} MB.")
            files[name] = content
    return require_files(files)


def pack(files: dict[str, bytes]) -> bytes:
    """The roster's files as one .zip (what a job keeps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def require_files(files: dict[str, bytes]) -> dict[str, bytes]:
    missing = [name for name in ("orgs.csv", "users.csv") if name not in files]
    if missing:
        raise RosterFileError(f"The roster has no {' and no '.join(missing)}.")
    return files


def check_headers(files: dict[str, bytes]) -> None:
    """Raise RosterFileError unless both files read as CSV with the columns a roster needs."""
    _table(files["orgs.csv"], "orgs.csv", ORGS_COLUMNS, ("sourcedId", "name"))
    _table(files["users.csv"], "users.csv", USERS_COLUMNS, ("sourcedId",))


def _decode(data: bytes, name: str) -> str:
    """UTF-8 (with or without a BOM), else Windows-1252 (older SIS exports)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        raise RosterFileError(f"{name} is neither UTF-8 nor Windows-1252 text.") from None


_SPACES = re.compile(r"\s+")


def _clean(value: str) -> str:
    """A cell as one line of printable text (no NULs or control characters), trimmed."""
    value = _SPACES.sub(" ", value)
    if not value.isprintable():
        value = "".join(ch for ch in value if ch.isprintable())
    return value.strip()


def _table(data: bytes, name: str, known: dict[str, str], required: tuple[str, ...]):
    """(row number, {column: cell}) of each data row; the header is row 1. Headers are matched
    to OneRoster's names in any case, around spaces and a BOM."""
    text = _decode(data, name)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise RosterFileError(f"{name} is not a CSV file: {exc}") from None
    if header is None:
        raise RosterFileError(f"{name} is empty.")
    columns: list[str | None] = []
    for cell in header:
        column = known.get(_clean(cell.lstrip("\ufeff")).lower())
        columns.append(column if column not in columns else None)
    missing = [c for c in required if c not in columns]
    if missing:
        raise RosterFileError(f"{name} has no {', '.join(missing)} column.")

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        number = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise RosterFileError(f"{name}, row {number + 1}: not CSV: {exc}") from None
            number += 1
            if not cells:
                continue
            yield (
                number,
                {c: _clean(v) for c, v in zip(columns, cells, strict=False) if c is not None},
            )

    return rows()


def _ids(value: str) -> list[str]:
    return [part for part in (p.strip() for p in value.split(",")) if part]


# --- checking every row --------------------------------------------------------------------


@dataclass
class RosterOrg:
    sourced_id: str
    name: str
    type: str
    identifier: str
    site_id: int | None = None

    @property
    def is_school(self) -> bool:
        return self.type in ("school", "")


@dataclass
class Person:
    """A good row of users.csv."""

    row: int
    sourced_id: str
    kind: str  # "contact" or "student"
    role: str
    first_name: str
    last_name: str
    identifier: str
    active: bool
    cell: str | None
    home: str | None
    email: str | None
    site_id: int | None
    grade: str
    agents: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass
class RowResult:
    """What became of one row of users.csv."""

    row: int
    sourced_id: str
    name: str
    outcome: str
    reason: str | None = None

    def as_dict(self) -> dict:
        return {
            "row": self.row,
            "sourced_id": self.sourced_id[:100],
            "name": self.name[:200],
            "outcome": self.outcome,
            "reason": self.reason,
        }


@dataclass
class Plan:
    """The checked roster: rows that need no writing (rejected, ignored), then the people,
    family by family, cut into chunks at family boundaries."""

    total: int
    settled: list[RowResult]
    people: list[Person]
    chunks: list[tuple[int, int]]
    component: dict[str, int]  # sourcedId -> family group
    members: dict[int, list[str]]  # family group -> every sourcedId in it
    outside: set[str]  # agents not in the file but on record
    orgs: dict[str, RosterOrg]


def build_plan(org: Organization, files: dict[str, bytes], chunk: int = CHUNK) -> Plan:
    """Check every row of the roster against the file and the database (reads only)."""
    orgs = _read_orgs(org, files["orgs.csv"])
    region = org.default_region or "US"
    settled: list[RowResult] = []
    people: list[Person] = []
    by_sid: dict[str, Person] = {}
    rows_of: dict[str, int] = {}
    total = 0
    for number, cells in _table(files["users.csv"], "users.csv", USERS_COLUMNS, ("sourcedId",)):
        total += 1
        result = _person(number, cells, orgs, region)
        if isinstance(result, RowResult):
            settled.append(result)
            continue
        if result.sourced_id in rows_of:
            settled.append(
                _reject(
                    result,
                    f"sourcedId {result.sourced_id} is on row {rows_of[result.sourced_id]} already",
                )
            )
            continue
        rows_of[result.sourced_id] = number
        by_sid[result.sourced_id] = result
        people.append(result)

    wanted = set(by_sid) | {a for p in people for a in p.agents}
    on_record = _kinds_on_record(org.id, wanted)
    for person in list(people):
        kind = on_record.get(person.sourced_id)
        if kind is not None and kind != person.kind:
            settled.append(
                _reject(person, f"sourcedId {person.sourced_id} is a {kind} on record already")
            )
            del by_sid[person.sourced_id]
    # An agent must be a good row of this file or someone on record; a row whose agent is
    # rejected is rejected too (and so on, until nothing changes).
    rejected_rows = {r.sourced_id: r.row for r in settled if r.outcome == REJECTED}
    changed = True
    while changed:
        changed = False
        for person in [p for p in people if p.sourced_id in by_sid]:
            for agent in person.agents:
                if agent in by_sid or (agent in on_record and agent not in rows_of):
                    continue
                if agent in rejected_rows:
                    why = f"its agent {agent} is on rejected row {rejected_rows[agent]}"
                else:
                    why = f"its agent {agent} is neither in users.csv nor on record"
                settled.append(_reject(person, why))
                rejected_rows[person.sourced_id] = person.row
                del by_sid[person.sourced_id]
                changed = True
                break
    people = [p for p in people if p.sourced_id in by_sid]
    outside = {a for p in people for a in p.agents if a not in by_sid}

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for person in people:
        find(person.sourced_id)
        for agent in person.agents:
            a, b = find(person.sourced_id), find(agent)
            if a != b:
                parent[b] = a
    group_of_root: dict[str, int] = {}
    component: dict[str, int] = {}
    for person in people:
        component[person.sourced_id] = group_of_root.setdefault(
            find(person.sourced_id), len(group_of_root)
        )
    members: dict[int, list[str]] = defaultdict(list)
    for sid in [*[p.sourced_id for p in people], *sorted(outside)]:
        group = group_of_root[find(sid)]
        component[sid] = group
        members[group].append(sid)
    people.sort(key=lambda p: (component[p.sourced_id], p.row))
    chunks = []
    start = 0
    for index in range(1, len(people) + 1):
        last = index == len(people)
        boundary = (
            last or component[people[index].sourced_id] != component[people[index - 1].sourced_id]
        )
        if boundary and (index - start >= chunk or last):
            chunks.append((start, index))
            start = index
    settled.sort(key=lambda r: r.row)
    return Plan(total, settled, people, chunks, component, dict(members), outside, orgs)


def _read_orgs(org: Organization, data: bytes) -> dict[str, RosterOrg]:
    orgs: dict[str, RosterOrg] = {}
    for _number, cells in _table(data, "orgs.csv", ORGS_COLUMNS, ("sourcedId", "name")):
        sid = cells.get("sourcedId", "")
        if sid and sid not in orgs:
            orgs[sid] = RosterOrg(
                sid,
                cells.get("name", ""),
                cells.get("type", "").lower(),
                cells.get("identifier", ""),
            )
    sites = list(db.session.scalars(sa.select(Site).where(Site.organization_id == org.id)))
    by_sid = {s.sourced_id: s for s in sites if s.sourced_id}
    by_identifier = {s.identifier.casefold(): s for s in sites if s.identifier}
    by_name = {s.name.casefold(): s for s in sites}
    for roster_org in orgs.values():
        if not roster_org.is_school:
            continue
        site = (
            by_sid.get(roster_org.sourced_id)
            or (roster_org.identifier and by_identifier.get(roster_org.identifier.casefold()))
            or by_name.get(roster_org.name.casefold())
        )
        roster_org.site_id = site.id if site else None
    return orgs


def _reject(person: Person, reason: str) -> RowResult:
    return RowResult(person.row, person.sourced_id, person.name, REJECTED, reason)


def _person(number: int, cells: dict[str, str], orgs: dict[str, RosterOrg], region: str):
    """A Person, or the RowResult of a row that is rejected or ignored."""
    sid = cells.get("sourcedId", "")
    name = f"{cells.get('givenName', '')} {cells.get('familyName', '')}".strip()

    def rejected(reason: str) -> RowResult:
        return RowResult(number, sid, name, REJECTED, reason)

    if not any(cells.values()):
        return RowResult(number, "", "", IGNORED, "blank row")
    if not sid:
        return rejected("no sourcedId")
    role = cells.get("role", "").lower()
    if not role:
        return rejected("no role")
    if role in OTHER_ROLES:
        return RowResult(number, sid, name, IGNORED, f"role {role} is not a student or family")
    if role not in FAMILY_ROLES:
        return rejected(f"unknown role {cells.get('role', '')!r}")
    for column, limit in MAX_LENGTH.items():
        if len(cells.get(column, "")) > limit:
            return rejected(f"{column} is longer than {limit} characters")
    if not name:
        return rejected("no name (givenName and familyName are empty)")
    addresses = {}
    for column, normalize in (("sms", normalize_phone), ("phone", normalize_phone)):
        value = cells.get(column, "")
        try:
            addresses[column] = normalize(value, region) if value else None
        except AddressError as exc:
            return rejected(f"{column}: {exc}")
    value = cells.get("email", "")
    try:
        addresses["email"] = normalize_email(value) if value else None
    except AddressError as exc:
        return rejected(f"email: {exc}")
    kind = FAMILY_ROLES[role]
    org_ids = _ids(cells.get("orgSourcedIds", ""))
    unknown = [o for o in org_ids if o not in orgs]
    if unknown:
        return rejected(f"unknown org {unknown[0]} (not in orgs.csv)")
    site_id = None
    if kind == "student":
        schools = [orgs[o] for o in org_ids if orgs[o].is_school]
        site_id = next((s.site_id for s in schools if s.site_id), None)
        if site_id is None:
            if schools:
                return rejected(f"school {schools[0].name!r} matches no site of the district")
            return rejected("no school in orgSourcedIds")
    grade = (_ids(cells.get("grades", "")) or [""])[0][:20]
    active = cells.get("status", "").lower() != "tobedeleted" and (
        cells.get("enabledUser", "").lower() != "false"
    )
    agents = tuple(dict.fromkeys(a for a in _ids(cells.get("agentSourcedIds", "")) if a != sid))
    return Person(
        row=number,
        sourced_id=sid,
        kind=kind,
        role=role,
        first_name=cells.get("givenName", ""),
        last_name=cells.get("familyName", ""),
        identifier=cells.get("identifier", ""),
        active=active,
        cell=addresses["sms"],
        home=addresses["phone"],
        email=addresses["email"],
        site_id=site_id,
        grade=grade,
        agents=agents,
    )


def _batches(values: Iterable[str], size: int = 5_000) -> Iterator[list[str]]:
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _kinds_on_record(org_id: int, sids: set[str]) -> dict[str, str]:
    """{sourcedId: "contact" | "student"} of the organization's records with these ids."""
    found: dict[str, str] = {}
    for model, kind in ((Contact, "contact"), (Student, "student")):
        for batch in _batches(sids):
            stmt = (
                sa.select(model.sourced_id)
                .join(Family, Family.id == model.family_id)
                .where(Family.organization_id == org_id, is_one_of(model.sourced_id, batch))
            )
            for sid in db.session.scalars(stmt):
                found.setdefault(sid, kind)
    return found


# --- writing -------------------------------------------------------------------------------


@dataclass
class RosterReport:
    """Counts of a preview or an import (always complete) and the rows worth showing."""

    filename: str
    dry_run: bool = False
    total: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    rows: list[dict] = field(default_factory=list)
    kept_rejected: int = 0
    kept_other: int = 0

    def add(self, result: RowResult) -> None:
        self.counts[result.outcome] += 1
        if result.outcome == REJECTED:
            if self.kept_rejected < KEPT_REJECTED:
                self.kept_rejected += 1
                self.rows.append(result.as_dict())
        elif self.kept_other < KEPT_OTHER:
            self.kept_other += 1
            self.rows.append(result.as_dict())

    @property
    def rejected(self) -> int:
        return self.counts[REJECTED]

    def as_dict(self) -> dict:
        return {
            "filename": self.filename,
            "dry_run": self.dry_run,
            "total": self.total,
            "counts": dict(self.counts),
            "rows": list(self.rows),
            "kept_rejected": self.kept_rejected,
            "kept_other": self.kept_other,
        }

    @classmethod
    def from_dict(cls, data: dict) -> RosterReport:
        report = cls(data.get("filename", ""), bool(data.get("dry_run")), data.get("total", 0))
        report.counts.update(data.get("counts") or {})
        report.rows = list(data.get("rows") or [])
        report.kept_rejected = data.get("kept_rejected", 0)
        report.kept_other = data.get("kept_other", 0)
        return report

    def summary(self) -> str:
        c = self.counts
        words = PREVIEW_WORDS if self.dry_run else WORDS
        parts = [f"{c[o]} {words[o].lower()}" for o in OUTCOMES]
        return ", ".join(parts) + f" (of {self.total} rows)."


def run(
    org: Organization,
    plan: Plan,
    filename: str,
    *,
    actor: ledger.Actor,
    origin: ledger.Origin | None = None,
    dry_run: bool = False,
    start: int = 0,
    report: RosterReport | None = None,
    on_row: Callable[[RowResult], None] | None = None,
    on_chunk: Callable[[int, RosterReport], None] | None = None,
) -> RosterReport:
    """Import (or with `dry_run`, only compare) the plan's people, chunk by chunk, calling
    `on_chunk(rows done, report)` after each: the caller commits there. `start` resumes after
    that many rows done (a count `on_chunk` was given), with the `report` of that moment."""
    report = report or RosterReport(filename, dry_run, plan.total)
    done = start
    settled = len(plan.settled)
    if start == 0:
        for result in plan.settled:
            report.add(result)
            if on_row:
                on_row(result)
        if not dry_run:
            _remember_sites(org, plan)
        done = settled
        if on_chunk:
            on_chunk(done, report)
    for number, (first, last) in enumerate(plan.chunks, start=1):
        if settled + last <= done:
            continue
        if not dry_run:
            _analyze_as_they_grow(number)
        results = _apply(
            org,
            plan,
            plan.people[first:last],
            apply=not dry_run,
            actor=actor,
            origin=origin,
            filename=filename,
        )
        for result in results:
            report.add(result)
            if on_row:
                on_row(result)
        done = settled + last
        if on_chunk:
            on_chunk(done, report)
    return report


# The tables a roster grows, analyzed (PostgreSQL) before the import's 1st, 2nd, 4th, 8th, ...
# chunk. A district's first roster grows them from nothing within the run, and until their
# statistics say so the planner takes them for nearly empty: each chunk's lookup of its people
# by sourcedId became a nested loop over the whole table (1.5-2.9 s a lookup at 30,000 users,
# bench.roster_import; 0.015 s with statistics). Autovacuum analyzes them late, or never where
# it is off. Twice the rows between two analyses: log2 of the chunks, each a sample of rows.
_ROSTER_TABLES = ("families", "contacts", "students", "phones", "email_addresses", "users")


def _analyze_as_they_grow(chunk_number: int) -> None:
    if is_sqlite() or chunk_number & (chunk_number - 1):
        return
    db.session.execute(sa.text("ANALYZE " + ", ".join(_ROSTER_TABLES)))


def _remember_sites(org: Organization, plan: Plan) -> None:
    """Keep the roster's ids on the sites its schools matched, so a renamed site still does."""
    for roster_org in plan.orgs.values():
        if roster_org.site_id is None:
            continue
        site = db.session.get(Site, roster_org.site_id)
        if site.sourced_id != roster_org.sourced_id:
            site.sourced_id = roster_org.sourced_id
        if roster_org.identifier and not site.identifier:
            site.identifier = roster_org.identifier[:64]


def _records(model, org_id: int, sids: list[str]) -> dict:
    options = [selectinload(model.phones), selectinload(model.emails)]
    if model is Contact:
        options.append(selectinload(Contact.user))
    found = {}
    for batch in _batches(sids):
        stmt = (
            sa.select(model)
            .join(Family, Family.id == model.family_id)
            .where(Family.organization_id == org_id, is_one_of(model.sourced_id, batch))
            .order_by(model.id)
            .options(*options)
        )
        for record in db.session.scalars(stmt):
            found.setdefault(record.sourced_id, record)
    return found


def _apply(
    org: Organization,
    plan: Plan,
    people: list[Person],
    *,
    apply: bool,
    actor: ledger.Actor,
    origin: ledger.Origin | None,
    filename: str,
) -> list[RowResult]:
    """One chunk of whole families: compare each person with the record of its sourcedId and,
    when `apply`, write the difference; then the cells that arrived go to the ledger."""
    if apply:
        begin_write()
        if not is_sqlite():
            db.session.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key, :org)"),
                {"key": _ADVISORY_KEY, "org": org.id},
            )
    groups = list(dict.fromkeys(plan.component[p.sourced_id] for p in people))
    sids = [sid for group in groups for sid in plan.members[group]]
    contacts = _records(Contact, org.id, sids)
    students = _records(Student, org.id, sids)
    records = {**contacts, **students}
    family_of: dict[int, int | _NewFamily] = {}
    for group in groups:
        existing = [records[s].family_id for s in plan.members[group] if s in records]
        if existing:
            family_of[group] = min(existing)
        else:
            family_of[group] = _NewFamily()
    positions = _positions([f for f in family_of.values() if isinstance(f, int)])
    results: list[RowResult] = []
    arrived: list[tuple[Person, str]] = []
    pending: list[tuple[Person, int | _NewFamily, int]] = []
    for person in people:
        family = family_of[plan.component[person.sourced_id]]
        record = records.get(person.sourced_id)
        if record is None:
            outcome, changes = (NEW if person.active else INACTIVE), []
            cells = [person.cell] if person.cell else []
            position = _next_position(positions, family) if person.kind == "contact" else 0
            pending.append((person, family, position))
            if isinstance(family, _NewFamily) and not family.name:
                family.name = (person.last_name or person.first_name)[:200]
            if isinstance(family, _NewFamily) and person.kind == "student" and not family.named:
                family.name, family.named = (person.last_name or person.first_name)[:200], True
        else:
            outcome, changes, cells = _update(record, person, family, positions, apply)
        reason = ", ".join(changes) if outcome == UPDATED else None
        results.append(RowResult(person.row, person.sourced_id, person.name, outcome, reason))
        if person.active:
            arrived.extend((person, number) for number in cells)
    if not apply:
        return results
    _let_go()
    _insert_new(org, pending)
    # The first row that brought a number is its evidence (a number shared in a family is
    # entered once).
    entries = {}
    for person, number in arrived:
        entries.setdefault(
            number,
            ledger.BulkRow(
                number, {"file": filename, "row": person.row, "sourced_id": person.sourced_id}
            ),
        )
    ledger.record_staff_entries(org, entries.values(), actor=actor, origin=origin)
    _let_go()
    return results


_FLUSHED_AND_DONE = (Contact, Student, Phone, EmailAddress, Family, ConsentState, ConsentEvent)


def _let_go() -> None:
    """Flush, then forget the records the session holds for this chunk: every flush (the
    ledger flushes once or twice per cell) checks each object the session holds, so a chunk's
    thousands of records would make each later flush slower than the last."""
    db.session.flush()
    for instance in list(db.session.identity_map.values()):
        if isinstance(instance, _FLUSHED_AND_DONE):
            db.session.expunge(instance)


@dataclass(eq=False)
class _NewFamily:
    """A family this chunk creates; named after its first student (else its first person)."""

    name: str = ""
    named: bool = False
    id: int | None = None


def _positions(family_ids: list[int]) -> dict:
    """{family: highest Parent position in use} for these families."""
    positions: dict = defaultdict(int)
    for batch in _batches(family_ids):
        stmt = (
            sa.select(Contact.family_id, sa.func.max(Contact.position))
            .where(Contact.family_id.in_(batch))
            .group_by(Contact.family_id)
        )
        for family_id, position in db.session.execute(stmt):
            positions[family_id] = position or 0
    return positions


def _next_position(positions: dict, family) -> int:
    key = family if isinstance(family, int) else id(family)
    positions[key] = positions.get(key, 0) + 1
    return positions[key]


def _relationship(role: str) -> str:
    return role.capitalize()


def _insert_new(org: Organization, pending: list) -> None:
    """Write the people not on record, with their new families, phones and emails: a few
    statements for the whole chunk (the ORM's per-object work costs more than the database)."""
    if not pending:
        return
    families = list({id(f): f for _p, f, _n in pending if isinstance(f, _NewFamily)}.values())
    if families:
        table = Family.__table__
        ids = db.session.scalars(
            sa.insert(table).returning(table.c.id, sort_by_parameter_order=True),
            [{"organization_id": org.id, "name": f.name} for f in families],
        ).all()
        for family, family_id in zip(families, ids, strict=True):
            family.id = family_id
    phones, emails = [], []
    for kind, model in (("contact", Contact), ("student", Student)):
        people = [(p, f, n) for p, f, n in pending if p.kind == kind]
        if not people:
            continue
        rows = []
        for person, family, position in people:
            row = {
                "family_id": family if isinstance(family, int) else family.id,
                "sourced_id": person.sourced_id,
                "external_id": person.identifier or None,
                "first_name": person.first_name,
                "last_name": person.last_name,
                "active": person.active,
            }
            if kind == "contact":
                row |= {"relationship_to_student": _relationship(person.role), "position": position}
            else:
                row |= {"site_id": person.site_id, "grade": person.grade}
            rows.append(row)
        table = model.__table__
        ids = db.session.scalars(
            sa.insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
        ).all()
        owner = f"{kind}_id"
        other = "student_id" if kind == "contact" else "contact_id"
        for (person, _f, _n), record_id in zip(people, ids, strict=True):
            numbers = [(n, k) for n, k in ((person.cell, "cell"), (person.home, "home")) if n]
            for index, (number, phone_kind) in enumerate(numbers):
                phones.append(
                    {
                        owner: record_id,
                        other: None,
                        "number": number,
                        "kind": phone_kind,
                        "is_primary": index == 0,
                    }
                )
            if person.email:
                emails.append({owner: record_id, other: None, "address": person.email})
    if phones:
        db.session.execute(sa.insert(Phone.__table__), phones)
    if emails:
        db.session.execute(sa.insert(EmailAddress.__table__), emails)


def _update(record, person: Person, family, positions: dict, apply: bool):
    """A person on record: (outcome, what changed, cells that arrived)."""
    changes: list[str] = []

    def put(attribute: str, value, word: str) -> None:
        if getattr(record, attribute) != value:
            changes.append(word)
            if apply:
                setattr(record, attribute, value)

    put("first_name", person.first_name, "first name")
    put("last_name", person.last_name, "last name")
    if person.identifier:
        put("external_id", person.identifier, "ID")
    if person.kind == "student":
        put("site_id", person.site_id, "site")
        if person.grade:
            put("grade", person.grade, "grade")
    else:
        put("relationship_to_student", _relationship(person.role), "relationship")
    target = family if isinstance(family, int) else None
    if target is not None and record.family_id != target:
        changes.append("family")
        if apply:
            record.family_id = target
            if isinstance(record, Contact):
                record.position = _next_position(positions, target)
    cells = []
    if _sync_phone(record, person.cell, PhoneKind.CELL, apply):
        changes.append("cell")
        cells.append(person.cell)
    if _sync_phone(record, person.home, PhoneKind.HOME, apply):
        changes.append("home phone")
    if _sync_email(record, person.email, apply):
        changes.append("email")
    became_inactive = record.active and not person.active
    if record.active != person.active:
        if person.active:
            changes.append("active again")
        if apply:
            record.active = person.active
            _sync_login(record)
    if became_inactive:
        return INACTIVE, changes, cells
    return (UPDATED if changes else UNCHANGED), changes, cells


def _sync_phone(record, number: str | None, kind: PhoneKind, apply: bool) -> bool:
    """The roster's phone of this kind on the record; a different one replaces the record's
    phone of that kind. An empty cell in the roster leaves the record's phones alone."""
    if not number:
        return False
    for phone in record.phones:
        if phone.number == number:
            if phone.kind == kind:
                return False
            if apply:
                phone.kind = kind
            return True
    if apply:
        old = next((p for p in record.phones if p.kind == kind), None)
        primary = old.is_primary if old is not None else not record.phones
        if old is not None:
            record.phones.remove(old)
            db.session.delete(old)  # a new number is a new row: nothing of the old one carries
        record.phones.append(Phone(number=number, kind=kind, is_primary=primary))
    return True


def _sync_email(record, address: str | None, apply: bool) -> bool:
    if not address or any(e.address == address for e in record.emails):
        return False
    if apply:
        if record.emails:
            old = record.emails[0]
            record.emails.remove(old)
            db.session.delete(old)
        record.emails.append(EmailAddress(address=address))
    return True


def _sync_login(record) -> None:
    """An inactive contact's portal login cannot sign in; active again, it can."""
    user = getattr(record, "user", None)
    if isinstance(user, User) and user.role == Role.PARENT:
        user.active = record.active


def import_path(org: Organization, path: str, **kwargs) -> RosterReport:
    """Read the roster at `path` (folder or .zip) and run it (see `run`)."""
    files = open_path(path)
    plan = build_plan(org, files, chunk=kwargs.pop("chunk", CHUNK))
    return run(org, plan, os.path.basename(os.path.normpath(path)), **kwargs)


# --- as a background job --------------------------------------------------------------------


def enqueue(
    org: Organization,
    files: dict[str, bytes],
    filename: str,
    *,
    dry_run: bool,
    user: User | None = None,
    origin: ledger.Origin | None = None,
    file_id: int | None = None,
):
    """Queue a preview (dry run) or an import of these files as a job (the caller commits)."""
    from consent.models import JobFile

    stored = (
        db.session.get(JobFile, file_id)
        if file_id
        else jobs.store_file(org.id, filename, pack(files))
    )
    origin = origin or ledger.Origin()
    return jobs.enqueue(
        JOB_KIND,
        org.id,
        params={
            "dry_run": dry_run,
            "filename": filename,
            **origin.as_params(),
        },
        created_by_user_id=user.id if user else None,
        file=stored,
    )


@jobs.register(JOB_KIND)
def _run_job(job_run: jobs.JobRun) -> dict:
    from flask import current_app

    job = job_run.job
    params = job_run.params
    org = db.session.get(Organization, job.organization_id)
    user = db.session.get(User, job.created_by_user_id) if job.created_by_user_id else None
    actor = ledger.Actor.for_user(user) if user else ledger.Actor.system("roster import")
    origin = ledger.Origin.of_params(params)
    filename = params.get("filename") or "roster"
    dry_run = bool(params.get("dry_run"))
    try:
        files = read_archive(job_run.file_bytes())
        plan = build_plan(org, files, chunk=current_app.config.get("ROSTER_CHUNK", CHUNK))
    except RosterFileError as exc:
        raise jobs.JobError(str(exc)) from None
    start = job_run.resumed_from
    report = (
        RosterReport.from_dict(job_run.saved_result)
        if start
        else RosterReport(filename, dry_run, plan.total)
    )
    report = run(
        org,
        plan,
        filename,
        actor=actor,
        origin=origin,
        dry_run=dry_run,
        start=start,
        report=report,
        on_chunk=lambda done, r: job_run.progress(done, total=plan.total, result=r.as_dict()),
    )
    return report.as_dict()


# --- command line --------------------------------------------------------------------------
