"""Background jobs: long work (roster and opt-out previews and imports, big exports,
invitations to everyone) done by a worker process, with progress, never inside a web request.

A job is a row (consent.models.Job) and, when it reads an upload, a JobFile holding the bytes,
so any worker on any machine can run it. A JobFile's bytes are kept in parts of PART_SIZE
(JobFilePart): an upload is stored part by part (store_file), a job reads it back as a file
(JobRun.file_reader: a spooled temporary file filled part by part) and an export job writes
its file with a PartWriter, each part committed as it fills, so no side holds the whole file. Kinds are registered by name (`@register("kind")`);
a kind's function gets a JobRun and does its work in chunks, calling `run.progress(...)` after
each: that writes the job's progress and commits it in the same transaction as the chunk's own
writes, so a chunk is either committed and counted, or neither.

Workers (`flask jobs work [--loop]`) claim one job at a time for a lease (PostgreSQL:
`FOR UPDATE SKIP LOCKED`; SQLite: the write lock, `BEGIN IMMEDIATE`). Each progress call
extends the lease. A worker that dies leaves its job `running` with a lease that runs out;
the next worker claims it again and the kind resumes from `job.done` (the chunks before it are
committed; the one in flight was rolled back with the dead worker's transaction). A worker
asked to stop (SIGTERM, Ctrl-C) finishes its chunk and hands the job back to the queue.
A job that keeps killing its workers fails after MAX_ATTEMPTS claims.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from consent.database import begin_write, is_sqlite
from consent.extensions import db
from consent.models import Job, JobFile, JobFilePart, utcnow

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
MAX_ATTEMPTS = 5
KINDS: dict[str, Callable[[JobRun], dict | None]] = {}
# The modules that register job kinds, imported before a worker looks a kind up.
KIND_MODULES = ("consent.roster", "consent.imports", "consent.export_jobs", "consent.accounts")
# The signals asking the running worker to stop (`asked_to_stop`): progress() reads it.
_stop_requests: list[int] = []


class JobError(RuntimeError):
    """A job cannot go on, for a reason its page shows as it is (a file that cannot be read)."""


class LostLease(RuntimeError):
    """This worker's lease on the job ran out and another worker has it now."""


class Stopping(RuntimeError):
    """The worker was asked to stop; the job goes back to the queue after this chunk."""


def register(kind: str):
    """Register the function that runs jobs of `kind`: fn(run: JobRun) -> result dict."""

    def decorator(fn):
        KINDS[kind] = fn
        return fn

    return decorator


def load_kinds() -> None:
    import importlib

    for name in KIND_MODULES:
        importlib.import_module(name)


def enqueue(
    kind: str,
    organization_id: int,
    *,
    params: dict | None = None,
    created_by_user_id: int | None = None,
    file: JobFile | None = None,
    total: int = 0,
) -> Job:
    """Queue a job in the current transaction (the caller commits)."""
    job = Job(
        kind=kind,
        organization_id=organization_id,
        created_by_user_id=created_by_user_id,
        file=file,
        status=QUEUED,
        total=total,
        done=0,
        attempts=0,
        params=params or {},
        result={},
    )
    db.session.add(job)
    db.session.flush()
    return job


PART_SIZE = 1024 * 1024  # the bytes of one JobFilePart (the last part of a file: up to this)
SPOOL_BYTES = 4 * PART_SIZE  # a file read back by a job: in memory up to this, then on disk


def store_file(organization_id: int, filename: str, content: bytes) -> JobFile:
    """Keep an upload for a job, in the database, in parts (the caller commits)."""
    stored = JobFile(organization_id=organization_id, filename=filename[:300], size=len(content))
    db.session.add(stored)
    db.session.flush()
    view = memoryview(content)
    for seq, start in enumerate(range(0, len(content), PART_SIZE)):
        db.session.execute(
            sa.insert(JobFilePart).values(
                job_file_id=stored.id, seq=seq, data=bytes(view[start : start + PART_SIZE])
            )
        )
    return stored


