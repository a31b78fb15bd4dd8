"""Big exports run as background jobs: the request queues the job, its page shows the
progress bar, then offers the file; nobody else can see the job or download its file."""

from __future__ import annotations

import csv
import functools
import io

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from consent import jobs, ledger
from consent.extensions import db
from consent.models import Contact, Role, Source
from tests import factories
from tests.helpers import Auth, csrf_token

LIST = "/admin/optouts/"


@pytest.fixture
def big_export(app, client, auth, staff):
    """Exports over one row go to a job; two numbers opted out; signed in as the org team."""
    app.config["EXPORT_JOB_ROWS"] = 1
    org = staff["organization"]
    contact = db.session.scalars(sa.select(Contact)).first()
    for channel in ("text", "voice"):
        ledger.opt_out(
            org, channel, contact.phones[0].number, source=Source.ADMIN, actor=ledger.Actor.system()
        )
    db.session.commit()
    auth.login("admin@example.org", factories.PASSWORD)
    return contact


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_big_export_is_a_job_whose_page_offers_the_file(client, big_export, fmt):
    queued = client.get(LIST + f"export-people.{fmt}")
    assert queued.status_code == 302 and "/export-jobs/" in queued.location
    waiting = client.get(queued.location).get_data(as_text=True)
    assert "<progress" in waiting and 'http-equiv="refresh"' in waiting
    assert "Waiting for a worker" in waiting
    while jobs.run_one():
        pass
    page = client.get(queued.location).get_data(as_text=True)
    assert 'id="download"' in page and "1 rows" in page
    assert 'http-equiv="refresh"' not in page
    download = client.get(queued.location + "/download")
    assert download.status_code == 200
    assert download.headers["Cache-Control"] == "no-store"
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff"))))
    else:
        sheet = load_workbook(io.BytesIO(download.data)).active
        rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][:2] == ["Person", "ID"]
    assert len(rows) == 2 and rows[1][2] == big_export.name


def test_another_staff_member_cannot_see_or_download_the_export(client, auth, big_export):
    queued = client.get(LIST + "export-people.csv").location
    while jobs.run_one():
        pass
    auth.logout()
    auth.login("site@example.org", factories.PASSWORD)
    assert client.get(queued).status_code == 404
    assert client.get(queued + "/download").status_code == 404
    auth.logout()
    assert client.get(queued + "/download").status_code in (302, 401, 403, 404)


# --- the list, the reports and the activity log: every export over the limit is a job -------


def read_rows(response, fmt: str) -> list[list]:
    if fmt == "csv":
        return list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    sheet = load_workbook(io.BytesIO(response.data)).active
    return [["" if c.value is None else str(c.value) for c in row] for row in sheet.iter_rows()]


def via_job(client, path: str, fmt: str) -> list[list]:
    """Ask for the export; it is a job: its page, a worker, then the file it offers."""
    queued = client.get(path)
    assert queued.status_code == 302 and "/export-jobs/" in queued.location, path
    assert "Waiting for a worker" in client.get(queued.location).get_data(as_text=True)
    while jobs.run_one():
        pass
    page = client.get(queued.location).get_data(as_text=True)
    assert "Done:" in page and 'id="download"' in page
    download = client.get(queued.location + "/download")
    assert download.status_code == 200 and download.headers["Cache-Control"] == "no-store"
    return read_rows(download, fmt)


def at_once(app, client, path: str, fmt: str) -> list[list]:
    """The same export under the limit: the file in the response."""
    app.config["EXPORT_JOB_ROWS"] = 1_000_000
    try:
        response = client.get(path)
        assert response.status_code == 200, path
        return read_rows(response, fmt)
    finally:
        app.config["EXPORT_JOB_ROWS"] = 1


@pytest.fixture
def opted_out_world(app, world):
    """The world with a text opt-out at each site and a call opt-out at Elementary; exports
    over one row go to a job."""
    actor = ledger.Actor.system()
    for family in (world.near, world.far):
        number = family.contacts[0].phones[0].number
        ledger.opt_out(world.org, "text", number, source=Source.ADMIN, actor=actor)
    ledger.opt_out(
        world.org, "voice", world.near.contacts[1].phones[0].number, source=Source.ADMIN,
        actor=actor,
    )  # fmt: skip
    db.session.commit()
    app.config["EXPORT_JOB_ROWS"] = 1
    return world


