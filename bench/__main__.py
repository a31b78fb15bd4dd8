"""Run every benchmark: `python -m bench [--database URL ...] [--scale S] [--seconds N]`.

The data set first (built once per database and scale, then reused), then each bench module's
main(argv) in ORDER (modules not listed run after, by name). Every figure is printed beside its
baseline as it is measured; at the end all of them again, in one Markdown table per database,
also written to bench/results/latest.md. Exit 1 when any figure missed its budget.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path

ORDER = (
    "dataset",
    "eligibility",
    "admin_list",
    "activity",
    "import_csv",
    "memory",
    "server_load",
)
# Not benchmarks: the app server_load serves, and the locust file (run by locust itself).
NOT_BENCHES = {"wsgi", "locustfile"}


def machine() -> str:
    """Cores, memory, load: the machine the figures came from."""
    cores = os.cpu_count()
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        memory = "RAM unknown"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {cores} cores ({platform.processor() or 'cpu'}), {memory}, "
        f"Python {platform.python_version()}, load average {load}"
    )


def main(argv: list[str]) -> int:
    """Each bench module's main(argv); exit 1 when any figure missed."""
    from bench import _report

    here = Path(__file__).parent
    names = [m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_")]
    names = [n for n in names if n not in NOT_BENCHES]
    ordered = [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)
    started = time.time()
    print(f"machine: {machine()}")
    failed = 0
    for name in ordered:
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "main"):
            continue
        print(f"\n== bench.{name}", flush=True)
        try:
            failed |= bool(module.main(argv))
        except (Exception, SystemExit) as error:  # noqa: BLE001 - one bench's failure ends only it
            print(f"bench.{name} failed: {error!r}", flush=True)
            _report.RECORDED.append(("errors", _report.Figure(f"bench.{name} failed", 0, "")))
            failed = 1
    summary = [f"machine at the end: {machine()}", f"took {time.time() - started:.0f} s", ""]
    for engine in dict.fromkeys(engine for engine, _f in _report.RECORDED):
        summary.append(f"### {engine}\n")
        summary.append(_report.markdown([f for e, f in _report.RECORDED if e == engine]))
        summary.append("")
    text = "\n".join(summary)
    print("\n" + text)
    results = here / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.md").write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
