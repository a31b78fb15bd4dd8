"""Exports too big for a web request, written by a background job (consent.jobs).

An export over EXPORT_JOB_ROWS rows is queued instead of streamed: the worker writes the file
(CSV from a server-side cursor, `yield_per`; XLSX through openpyxl's write-only workbook, so
writing's memory stays flat whatever the rows; bench/export_memory.py measures it), keeps it in
`job_files` in parts (consent.jobs.PartWriter: each part of about 1 MiB committed as it fills,
so the job's memory stays flat too; bench/export_jobs_memory.py), and the job's page offers the
download, streamed part by part. Exports are registered by name with the
function that yields their rows (header first) from JSON-able params, and the one that counts
them (the progress bar's total): the opted-out numbers, the opt-out list as filtered, the
reports and the activity log. The progress is written aside while the cursor is open
(JobRun.progress_aside), which also keeps the job's lease.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator

import sqlalchemy as sa

from consent import jobs
from consent.export import XLSX_TYPE, csv_chunks, write_xlsx
from consent.extensions import db
from consent.models import Job, Organization

JOB_KIND = "export"
EXPORT_JOB_ROWS = 5_000  # more rows than this: a job, not the request
PROGRESS_EVERY = 5_000
EXPORTS: dict[str, tuple[Callable[[Organization, dict], Iterable[list]], str]] = {}
COUNTS: dict[str, Callable[[Organization, dict], int]] = {}  # each export's rows, for the bar


def register_export(
    name: str, title: str, count: Callable[[Organization, dict], int] | None = None
):
    """Register the rows of an export: fn(org, params) -> rows (header first); with `count`,
    count(org, params) -> how many rows (less the header), the job's total."""

    def decorator(fn):
        EXPORTS[name] = (fn, title)
        if count is not None:
            COUNTS[name] = count
        return fn

    return decorator


def rows_of(stmt) -> int:
    """How many rows a statement has."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery()))


def _count_people(org: Organization, params: dict) -> int:
    from consent import optout_list

    phones = optout_list.people_statement(org, params.get("site_id")).order_by(None).subquery()
    return db.session.scalar(sa.select(sa.func.count(sa.distinct(phones.c.id))))


@register_export("opted-out-numbers", "Opted-out numbers", count=_count_people)
def _people(org: Organization, params: dict) -> Iterable[list]:
    from consent import optout_list

    return optout_list.people_rows(org, site_id=params.get("site_id"))


@register_export("opt-outs", "Opt-outs", count=lambda org, p: rows_of(list_statement(org, p)))
def _list(org: Organization, params: dict) -> Iterable[list]:
    """The opt-out list as shown (its search, filters and sort); a site team's file names only
    its own site's people."""
    from consent import optout_list

    return optout_list.list_rows(list_statement(org, params), site_id=params.get("site_id"))


def list_statement(org: Organization, params: dict):
    from consent import optout_list

    return optout_list.filtered_statement(
        org.id,
        search=params.get("search") or "",
        filters=params.get("filters") or {},
        sort=params.get("sort"),
        desc=bool(params.get("desc")),
    )


@register_export(
    "activity-log", "Activity log", count=lambda org, p: rows_of(activity_statement(org, p))
)
def _activity(org: Organization, params: dict) -> Iterable[list]:
    from consent import activity_log

    return activity_log.rows(activity_statement(org, params))


def activity_statement(org: Organization, params: dict):
    from consent import activity_log

    return activity_log.statement(
        org.id, params.get("filters") or {}, sort=params.get("sort"), desc=params.get("desc", True)
    )


def _count_students(org: Organization, params: dict) -> int:
    from consent import reports

    return rows_of(
        reports.student_statement(org.id, params.get("site_id"), params.get("enrollment"))
    )


def _count_parents(org: Organization, params: dict) -> int:
    from consent import reports

    return rows_of(reports.parents_statement(org.id, reports.PARENT_STATUSES[params["status"]]))


@register_export("students-parent-phones", "Students", count=_count_students)
def _students(org: Organization, params: dict) -> Iterable[list]:
    from consent import reports

    return reports.student_report_rows(org.id, params.get("site_id"), params.get("enrollment"))


