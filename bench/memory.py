"""Benchmark: peak memory of the 100,000-address eligibility request and of a 100,000-row import.

    python -m bench.memory [--database URL ...] [--scale S]

Each is measured in a child process of its own (`python -m bench.memory --child ...`), after
the app is up and the input is in memory or on disk: tracemalloc's peak of Python allocations
during the operation, beside the size of the input (the JSON body; the CSV file); and the
process's peak resident set during the operation (Linux VmHWM, reset just before it through
/proc/self/clear_refs; interpreter, app and SQLite's page cache included) beside its resident
set just before. The budget names no memory figure: the figures show that
the request holds a few times its input and that the import streams (its peak does not grow
with the file).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench import dataset
from bench._report import Figure, arguments, engine_name, table

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
BUDGET_REQUEST_MIB = 25.0  # Python peak of the 100,000-address POST (issue 18)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _start_rss() -> int:
    """The resident set now, in bytes, with the peak reset to it (so the peak that follows is
    the operation's, not the set-up's). Without /proc: the peak so far (ru_maxrss)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # Linux >= 4.0: reset VmHWM to VmRSS
    except OSError:
        pass
    now = _status_kib("VmRSS")
    return (now if now is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _peak_rss() -> int:
    peak = _status_kib("VmHWM")
    return (peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def child_request(url: str, scale: float, count: int) -> dict:
    app = dataset.app_for(url)
    ds = dataset.ensure(app, scale, quiet=True)
    rng = random.Random(9)
    batch = ds.layout.text_opted_out(count // 2, rng) + ds.layout.unknown_numbers(
        count - count // 2, rng
    )
    body = json.dumps({"channel": "text", "addresses": batch})
    del batch
    client = app.test_client()
    headers = {"Authorization": "Bearer bench-api-key", "Content-Type": "application/json"}
    # The warm-up builds the organization's text snapshot (consent/snapshot.py): its size is
    # measured on its own, it stays between requests.
    tracemalloc.start()
    client.post("/api/v1/eligibility", data=json.dumps({"channel": "text", "addresses": []}),
                headers=headers)  # fmt: skip
    snapshot_bytes, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    from consent import snapshot

    states = sum(s.size() for s in snapshot._SNAPSHOTS.values())
    before = _start_rss()
    tracemalloc.start()
    response = client.post("/api/v1/eligibility", data=body, headers=headers)
    # The whole answer is in memory here (its chunks, as a server sends them one after the
    # other); the test client's joining them into one string is not the app's.
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert response.status_code == 200 and len(response.get_data()) > len(body)
    return {"peak": peak, "rss": _peak_rss(), "rss_before": before, "input": len(body),
            "rows": count, "snapshot": snapshot_bytes, "states": states}  # fmt: skip


def child_import(url: str, scale: float, rows: int) -> dict:
    from consent import imports, ledger
    from consent.extensions import db
    from consent.models import Organization

    app = dataset.app_for(url)
    ds = dataset.ensure(app, scale, quiet=True)
    org_id = dataset.import_org(app)
    folder = tempfile.mkdtemp(prefix="bench-memory-")
    path = os.path.join(folder, "optouts.csv")
    size = dataset.write_import_csv(path, ds.layout, rows)
    with app.app_context():
        org = db.session.get(Organization, org_id)
        actor = ledger.Actor.system("bench")
        before = _start_rss()
        tracemalloc.start()
        started = time.perf_counter()
        with open(path, "rb") as stream:
            report = imports.import_file(org, stream, "optouts.csv", "text", actor=actor)
        elapsed = time.perf_counter() - started
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert report.imported == rows, report.imported
    dataset.import_org(app)  # leave the second organization empty again
    os.remove(path)
    return {"peak": peak, "rss": _peak_rss(), "rss_before": before, "input": size, "rows": rows,
            "seconds_traced": elapsed}  # fmt: skip


def _run_child(kind: str, url: str, scale: float, rows: int) -> dict | None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", kind, "--url", url,
         "--scale", str(scale), "--rows", str(rows)],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    if done.returncode != 0:
        print(f"  memory of {kind}: the child failed\n{done.stderr[-2000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(url: str, scale: float) -> list[Figure]:
    figures = []
    request = _run_child("request", url, scale, 100_000)
    if request:
        figures += [
            Figure("memory: POST 100,000 addresses, Python peak", request["peak"] / MB, "MiB",
                   request["input"] / MB, "JSON body"),
            Figure("  process peak RSS during it", request["rss"] / MB, "MiB",
                   request["rss_before"] / MB, "RSS just before"),
            Figure(f"  the text snapshot kept between requests ({request['states']:,} states)",
                   request["snapshot"] / MB, "MiB", request["input"] / MB, "JSON body"),
        ]  # fmt: skip
        figures[0].budget = BUDGET_REQUEST_MIB
    try:
        import consent.imports  # noqa: F401
    except ImportError:
        print("  (no consent.imports yet: the import's memory is not measured)")
        return figures
    imported = _run_child("import", url, scale, 100_000)
    if imported:
        figures += [
            Figure("memory: import 100,000-row CSV, Python peak", imported["peak"] / MB, "MiB",
                   imported["input"] / MB, "CSV file"),
            Figure("  process peak RSS during it", imported["rss"] / MB, "MiB",
                   imported["rss_before"] / MB, "RSS just before"),
        ]  # fmt: skip
    return figures


def main(argv: list[str] | None = None) -> int:
    child = argparse.ArgumentParser(add_help=False)
    child.add_argument("--child")
    child.add_argument("--url")
    child.add_argument("--rows", type=int, default=100_000)
    known, _rest = child.parse_known_args(argv)
    if known.child:
        args = arguments("python -m bench.memory", "", argv)
        work = child_request if known.child == "request" else child_import
        print(json.dumps(work(known.url, args.scale, known.rows)))
        return 0
    args = arguments("python -m bench.memory", __doc__.splitlines()[0], argv)
    for value in args.database:
        url = dataset.database_url(value, args.scale)
        dataset.ensure(dataset.app_for(url), args.scale)
        print(table(measure(url, args.scale), engine_name(url)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
