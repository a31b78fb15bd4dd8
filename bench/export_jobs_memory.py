"""Benchmark: peak memory of the export jobs (activity log, opt-out list) read from the data set.

    python -m bench.export_jobs_memory [--database URL] [--scale S]

Each export runs as its background job (consent.export_jobs: rows from one server-side
cursor, progress written aside) in a child process of its own, by `jobs.run_one()`, on the
bench data set (bench/dataset.py; scale 0.05 = 100,000 events, 50,000 opt-outs). Shown: the
child's peak resident set during the job (Linux VmHWM, reset just before it) beside its
resident set before, the file's size and the seconds; then the download's (the job's file
read back part by part, as the download streams it); and, as the same-run baseline, the same
number of generated rows written by the same writer straight to a file (bench/export_memory).
The job writes its file into parts of about 1 MiB as it goes (consent.jobs.PartWriter), so its
memory should stay flat as the rows grow. "anon" is the anonymous resident set (RssAnon,
sampled): on SQLite the peak RSS also counts the database file's pages read through its mmap
(consent/database.py: PRAGMA mmap_size = 256 MiB, and a 64 MiB page cache per connection),
which grow with the rows read up to that cap and are the kernel's to drop.

Measured 2026-12-02 (2 shared cores), CSV: PostgreSQL, 1,000,000 activity rows (a 159 MB file):
peak RSS 124 MB, 111 MB before the job (baseline 73); 500,000 opt-outs: 123 MB, 111 before.
Before the parts (one blob): 200,000 activity rows on SQLite peaked at 281 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time

from bench.export_memory import _kib, _rows

EXPORTS = ("activity-log", "opt-outs")


class AnonPeak:
    """The highest anonymous resident set (Linux RssAnon: the heap, not the pages of files
    mapped in, such as SQLite's mmap of the database) seen while it runs, sampled."""

    def __init__(self, every: float = 0.02):
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _kib("RssAnon"))
            self._stop.wait(self.every)

    def __enter__(self) -> AnonPeak:
        self.peak = _kib("RssAnon")
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _kib("RssAnon"))


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def _measured(action, prefix: str = "") -> tuple[object, dict]:
    """action()'s result and what it cost, in MB and seconds, each key after `prefix`: the
    seconds, the resident set before it and its peak during it (VmHWM, reset just before), the
    anonymous memory before it and its peak (AnonPeak)."""
    before, anon_before = _kib("VmRSS"), _kib("RssAnon")
    _reset_peak()
    start = time.perf_counter()
    with AnonPeak() as anon:
        result = action()
    seconds = time.perf_counter() - start
    figures = {
        "seconds": round(seconds, 1),
        "rss_before_mb": round(before / 1024, 1),
        "peak_rss_mb": round(_kib("VmHWM") / 1024, 1),
        "anon_before_mb": round(anon_before / 1024, 1),
        "peak_anon_mb": round(anon.peak / 1024, 1),
    }
    return result, {prefix + name: value for name, value in figures.items()}


def child_job(url: str, scale: float, name: str, fmt: str) -> dict:
    from bench import dataset
    from consent import export_jobs, jobs
    from consent.extensions import db
    from consent.models import Job, Organization, User

    app = dataset.app_for(url)
    ds = dataset.ensure(app, scale, quiet=True)
    with app.app_context():
        org = db.session.get(Organization, ds.org_id)
        user = db.session.get(User, ds.admin_id)
        job = export_jobs.enqueue(org, name, fmt, f"bench-{name}", params={}, user=user)
        db.session.commit()
        job_id = job.id
        db.session.remove()
        _ran, job_figures = _measured(jobs.run_one)
        done = db.session.get(Job, job_id)
        result = done.result or {}
        if done.status != "done":
            raise SystemExit(f"job {job_id} {done.status}: {done.error}")
        # The download: the parts read back one at a time (what the response streams).
        db.session.remove()
        read, download_figures = _measured(
            lambda: sum(len(part) for part in jobs.file_parts(result["file_id"])), "download_"
        )
        assert read == result["size"], (read, result["size"])
    return {
        "what": f"{name} job",
        "format": fmt,
        "rows": result.get("rows", 0),
        "file_mb": round((result.get("size") or 0) / 1024 / 1024, 1),
        **job_figures,
        **download_figures,
    }


def child_baseline(fmt: str, rows: int) -> dict:
    from consent.export_jobs import write

    def written() -> int:
        with tempfile.TemporaryFile() as target:
            write(_rows(rows), fmt, target, "Baseline")
            return target.tell()

    size, figures = _measured(written)
    return {
        "what": "baseline: generated rows to a file",
        "format": fmt,
        "rows": rows,
        "file_mb": round(size / 1024 / 1024, 1),
        **figures,
    }


def _run(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.export_jobs_memory", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    from bench import dataset

    parser = argparse.ArgumentParser(prog="bench.export_jobs_memory", description=__doc__)
    parser.add_argument("--database", action="append", help="URL or 'sqlite' (repeatable)")
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--exports", default=",".join(EXPORTS), help="comma-separated")
    parser.add_argument("--formats", default="csv,xlsx", help="comma-separated")
    parser.add_argument("--job", nargs=2, metavar=("EXPORT", "FORMAT"))
    parser.add_argument("--baseline", nargs=2, metavar=("FORMAT", "ROWS"))
    # `python -m bench` passes its own options (--seconds, --repeat) to every bench.
    args, _rest = parser.parse_known_args(argv)
    databases = args.database or ["sqlite"]
    if args.job:
        url = dataset.database_url(databases[0], args.scale)
        print(json.dumps(child_job(url, args.scale, *args.job)))
        return
    if args.baseline:
        print(json.dumps(child_baseline(args.baseline[0], int(args.baseline[1]))))
        return
    for database in databases:
        _measure(database, args)


def _measure(database: str, args) -> None:
    from bench import dataset
    from bench._report import engine_name

    url = dataset.database_url(database, args.scale)
    dataset.ensure(dataset.app_for(url), args.scale)
    print(f"database: {engine_name(url)}, scale {args.scale:g}")
    print(
        "| export | format | rows | peak RSS (MB) | RSS before (MB) | peak anon (MB) "
        "| anon before (MB) | file (MB) | seconds |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.exports.split(","):
        for fmt in args.formats.split(","):
            job = _run("--database", database, "--scale", str(args.scale), "--job", name, fmt)
            _print(job)
            _print(
                {
                    "what": f"{name} download (parts read back)",
                    "format": fmt,
                    "rows": job["rows"],
                    "peak_rss_mb": job["download_peak_rss_mb"],
                    "rss_before_mb": job["download_rss_before_mb"],
                    "peak_anon_mb": job["download_peak_anon_mb"],
                    "anon_before_mb": job["download_anon_before_mb"],
                    "file_mb": job["file_mb"],
                    "seconds": job["download_seconds"],
                }
            )
            _print(_run("--baseline", fmt, str(job["rows"])))


def _print(r: dict) -> None:
    print(
        f"| {r['what']} | {r['format']} | {r['rows']:,} | {r['peak_rss_mb']} "
        f"| {r['rss_before_mb']} | {r['peak_anon_mb']} | {r['anon_before_mb']} "
        f"| {r['file_mb']} | {r['seconds']} |"
    )


if __name__ == "__main__":
    main()