def file_size(file_id: int) -> int:
    """The bytes a JobFile's parts hold, together."""
    total = db.session.scalar(
        sa.select(sa.func.sum(sa.func.length(JobFilePart.data))).where(
            JobFilePart.job_file_id == file_id
        )
    )
    return int(total or 0)


def file_parts(file_id: int) -> Iterator[bytes]:
    """A JobFile's bytes, part by part, in order: one part read (and held) at a time."""
    seq = -1
    while True:
        row = db.session.execute(
            sa.select(JobFilePart.seq, JobFilePart.data)
            .where(JobFilePart.job_file_id == file_id, JobFilePart.seq > seq)
            .order_by(JobFilePart.seq)
            .limit(1)
        ).first()
        if row is None:
            return
        seq = row.seq
        yield bytes(row.data)


def file_reader(file_id: int):
    """A JobFile as a binary file, at its start: a SpooledTemporaryFile filled part by part
    (in memory up to SPOOL_BYTES, on disk beyond). The caller closes it."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    for part in file_parts(file_id):
        spool.write(part)
    spool.seek(0)
    return spool


def delete_parts(file_id: int, conn=None) -> None:
    """Drop a JobFile's parts (a half-written file): on `conn`, or in the session."""
    stmt = sa.delete(JobFilePart).where(JobFilePart.job_file_id == file_id)
    (conn or db.session).execute(stmt)


class PartWriter:
    """A binary file a job writes into a JobFile: the bytes are kept in parts of PART_SIZE,
    each part inserted and committed as it fills, on a connection of its own (the session may
    be reading a long server-side cursor meanwhile). The file is whole only after close();
    until then it is not a finished job's result, so a job that dies mid-write leaves parts
    no one can download, and the next attempt overwrites them (start())."""

    def __init__(self, file_id: int, part_size: int | None = None):
        self.file_id = file_id
        self.part_size = part_size or PART_SIZE
        self.size = 0
        self._seq = 0
        self._buffer = bytearray()

    def start(self) -> PartWriter:
        """Drop whatever an earlier attempt wrote into this file."""
        with db.engine.connect().execution_options(consent_write=True) as conn:
            delete_parts(self.file_id, conn)
            conn.execute(sa.update(JobFile).where(JobFile.id == self.file_id).values(size=0))
            conn.commit()
        return self

    def write(self, data) -> int:
        self._buffer += data
        while len(self._buffer) >= self.part_size:
            self._put(bytes(self._buffer[: self.part_size]))
            del self._buffer[: self.part_size]
        return len(data)

    def tell(self) -> int:
        return self.size + len(self._buffer)

    def _put(self, data: bytes, *, last: bool = False) -> None:
        with db.engine.connect().execution_options(consent_write=True) as conn:
            if data:
                conn.execute(
                    sa.insert(JobFilePart).values(
                        job_file_id=self.file_id, seq=self._seq, data=data
                    )
                )
                self._seq += 1
                self.size += len(data)
            if last:
                conn.execute(
                    sa.update(JobFile).where(JobFile.id == self.file_id).values(size=self.size)
                )
            conn.commit()

    def close(self) -> None:
        """Write the last part and the file's size."""
        data = bytes(self._buffer)
        self._buffer = bytearray()
        self._put(data, last=True)

    def copy_from(self, source) -> None:
        """Append what a binary file holds from where it is, a part at a time."""
        while data := source.read(self.part_size):
            self.write(data)


def new_file(job: Job, filename: str) -> int:
    """An empty JobFile (a header, no parts yet) for the file `job` writes, kept as the job's
    file; committed on a connection of its own."""
    with db.engine.connect().execution_options(consent_write=True) as conn:
        file_id = conn.execute(
            sa.insert(JobFile)
            .values(
                organization_id=job.organization_id,
                filename=filename[:300],
                size=0,
                created_at=utcnow(),
            )
            .returning(JobFile.id)
        ).scalar_one()
        conn.execute(sa.update(Job).where(Job.id == job.id).values(file_id=file_id))
        conn.commit()
    return file_id


