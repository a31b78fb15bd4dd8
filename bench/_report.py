"""The figures of a benchmark, printed beside their baselines, and the shared arguments."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Figure:
    """One measured figure beside its baseline; `budget` is an upper bound unless `at_least`."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    budget: float | None = None
    at_least: bool = False

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def verdict(self) -> str:
        if self.budget is None:
            return "-"
        met = self.value >= self.budget if self.at_least else self.value <= self.budget
        return "pass" if met else "MISS"

    @property
    def budget_text(self) -> str:
        if self.budget is None:
            return "-"
        return f"{'>=' if self.at_least else '<='} {_num(self.budget)} {self.unit}"


def _num(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


RECORDED: list[tuple[str, Figure]] = []  # every figure printed in this process, with its engine


def table(figures: list[Figure], engine: str = "") -> str:
    """The figures as a fixed-width table: value, baseline, ratio, budget, pass/miss."""
    RECORDED.extend((engine, f) for f in figures)
    head = f"{'figure':46} {'value':>14} {'baseline':>14} {'(of)':22} {'ratio':>8} {'budget':>16}  result"
    lines = [head]
    for f in figures:
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        base = "-" if f.baseline is None else f"{_num(f.baseline)} {f.unit}"
        lines.append(
            f"{f.name:46} {_num(f.value) + ' ' + f.unit:>14} {base:>14} {f.baseline_name:22} "
            f"{ratio:>8} {f.budget_text:>16}  {f.verdict}"
        )
    if engine:
        lines.append(f"(database: {engine})")
    return "\n".join(lines)


def markdown(figures: list[Figure]) -> str:
    """The same table in Markdown, for the README."""
    lines = [
        "| figure | value | baseline | ratio | budget | result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for f in figures:
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        base = "-" if f.baseline is None else f"{_num(f.baseline)} {f.unit} ({f.baseline_name})"
        lines.append(
            f"| {f.name} | {_num(f.value)} {f.unit} | {base} | {ratio} | {f.budget_text} | "
            f"{f.verdict} |"
        )
    return "\n".join(lines)


def arguments(prog: str, description: str, argv: list[str] | None) -> argparse.Namespace:
    """--database (repeatable: a URL, or 'sqlite') and --scale, shared by every bench."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--database",
        action="append",
        help="SQLAlchemy URL or 'sqlite' (repeatable; default: sqlite, and $BENCH_DATABASE_URL)",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="data set size (1 = full)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load run")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per figure (median)")
    args, _rest = parser.parse_known_args(argv)
    if not args.database:
        args.database = ["sqlite"]
        if os.environ.get("BENCH_DATABASE_URL"):
            args.database.append(os.environ["BENCH_DATABASE_URL"])
    return args


def median_ms(action: Callable[[], object], repeat: int) -> float:
    """The median wall time of `action` in ms, after one warm-up run."""
    action()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def engine_name(url: str) -> str:
    """ "sqlite" or "postgresql": the engine of a SQLAlchemy URL."""
    return url.split(":", 1)[0].split("+", 1)[0]


def database_cpu_seconds(engine) -> float:
    """CPU seconds used so far by the PostgreSQL server processes of this database, when the
    server runs on this machine (read from /proc); 0 for SQLite, whose work is in-process."""
    import sqlalchemy as sa

    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as conn:
        pids = conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_per_database(args: argparse.Namespace, measure_one: Callable[[str], list[Figure]]) -> int:
    """Measure each --database in turn, print its table; 1 when any figure missed its budget."""
    from bench import dataset

    failed = False
    for value in args.database:
        url = dataset.database_url(value, args.scale)
        figures = measure_one(url)
        print(table(figures, engine_name(url)))
        failed |= any(f.verdict == "MISS" for f in figures)
    return 1 if failed else 0
