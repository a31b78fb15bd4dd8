"""Background jobs (consent.jobs): a worker runs a job to its end with its progress committed
chunk by chunk; a failing job is failed with its reason; a worker that lost its lease writes
nothing; and a `flask jobs work` process SIGKILLed mid-import is resumed by another worker with
nothing lost or doubled."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from consent import jobs, roster
from consent.extensions import db
from consent.models import (
    ConsentEvent,
    Contact,
    Family,
    Job,
    Organization,
    Site,
    Source,
    Student,
    utcnow,
)
from tests import factories
from tests.job_helpers import kill_mid_way, resume
from tests.roster_helpers import generated_rows, write_users


@pytest.fixture
def org(app):
    org = factories.make_org()
    factories.make_site(org, "Maple Valley Elementary")
    db.session.commit()
    return org


@jobs.register("test_sites")
def _make_sites(run: jobs.JobRun) -> dict:
    """A test kind: adds params["count"] sites, two per chunk; fails at params["fail_at"]."""
    params = run.params
    made = run.saved_result.get("made", 0)
    for n in range(run.resumed_from, params["count"]):
        if n == params.get("fail_at"):
            raise ValueError(f"no site {n}")
        db.session.add(Site(organization_id=run.job.organization_id, name=f"Site {n}"))
        made += 1
        if n % 2 == 1 or n == params["count"] - 1:
            run.progress(n + 1, total=params["count"], result={"made": made})
    return {"made": made}


def site_names(org_id: int) -> list[str]:
    db.session.expire_all()
    return sorted(
        db.session.scalars(
            sa.select(Site.name).where(Site.organization_id == org_id, Site.name.like("Site %"))
        )
    )


def test_a_worker_runs_a_job_to_its_end_with_progress(org):
    job = jobs.enqueue("test_sites", org.id, params={"count": 5})
    db.session.commit()
    assert jobs.run_one() == job.id
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert (job.status, job.done, job.total, job.result) == ("done", 5, 5, {"made": 5})
    assert job.started_at <= job.finished_at and job.attempts == 1
    assert site_names(org.id) == [f"Site {n}" for n in range(5)]
    assert jobs.run_one() is None  # nothing left


def test_a_failing_job_is_failed_with_its_reason_and_its_committed_chunks_stay(org):
    job = jobs.enqueue("test_sites", org.id, params={"count": 6, "fail_at": 3})
    db.session.commit()
    jobs.run_one()
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert job.status == "failed" and job.error == "ValueError: no site 3"
    assert job.done == 2 and site_names(org.id) == ["Site 0", "Site 1"]  # Site 2 rolled back


def test_a_job_of_an_unknown_kind_fails_and_says_why(org):
    job = jobs.enqueue("no_such_kind", org.id)
    db.session.commit()
    jobs.run_one()
    db.session.expire_all()
    assert db.session.get(Job, job.id).error == "No worker knows jobs of kind 'no_such_kind'."


def test_a_worker_whose_lease_ran_out_writes_nothing_more(org):
    """Worker A claims, stalls past its lease; B claims the job: A's next chunk is refused."""
    job = jobs.enqueue("test_sites", org.id, params={"count": 4})
    db.session.commit()
    assert jobs.claim("worker-a") == job.id
    db.session.execute(
        sa.update(Job).values(locked_until=utcnow() - timedelta(seconds=1))
    )  # A's lease ran out
    db.session.commit()
    assert jobs.claim("worker-b") == job.id
    stale = jobs.JobRun(db.session.get(Job, job.id), "worker-a")
    db.session.add(Site(organization_id=org.id, name="Site from A"))
    with pytest.raises(jobs.LostLease):
        stale.progress(1)
    assert "Site from A" not in site_names(org.id)
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert (job.worker, job.attempts, job.done) == ("worker-b", 2, 0)


def test_a_job_resumes_from_its_last_committed_chunk(org):
    """A claimed job whose worker died after two chunks: the next worker does the rest."""
    job = jobs.enqueue("test_sites", org.id, params={"count": 5})
    db.session.commit()
    jobs.claim("dead-worker")
    run = jobs.JobRun(db.session.get(Job, job.id), "dead-worker")
    for n in range(2):
        db.session.add(Site(organization_id=org.id, name=f"Site {n}"))
    run.progress(2, total=5, result={"made": 2})
    db.session.add(Site(organization_id=org.id, name="Site 2"))  # in flight when it died
    db.session.rollback()
    db.session.execute(sa.update(Job).values(locked_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert jobs.run_one("second-worker") == job.id
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert (job.status, job.result, job.attempts) == ("done", {"made": 5}, 2)
    assert site_names(org.id) == [f"Site {n}" for n in range(5)]


def test_a_job_that_keeps_killing_its_workers_fails(org):
    job = jobs.enqueue("test_sites", org.id, params={"count": 1})
    job.attempts = jobs.MAX_ATTEMPTS
    db.session.commit()
    jobs.run_one()
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert job.status == "failed" and "Stopped after 5 tries" in job.error
    assert site_names(org.id) == []


def test_progress_figures_for_the_page(org):
    job = Job(kind="x", organization_id=org.id, status="running", total=1000, done=250)
    job.started_at = utcnow() - timedelta(seconds=10)
    job.heartbeat_at = job.started_at + timedelta(seconds=5)
    progress = jobs.progress_of(job)
    assert (progress.percent, progress.rate, progress.seconds_left) == (25, 50.0, 15.0)


def test_flask_jobs_work_runs_queued_jobs(org, runner):
    org_id = org.id
    jobs.enqueue("test_sites", org_id, params={"count": 2})
    db.session.commit()
    result = runner.invoke(args=["jobs", "work"])
    assert result.exit_code == 0 and "1 job(s) ran." in result.output
    assert site_names(org_id) == ["Site 0", "Site 1"]


# --- a worker process killed mid-import -----------------------------------------------------


def test_a_worker_killed_mid_import_is_resumed_with_nothing_lost_or_doubled(
    org, database, tmp_path
):
    families = 300
    folder = write_users(tmp_path / "roster", generated_rows(families))
    job = roster.enqueue(
        db.session.get(Organization, org.id), roster.open_path(str(folder)), "big", dry_run=False
    )
    db.session.commit()
    job_id = job.id
    db.session.close()

    killed_at, output = kill_mid_way(database, job_id, after=100, ROSTER_CHUNK=30)
    assert killed_at.status == "running", output
    assert 0 < killed_at.done < 3 * families
    done, output = resume(database, job_id, ROSTER_CHUNK=30)
    assert done.status == "done", (done.error, output)
    assert done.attempts == 2 and done.done == done.total == 3 * families
    assert done.result["counts"]["new"] == 3 * families
    assert sum(done.result["counts"].values()) == 3 * families

    def count(stmt) -> int:
        return db.session.scalar(stmt)

    assert count(sa.select(sa.func.count()).select_from(Student)) == families
    assert count(sa.select(sa.func.count()).select_from(Contact)) == 2 * families
    assert count(sa.select(sa.func.count(sa.distinct(Contact.sourced_id)))) == 2 * families
    assert count(sa.select(sa.func.count()).select_from(Family)) == families
    entries = count(
        sa.select(sa.func.count())
        .select_from(ConsentEvent)
        .where(ConsentEvent.source == Source.STAFF_ENTRY)
    )
    distinct = count(sa.select(sa.func.count(sa.distinct(ConsentEvent.address))))
    assert entries == distinct == 3 * families
