"""Benchmark: peak memory of the CSV and XLSX exports at 1,000,000 rows.

    python -m bench.export_memory [--rows N]

Each format is written in a child process of its own (consent.export_jobs.write, the code the
export job runs; rows generated like the opted-out numbers export's), to a temporary file.
Shown: the process's peak resident set during the write (Linux VmHWM, reset just before it
through /proc/self/clear_refs) beside its resident set before, and the file's size. Flat memory
means the peak does not grow with the rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time


def _kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _rows(count: int):
    yield ["Person", "ID", "Name", "Family", "Number", "Type", "Opted out of", "Changed (UTC)"]
    for n in range(count):
        yield [
            "Contact", f"P-{n}", f"Parent {n}", f"Family {n // 2}", f"+1202{n % 10_000_000:07d}",
            "Mobile", "Texts, Calls", "2026-11-30 12:00:00",
        ]  # fmt: skip


def child(fmt: str, rows: int) -> dict:
    from consent.export_jobs import write

    before = _kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass
    start = time.perf_counter()
    with tempfile.TemporaryFile() as target:
        write(_rows(rows), fmt, target, "Opted-out numbers")
        size = target.tell()
    return {
        "format": fmt,
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
        "rss_before_mb": round(before / 1024, 1),
        "peak_rss_mb": round(_kib("VmHWM") / 1024, 1),
        "file_mb": round(size / 1024 / 1024, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.export_memory", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child", choices=("csv", "xlsx"))
    # `python -m bench` passes every bench its own options (--database, --scale, ...): this one
    # reads no database, and ignores them.
    args, _rest = parser.parse_known_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.rows)))
        return
    print("| format | rows | peak RSS (MB) | RSS before (MB) | file (MB) | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for fmt in ("csv", "xlsx"):
        out = subprocess.run(
            [sys.executable, "-m", "bench.export_memory", "--child", fmt, "--rows", str(args.rows)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"| {r['format']} | {r['rows']:,} | {r['peak_rss_mb']} | {r['rss_before_mb']} "
            f"| {r['file_mb']} | {r['seconds']} |"
        )


if __name__ == "__main__":
    main()
