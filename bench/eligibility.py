"""Benchmark: the eligibility API with 1,000,000 opt-outs (DESIGN.md "Performance budget").

    python -m bench.eligibility [--rows N] [--database URL] [--addresses M] [--requests R]

Figures, each beside its baseline:
- 100,000 E.164 addresses in one POST /api/v1/eligibility through the Flask test client
  (JSON in and out included; budget 0.5 s), beside a Python set lookup of the same addresses;
- one address, GET /api/v1/eligibility, p50 and p99 over 1,000 requests (budget p99 5 ms),
  beside a bare Flask route on the same client.

The fixture: N text opt-outs written straight into consent_states in bulk (COPY on PostgreSQL,
executemany on SQLite), NOT through the ledger and without their ConsentEvents. That is
the one place outside consent/ledger.py that writes consent rows, and only into a database
of its own: it is a benchmark fixture, built in seconds instead of the hours a ledger loop
would take. Eligibility reads only the states, so the figures are the same. The database is
kept and reused when it already holds the rows (default: instance/bench-eligibility.sqlite3).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = f"sqlite:///{ROOT / 'instance' / 'bench-eligibility.sqlite3'}"
ORG_NAME = "Bench School District"
API_KEY = "bench-api-key"
BUDGET_BULK_S = 0.5
BUDGET_ONE_P99_MS = 5.0
# Area codes in service in the US (phonenumbers accepts [2-9]XX-XXXX exchanges for them).
AREA_CODES = (
    "201 202 203 205 206 207 208 209 210 212 213 214 215 216 217 218 219 224 225 228 229 231 "
    "234 239 240 248 251 252 253 254 256 260 262 267 269 270 272 276 281 301 302 303 304 305 "
    "307 308 309 310 312 313 314 315 316 317 318 319 320 321 323 325 330 331 334 336 337 339 "
    "347 351 352 360 361 385 386 401 402 404 405 406 407 408 409 410 412 413 414 415 417 419 "
    "423 424 425 430 432 434 435 440 442 443 469 470 475 478 479 480 484 501 502 503 504 505 "
    "507 508 509 510 512 513 515 516 517 518 520 530 539 540 541 551 559 561 562 563 567 570 "
    "571 573 574 575 580 585 586 601 602 603 605 606 607 608 609 610 612 614 615 616 617 618"
).split()


def numbers(rng: random.Random, count: int, avoid: set[str] | None = None) -> list[str]:
    """`count` distinct valid US numbers in E.164 (checked), none of them in `avoid`."""
    from consent.e164 import verdict

    avoid = avoid or set()
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        value = f"+1{rng.choice(AREA_CODES)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        if value in seen or value in avoid or verdict(value) is not True:
            continue
        seen.add(value)
        out.append(value)
    return out


def build(app, rows: int) -> tuple[int, list[str]]:
    """The benchmark organization and its `rows` text opt-outs (built once, then reused)."""
    from consent.extensions import db
    from consent.models import ConsentState, Organization

    with app.app_context():
        db.create_all()
        org = db.session.scalars(
            sa.select(Organization).where(Organization.name == ORG_NAME)
        ).first()
        if org is None:
            org = Organization(
                name=ORG_NAME, texting_number="+12025550199", notification_email="bench@example.org"
            )
            db.session.add(org)
            db.session.commit()
        table = ConsentState.__table__
        have = db.session.scalar(
            sa.select(sa.func.count()).select_from(table).where(table.c.organization_id == org.id)
        )
        if have == rows:
            print(f"reusing {rows:,} opt-outs already in the database")
            addresses = list(
                db.session.scalars(
                    sa.select(table.c.address).where(table.c.organization_id == org.id)
                )
            )
            return org.id, addresses
        db.session.execute(sa.delete(table).where(table.c.organization_id == org.id))
        db.session.commit()
        started = time.perf_counter()
        addresses = numbers(random.Random(5), rows)
        _insert(db, org.id, addresses)
        print(f"built {rows:,} opt-outs in {time.perf_counter() - started:.1f} s")
        return org.id, addresses


def _insert(db, org_id: int, addresses: list[str]) -> None:
    from consent.models import Status

    now = "2024-09-01 08:00:00"
    columns = (
        "organization_id, channel, address, sort_key, digits, status, carrier_block, source, "
        "changed_at, changed_by, version"
    )
    engine = db.engine
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cursor:
                with cursor.copy(f"COPY consent_states ({columns}) FROM STDIN") as copy:
                    for address in addresses:
                        copy.write_row(
                            (org_id, "text", address, address[1:].rjust(15, "0"), address[2:],
                             Status.OPTED_OUT.value, False, "import", now, "bench", 1)
                        )  # fmt: skip
            raw.commit()
            with raw.cursor() as cursor:
                cursor.execute("ANALYZE consent_states")
            raw.commit()
        finally:
            raw.close()
        return
    rows = [
        (org_id, "text", a, a[1:].rjust(15, "0"), a[2:], Status.OPTED_OUT.value, 0, "import", now,
         "bench", 1)
        for a in addresses
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO consent_states ({columns}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
            rows,
        )
        conn.exec_driver_sql("ANALYZE consent_states")


def measure(database: str, rows: int, count: int, requests: int) -> list[tuple]:
    """Build (or reuse) the fixture, run the measurements, return the table's rows."""
    from consent import create_app

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database,
            "API_KEYS": [API_KEY],
            "SECRET_KEY": "bench",
            "RATELIMIT_ENABLED": False,
            "OUTBOX_DELIVER_AFTER_COMMIT": False,
        }
    )

    @app.get("/bench/bare")
    def bare():
        return {"ok": True}

    org_id, opted_out = build(app, rows)
    rng = random.Random(7)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    # What a district sends: numbers on record (opted out here) and numbers with no choice yet.
    known = set(opted_out)
    runs = []
    for run in range(4):
        half = count // 2
        batch = rng.sample(opted_out, half) + numbers(rng, count - half, avoid=known)
        rng.shuffle(batch)
        gc.collect()
        started = time.perf_counter()
        response = client.post(
            "/api/v1/eligibility", json={"channel": "text", "addresses": batch}, headers=headers
        )
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        results = response.get_json()["results"]
        assert len(results) == count and results[0]["address"] == batch[0]
        assert sum(r["reason"] == "opted_out" for r in results) == half
        if run:  # the first run compiles the phone patterns and warms the connection pool
            runs.append((elapsed, batch))
    bulk = statistics.median(elapsed for elapsed, _ in runs)
    batch = runs[-1][1]
    started = time.perf_counter()
    hits = [address in known for address in batch]
    set_time = time.perf_counter() - started
    assert sum(hits) == count // 2

    singles = rng.sample(opted_out, requests // 2) + numbers(rng, requests - requests // 2, known)
    rng.shuffle(singles)
    one = _latencies(
        client, [f"/api/v1/eligibility?channel=text&address={a}" for a in singles], headers
    )
    base = _latencies(client, ["/bench/bare"] * requests, headers)
    p50, p99 = _percentile(one, 50), _percentile(one, 99)
    b50, b99 = _percentile(base, 50), _percentile(base, 99)
    return [
        (f"POST {count:,} addresses (s)", bulk, set_time, "set lookup", BUDGET_BULK_S),
        ("GET one address p50 (ms)", p50, b50, "bare route", None),
        ("GET one address p99 (ms)", p99, b99, "bare route", BUDGET_ONE_P99_MS),
    ]


def _latencies(client, urls: list[str], headers: dict) -> list[float]:
    out = []
    for url in urls:
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return out


def _percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def table(rows: list[tuple]) -> str:
    """The figures as a small table: value, baseline, ratio, budget, pass/miss."""
    lines = [
        f"{'figure':32} {'value':>10} {'baseline':>10} {'(of)':12} {'ratio':>8} {'budget':>8}  result"
    ]
    for figure, value, baseline, what, budget in rows:
        ratio = value / baseline if baseline else float("inf")
        verdict = "-" if budget is None else ("pass" if value <= budget else "MISS")
        shown_budget = "-" if budget is None else f"{budget:g}"
        lines.append(
            f"{figure:32} {value:10.4f} {baseline:10.4f} {what:12} {ratio:7.1f}x {shown_budget:>8}  "
            f"{verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.eligibility", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="opt-outs in the database")
    parser.add_argument("--database", default=DEFAULT_DB, help="SQLAlchemy URL (default: SQLite)")
    parser.add_argument("--addresses", type=int, default=100_000, help="addresses in the bulk POST")
    parser.add_argument("--requests", type=int, default=1_000, help="single-address requests")
    args = parser.parse_args(argv)
    database = args.database
    for prefix in ("postgresql://", "postgres://"):
        if database.startswith(prefix):
            database = "postgresql+psycopg://" + database[len(prefix) :]
    (ROOT / "instance").mkdir(exist_ok=True)
    engine = sa.engine.make_url(database).get_backend_name()
    print(f"eligibility benchmark: {engine}, {args.rows:,} opt-outs")
    rows = measure(database, args.rows, args.addresses, args.requests)
    print(table(rows))
    return 0 if all(budget is None or value <= budget for _f, value, _b, _w, budget in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