@register_export("parents", "Parents", count=_count_parents)
def _parents(org: Organization, params: dict) -> Iterable[list]:
    from consent import reports

    return reports.parents_report_rows(org.id, reports.PARENT_STATUSES[params["status"]])


def more_than(stmt, limit: int) -> bool:
    """Whether the statement has more than `limit` rows (reads at most limit + 1 of them)."""
    capped = stmt.order_by(None).limit(limit + 1).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(capped)) > limit


def enqueue(org: Organization, name: str, fmt: str, filename: str, *, params=None, user=None):
    """Queue an export (the caller commits)."""
    if name not in EXPORTS or fmt not in ("csv", "xlsx"):
        raise ValueError(f"unknown export {name!r} or format {fmt!r}")
    return jobs.enqueue(
        JOB_KIND,
        org.id,
        params={"export": name, "format": fmt, "filename": filename, **(params or {})},
        created_by_user_id=user.id if user else None,
    )


def _counted(rows: Iterable[list], seen: list[int], report=None, total: int = 0) -> Iterator[list]:
    """The rows, counted in seen[0]; every PROGRESS_EVERY rows, report(done, total)."""
    for row in rows:
        seen[0] += 1
        if report is not None and seen[0] % PROGRESS_EVERY == 1 and seen[0] > 1:
            done = seen[0] - 1  # less the header
            report(done, total=max(total, done))
        yield row


def write(rows: Iterable[list], fmt: str, target, title: str) -> None:
    """Write the rows as CSV or XLSX into a binary file, streaming."""
    if fmt == "xlsx":
        write_xlsx(rows, target, title)
        return
    for chunk in csv_chunks(rows):
        target.write(chunk.encode("utf-8"))


@jobs.register(JOB_KIND)
def _run_job(job_run: jobs.JobRun) -> dict:
    params = job_run.params
    org = db.session.get(Organization, job_run.job.organization_id)
    fn, title = EXPORTS[params["export"]]
    fmt = params["format"]
    seen = [0]
    count = COUNTS.get(params["export"])
    total = count(org, params) if count else 0
    name = f"{params['filename']}.{fmt}"
    # The file is the job's own (job.file_id) from its first attempt: a later attempt (the
    # worker died, or was stopped) writes it again from its first part.
    file_id = job_run.job.file_id or jobs.new_file(job_run.job, name)
    job_run.progress(0, total=total)
    target = jobs.PartWriter(file_id).start()
    try:
        # The rows come from one server-side cursor: no commit until it is read to its end;
        # the progress (and the lease) is written aside, on a connection of its own, and so
        # is each part of the file as it fills.
        rows = _counted(fn(org, params), seen, job_run.progress_aside, total)
        if fmt == "xlsx":
            # openpyxl's write-only workbook writes a zip: into a temporary file, then copied
            # into the parts a chunk at a time.
            with tempfile.TemporaryFile() as spool:
                write(rows, fmt, spool, title)
                db.session.rollback()
                spool.seek(0)
                target.copy_from(spool)
        else:
            write(rows, fmt, target, title)
            db.session.rollback()
        target.close()
    except jobs.LostLease:
        raise  # the worker that has the job now writes the file again
    except Exception:
        # Failed or stopped: no half file is left (a resumed attempt writes it all again).
        db.session.rollback()
        with db.engine.connect().execution_options(consent_write=True) as conn:
            jobs.delete_parts(file_id, conn)
            conn.commit()
        raise
    rows = max(seen[0] - 1, 0)  # less the header
    result = {
        "file_id": file_id,
        "filename": name,
        "rows": rows,
        "size": target.size,
        "format": fmt,
    }
    job_run.progress(rows, total=rows, result=result)
    return result


def mimetype(fmt: str) -> str:
    return XLSX_TYPE if fmt == "xlsx" else "text/csv; charset=utf-8"


def job_of(org_id: int, job_id: int, user_id: int) -> Job | None:
    """The export job, when it is this organization's and this user's."""
    job = db.session.get(Job, job_id)
    if job is None or job.kind != JOB_KIND or job.organization_id != org_id:
        return None
    return job if job.created_by_user_id == user_id else None