def lease() -> timedelta:
    """How long a claimed job belongs to its worker without a word of progress."""
    return timedelta(seconds=current_app.config.get("JOB_LEASE_SECONDS", 120))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def _due(now):
    return sa.or_(
        Job.status == QUEUED,
        sa.and_(Job.status == RUNNING, Job.locked_until < now),
    )


def claim(worker: str) -> int | None:
    """Claim the oldest due job (queued, or running with its lease run out) for `worker`."""
    now = utcnow()
    # A plain read first: an idle worker polls without taking SQLite's write lock.
    if db.session.scalar(sa.select(Job.id).where(_due(now)).limit(1)) is None:
        db.session.rollback()
        return None
    db.session.rollback()
    begin_write()
    now = utcnow()
    stmt = sa.select(Job.id).where(_due(now)).order_by(Job.id).limit(1)
    if not is_sqlite():
        stmt = stmt.with_for_update(skip_locked=True)
    job_id = db.session.scalar(stmt)
    if job_id is not None:
        db.session.execute(
            sa.update(Job)
            .where(Job.id == job_id)
            .values(
                status=RUNNING,
                worker=worker,
                attempts=Job.attempts + 1,
                started_at=sa.func.coalesce(Job.started_at, now),
                heartbeat_at=now,
                locked_until=now + lease(),
            )
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return job_id


@dataclass
class JobRun:
    """What a job kind's function works with: the job, its file, and progress reports."""

    job: Job
    worker: str

    @property
    def params(self) -> dict:
        return dict(self.job.params or {})

    @property
    def resumed_from(self) -> int:
        """Units already committed by an earlier worker (0 on a first run)."""
        return self.job.done or 0

    @property
    def saved_result(self) -> dict:
        """The result as of the last committed chunk."""
        return dict(self.job.result or {})

    def _file_id(self) -> int:
        stored = db.session.get(JobFile, self.job.file_id) if self.job.file_id else None
        if stored is None:
            raise RuntimeError("this job's file is gone")
        return stored.id

    def file_bytes(self) -> bytes:
        """The job's file, whole (for small files: a roster's archive)."""
        return b"".join(file_parts(self._file_id()))

    def file_reader(self):
        """The job's file as a binary file (a spooled temporary file); the caller closes it."""
        return file_reader(self._file_id())

    def progress(self, done: int, *, total: int | None = None, result: dict | None = None):
        """Record progress and commit it with whatever the session holds (the chunk's writes).

        Raises LostLease (after rolling back) when another worker took the job meanwhile, and
        Stopping (after committing) when this worker was asked to stop."""
        begin_write()
        now = utcnow()
        values = {"done": done, "heartbeat_at": now, "locked_until": now + lease()}
        if total is not None:
            values["total"] = total
        if result is not None:
            values["result"] = result
        updated = db.session.execute(
            sa.update(Job)
            .where(Job.id == self.job.id, Job.worker == self.worker, Job.status == RUNNING)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if updated.rowcount != 1:
            db.session.rollback()
            raise LostLease(f"job {self.job.id} was taken over by another worker")
        db.session.commit()
        if _stop_requests:
            raise Stopping()

    def progress_aside(self, done: int, *, total: int | None = None) -> None:
        """Record progress (and extend the lease) on a connection of its own, leaving the
        session's transaction alone: for work that reads one long server-side cursor and
        commits nothing until the end (an export). Raises LostLease and Stopping as
        progress() does; the work done so far is then simply dropped."""
        now = utcnow()
        values = {"done": done, "heartbeat_at": now, "locked_until": now + lease()}
        if total is not None:
            values["total"] = total
        with db.engine.connect().execution_options(consent_write=True) as conn:
            updated = conn.execute(
                sa.update(Job)
                .where(Job.id == self.job.id, Job.worker == self.worker, Job.status == RUNNING)
                .values(**values)
            )
            conn.commit()
        if updated.rowcount != 1:
            raise LostLease(f"job {self.job.id} was taken over by another worker")
        if _stop_requests:
            raise Stopping()


def run_one(worker: str | None = None) -> int | None:
    """Claim one due job and run it to its end (done or failed). Returns its id, or None."""
    worker = worker or worker_name()
    job_id = claim(worker)
    if job_id is None:
        return None
    job = db.session.get(Job, job_id, populate_existing=True)
    load_kinds()
    handler = KINDS.get(job.kind)
    if handler is None:
        _finish(job_id, worker, FAILED, error=f"No worker knows jobs of kind {job.kind!r}.")
        return job_id
    if job.attempts > MAX_ATTEMPTS:
        _finish(
            job_id,
            worker,
            FAILED,
            error=f"Stopped after {MAX_ATTEMPTS} tries: each worker that ran it stopped "
            "before the end.",
        )
        return job_id
    try:
        result = handler(JobRun(job, worker))
    except LostLease:
        db.session.rollback()
        log.warning("job %s: lease lost; another worker has it", job_id)
    except Stopping:
        db.session.rollback()
        _release(job_id, worker)
    except Exception as exc:  # noqa: BLE001 - any failure of the work fails the job, not the worker
        db.session.rollback()
        if isinstance(exc, JobError):
            error = str(exc)
        else:
            log.exception("job %s failed", job_id)
            error = f"{type(exc).__name__}: {exc}"
        _finish(job_id, worker, FAILED, error=error[:2000])
    else:
        _finish(job_id, worker, DONE, result=result)
    return job_id


def _finish(job_id: int, worker: str, status: str, *, result=None, error=None) -> None:
    begin_write()
    values = {"status": status, "finished_at": utcnow(), "locked_until": None, "error": error}
    if result is not None:
        values["result"] = result
    db.session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.worker == worker)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _release(job_id: int, worker: str) -> None:
    """Hand a job back to the queue at once (this worker is stopping)."""
    begin_write()
    db.session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.worker == worker, Job.status == RUNNING)
        .values(status=QUEUED, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def work(*, loop: bool = False, interval: float = 1.0, worker: str | None = None) -> int:
    """Run due jobs until none is left (or, with `loop`, until asked to stop). Returns how many
    jobs it ran."""
    global _stop_requests
    worker = worker or worker_name()
    ran = 0
    with asked_to_stop() as _stop_requests:
        while not _stop_requests:
            job_id = run_one(worker)
            db.session.remove()
            if job_id is not None:
                ran += 1
                click.echo(f"job {job_id} ran")
                continue
            if not loop:
                break
            time.sleep(interval)
    return ran


@contextmanager
def asked_to_stop() -> Iterator[list[int]]:
    """For a worker's loop (jobs here, `flask outbox send`, `flask webhooks send`): inside the
    block, SIGTERM and SIGINT (how systemd and container runtimes stop a process; Ctrl-C) stop
    nothing by themselves but are added to the list yielded, which the loop reads between two
    pieces of work. A signal handler only sets a flag (taking a lock there could deadlock). The
    process's own handlers are put back afterwards."""
    asked: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: asked.append(signum))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield asked
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- what pages show -----------------------------------------------------------------------


@dataclass
class Progress:
    """A job's progress in figures a page can show."""

    done: int
    total: int
    rate: float | None  # units per second, since the job started
    seconds_left: float | None

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


def progress_of(job: Job) -> Progress:
    rate = seconds_left = None
    if job.started_at and job.heartbeat_at and job.done:
        elapsed = (job.heartbeat_at - job.started_at).total_seconds()
        if elapsed > 0:
            rate = job.done / elapsed
            if job.total and job.status in (QUEUED, RUNNING):
                seconds_left = max(job.total - job.done, 0) / rate
    return Progress(job.done or 0, job.total or 0, rate, seconds_left)


# --- command line --------------------------------------------------------------------------

jobs_cli = AppGroup("jobs", help="Run background jobs (roster imports and other long work).")


@jobs_cli.command("work")
@click.option("--loop", is_flag=True, help="Keep waiting for new jobs until stopped.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
def jobs_work(loop: bool, interval: float):
    """Run queued jobs, and resume those whose worker died."""
    ran = work(loop=loop, interval=interval)
    if not loop:
        click.echo(f"{ran} job(s) ran.")