EXPORTS = [
    "/admin/optouts/export.{fmt}",
    "/admin/optouts/export.{fmt}?flt1_channel_equals=text",
    "/admin/reports/students.{fmt}",
    "/admin/reports/parents/opted_out.{fmt}",
    "/admin/reports/parents/opted_in.{fmt}",
    "/admin/activity/download/{fmt}/",
    "/admin/activity/download/{fmt}/?flt1_channel_equals=text",
]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("path", EXPORTS)
def test_every_big_export_is_a_job_whose_file_has_the_rows_of_the_export(
    app, client, opted_out_world, path, fmt
):
    """Over EXPORT_JOB_ROWS rows the list, report and log exports are jobs; the job's file has
    the same rows as the file written at once (filters applied)."""
    opted_out_world.login(client, "org")
    path = path.format(fmt=fmt)
    from_job = via_job(client, path, fmt)
    assert len(from_job) > 2  # the header and more than the limit's one row
    assert from_job == at_once(app, client, path, fmt)


def test_the_list_filters_reach_the_jobs_file(client, opted_out_world):
    opted_out_world.login(client, "org")
    rows = via_job(client, "/admin/optouts/export.csv?flt1_channel_equals=text", "csv")
    assert rows[0][:2] == ["Address", "Channel"]
    assert len(rows) == 3  # the two text opt-outs, not the call


def test_a_site_teams_list_export_job_names_only_its_own_sites_people(client, opted_out_world):
    world = opted_out_world
    near, far = world.near.contacts[0], world.far.contacts[0]
    world.login(client, "org")
    everyone = " ".join(" ".join(r) for r in via_job(client, "/admin/optouts/export.csv", "csv"))
    assert near.name in everyone and far.name in everyone  # the org team sees both sites
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    world.login(client, "site")
    rows = via_job(client, "/admin/optouts/export.xlsx", "xlsx")
    owners = " ".join(row[-1] for row in rows[1:])
    assert near.name in owners and far.name not in owners
    people = via_job(client, "/admin/optouts/export-people.csv", "csv")
    names = {row[2] for row in people[1:]}
    assert near.name in names and far.name not in names
    from consent import export_jobs  # the job's total (its progress bar) counts those rows

    site = {"site_id": world.elementary.id}
    assert export_jobs.COUNTS["opted-out-numbers"](world.org, site) == len(people) - 1
    assert export_jobs.COUNTS["opted-out-numbers"](world.org, {}) == len(people)  # + far's


@pytest.mark.parametrize(
    "path",
    ["/admin/optouts/export.csv", "/admin/reports/students.csv", "/admin/activity/download/csv/"],
)
def test_nobody_else_sees_or_downloads_an_export_job(app, client, opted_out_world, path):
    """Another user of the same team, and a site team member, get 404 for the page and the
    file; signed out: no file."""
    world = opted_out_world
    world.login(client, "org")
    queued = client.get(path).location
    while jobs.run_one():
        pass
    assert client.get(queued + "/download").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    other = factories.make_user(world.org, "org2@example.org", Role.ORG)
    db.session.commit()
    client2 = app.test_client()
    Auth(client2).login(other.email, factories.PASSWORD)
    assert client2.get(queued).status_code == 404
    assert client2.get(queued + "/download").status_code == 404
    world.login(client, "site")
    assert client.get(queued + "/download").status_code in (403, 404)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    assert client.get(queued + "/download").status_code in (302, 401, 403, 404)


def test_an_export_job_reports_its_progress_while_it_writes(
    app, client, opted_out_world, monkeypatch
):
    """The rows come from one open server-side cursor, so the progress is written aside (on a
    connection of its own) as the rows are written: done of total, and the lease renewed."""
    from consent import export_jobs
    from consent.models import Job

    monkeypatch.setattr(export_jobs, "PROGRESS_EVERY", 2)
    seen = []
    original = jobs.JobRun.progress_aside

    def watched(self, done, *, total=None):
        original(self, done, total=total)
        with db.engine.connect() as conn:
            row = conn.execute(
                sa.select(Job.done, Job.total, Job.locked_until).where(Job.id == self.job.id)
            ).one()
        seen.append((row.done, row.total, row.locked_until is not None))

    monkeypatch.setattr(jobs.JobRun, "progress_aside", watched)
    opted_out_world.login(client, "org")
    rows = via_job(client, "/admin/activity/download/csv/", "csv")
    events = len(rows) - 1
    assert seen and all(total == events and lease for _done, total, lease in seen)
    assert [done for done, _t, _l in seen] == list(range(2, events, 2))


# --- the job's file is kept in parts -------------------------------------------------------


