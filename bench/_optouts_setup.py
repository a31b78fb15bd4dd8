"""Shared set-up of the opt-out benchmarks: an app on a fresh database, and a printed table."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import sqlalchemy as sa


def arguments(description: str, rows: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--database",
        default=None,
        help="SQLAlchemy URL (postgresql://… or sqlite:///…); default: a temporary SQLite file",
    )
    parser.add_argument("--rows", type=int, default=rows, help=f"rows (default {rows:,})")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per figure (median)")
    return parser.parse_args()


def database_url(url: str | None) -> str:
    if not url:
        return f"sqlite:///{tempfile.mkdtemp(prefix='bench-')}/bench.sqlite3"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def fresh_app(url: str):
    """An app on `url` with an empty schema (every table dropped and created)."""
    from consent import create_app
    from consent.extensions import db, limiter

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "bench",
            "EMAIL_TRANSPORT": "record",
            "RATELIMIT_ENABLED": False,
            "OUTBOX_DELIVER_AFTER_COMMIT": False,
        }
    )
    limiter.enabled = False
    with app.app_context():
        db.metadata.drop_all(db.engine)
        db.metadata.create_all(db.engine)
    return app


def median_ms(action: Callable[[], object], repeat: int) -> float:
    action()  # warm up caches and the query plan
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def print_table(engine: str, rows: list[tuple]) -> None:
    """rows: (figure, value, baseline, unit, budget text, passed or None)."""
    print(f"\n{'figure':<40} {'value':>12} {'baseline':>12} {'ratio':>7}  {'budget':<16} result")
    for figure, value, baseline, unit, budget, passed in rows:
        ratio = value / baseline if baseline else float("nan")
        result = "-" if passed is None else ("pass" if passed else "MISS")
        print(
            f"{figure:<40} {value:>9.1f} {unit:<2} {baseline:>9.1f} {unit:<2} {ratio:>6.2f}x  "
            f"{budget:<16} {result}"
        )
    print(f"(database: {engine})")


def count(db, model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))
