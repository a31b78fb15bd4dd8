"""A `flask jobs work` process of its own, killed with SIGKILL part-way through a job and then
resumed by a second worker (tests/test_jobs.py, test_import_fixtures.py, test_accounts.py);
`stop` ends any worker process (the outbox's too, tests/test_outbox_workers.py), and `stop_once`
stops one in the middle of its batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from consent.extensions import db
from consent.models import Job

ROOT = Path(__file__).resolve().parent.parent


def start_worker(database_url: str, **settings: object) -> subprocess.Popen:
    """`flask jobs work --loop` in its own process, on the test's database; `settings` go in
    its environment (JOB_LEASE_SECONDS defaults to 2)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "worker-secret",
        "EMAIL_TRANSPORT": "record",
        "OUTBOX_DELIVER_AFTER_COMMIT": "0",
        "JOB_LEASE_SECONDS": "2",
        **{name: str(value) for name, value in settings.items()},
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "run", "jobs", "work", "--loop"]
        + ["--interval", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(worker: subprocess.Popen) -> str:
    """Ask a worker process to stop (SIGTERM), wait for it, and return what it printed."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        out, _err = worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        out, _err = worker.communicate()
    return (out or b"").decode(errors="replace")


def stop_once(worker: subprocess.Popen, started, timeout: float = 60) -> str:
    """Wait until `started()` is true (the worker is in the middle of its batch), then stop
    the worker with SIGTERM, check that it exited 0, and return what it printed."""
    deadline = time.monotonic() + timeout
    while not started() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert started(), stop(worker)
    output = stop(worker)
    assert worker.returncode == 0, output
    return output


def job_now(job_id: int) -> Job:
    """The job as the database has it now (another process writes it)."""
    db.session.rollback()
    db.session.expire_all()
    return db.session.get(Job, job_id)


@dataclass(frozen=True)
class Seen:
    """A job's row as it was at one moment (a Job object would reload itself later)."""

    status: str
    done: int
    total: int
    attempts: int
    result: dict
    error: str | None

    @classmethod
    def of(cls, job: Job) -> Seen:
        return cls(job.status, job.done, job.total, job.attempts, dict(job.result or {}), job.error)


def kill_mid_way(
    database_url: str, job_id: int, *, after: int, timeout: float = 120, **settings
) -> tuple[Seen, str]:
    """Start a worker, SIGKILL it once the job has `after` units done (or has ended), and
    return the job as the dead worker left it, with what the worker printed."""
    worker = start_worker(database_url, **settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = job_now(job_id)
        if seen.done >= after or seen.status in ("done", "failed"):
            break
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    return Seen.of(job_now(job_id)), stop(worker)


def resume(database_url: str, job_id: int, *, timeout: float = 180, **settings) -> tuple[Job, str]:
    """Start a second worker and let it run the job to its end; the job then, and the output."""
    worker = start_worker(database_url, **settings)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and job_now(job_id).status in ("queued", "running"):
            time.sleep(0.2)
    finally:
        output = stop(worker)
    return job_now(job_id), output