def parts_of(file_id: int) -> list[int]:
    """The sizes of a job file's parts, in order, as the database has them."""
    from consent.models import JobFilePart

    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(sa.func.length(JobFilePart.data))
            .where(JobFilePart.job_file_id == file_id)
            .order_by(JobFilePart.seq)
        )
    )


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_file_written_in_many_parts_downloads_as_the_rows_written_at_once(
    app, client, opted_out_world, monkeypatch, fmt
):
    """Parts of 100 bytes: the export is many parts, the download (streamed part by part,
    its Content-Length their sum) has the rows of the same export written at once."""
    from consent.models import Job

    monkeypatch.setattr(jobs, "PART_SIZE", 100)
    opted_out_world.login(client, "org")
    path = f"/admin/activity/download/{fmt}/"
    queued = client.get(path).location
    while jobs.run_one():
        pass
    download = client.get(queued + "/download")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment; filename=")
    assert int(download.headers["Content-Length"]) == len(download.data)
    job = db.session.get(Job, int(queued.rsplit("/", 1)[1]))
    sizes = parts_of(job.result["file_id"])
    assert len(sizes) > 2 and set(sizes[:-1]) == {100} and 0 < sizes[-1] <= 100
    assert sum(sizes) == len(download.data) == job.result["size"]
    assert read_rows(download, fmt) == at_once(app, client, path, fmt)


class Killed(BaseException):
    """The worker dies here (as under SIGKILL, nothing of the job's own code runs after)."""


def test_a_job_killed_mid_write_leaves_no_file_to_download_and_is_written_again(
    app, client, opted_out_world, monkeypatch
):
    from consent import export_jobs
    from consent.models import Job

    monkeypatch.setattr(jobs, "PART_SIZE", 40)
    monkeypatch.setattr(  # each row written as it comes
        export_jobs, "csv_chunks", functools.partial(export_jobs.csv_chunks, lines_per_chunk=1)
    )
    fn, title = export_jobs.EXPORTS["activity-log"]

    def dies_after_two_rows(org, params):
        for number, row in enumerate(fn(org, params)):
            if number == 3:
                raise Killed()
            yield row

    opted_out_world.login(client, "org")
    path = "/admin/activity/download/csv/"
    expected = at_once(app, client, path, "csv")
    queued = client.get(path).location
    job_id = int(queued.rsplit("/", 1)[1])
    monkeypatch.setitem(export_jobs.EXPORTS, "activity-log", (dies_after_two_rows, title))
    with pytest.raises(Killed):
        jobs.run_one()
    db.session.rollback()
    job = db.session.get(Job, job_id, populate_existing=True)
    assert job.status == "running" and "file_id" not in job.result
    assert parts_of(job.file_id)  # the half file's parts are in the database...
    assert client.get(queued + "/download").status_code == 404  # ...but nobody downloads them
    assert "Done:" not in client.get(queued).get_data(as_text=True)

    monkeypatch.setitem(export_jobs.EXPORTS, "activity-log", (fn, title))
    job.locked_until = job.locked_until.replace(year=2000)  # the dead worker's lease ran out
    db.session.commit()
    assert jobs.run_one() == job_id
    job = db.session.get(Job, job_id, populate_existing=True)
    assert job.status == "done" and job.attempts == 2
    download = client.get(queued + "/download")
    assert read_rows(download, "csv") == expected  # written again whole, nothing doubled
    assert sum(parts_of(job.result["file_id"])) == len(download.data)


def test_a_job_that_fails_mid_write_leaves_no_parts(app, client, opted_out_world, monkeypatch):
    from consent import export_jobs
    from consent.models import Job

    monkeypatch.setattr(jobs, "PART_SIZE", 40)
    monkeypatch.setattr(
        export_jobs, "csv_chunks", functools.partial(export_jobs.csv_chunks, lines_per_chunk=1)
    )
    fn, title = export_jobs.EXPORTS["activity-log"]

    def fails_after_two_rows(org, params):
        for number, row in enumerate(fn(org, params)):
            if number == 3:
                raise jobs.JobError("The database went away.")
            yield row

    monkeypatch.setitem(export_jobs.EXPORTS, "activity-log", (fails_after_two_rows, title))
    opted_out_world.login(client, "org")
    queued = client.get("/admin/activity/download/csv/").location
    while jobs.run_one():
        pass
    job = db.session.get(Job, int(queued.rsplit("/", 1)[1]), populate_existing=True)
    assert job.status == "failed" and job.error == "The database went away."
    assert parts_of(job.file_id) == []  # the parts written before the failure are gone
    assert client.get(queued + "/download").status_code == 404
