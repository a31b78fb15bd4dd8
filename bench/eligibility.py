"""Benchmark: the eligibility API with 1,000,000 opt-outs (README "Performance").

    python -m bench.eligibility [--database URL ...] [--scale S] [--addresses M] [--requests R]

On the shared data set (bench.dataset), each figure beside its baseline:
- 100,000 E.164 addresses (half opted out, half with no state) in one POST /api/v1/eligibility
  through the Flask test client, JSON in and out included (budget 0.3 s and 6x), beside a
  Python set lookup of the same addresses in a set of every opted-out text number (median of
  as many runs); its CPU time (this process and, on PostgreSQL, the server's) beside it;
- the first POST of a process, which builds the organization's snapshot (consent/snapshot.py);
- one address, GET /api/v1/eligibility, p50 and p99 over 1,000 requests (budget p99 5 ms),
  beside a bare Flask route on the same client.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import time

import sqlalchemy as sa

from bench import dataset
from bench._report import (
    Figure,
    arguments,
    database_cpu_seconds,
    percentile,
    run_per_database,
)

API_KEY = "bench-api-key"
BUDGET_BULK_S = 0.3
BUDGET_BULK_RATIO = 6.0
BUDGET_ONE_P99_MS = 5.0


def measure(
    url: str, scale: float, count: int, requests: int, purpose: str | None = None
) -> list[Figure]:
    """Build (or reuse) the data set, run the measurements, return the figures."""
    from consent.extensions import db
    from consent.models import ConsentState

    app = dataset.app_for(url)

    @app.get("/bench/bare")
    def bare():
        return {"ok": True}

    ds = dataset.ensure(app, scale)
    layout = ds.layout
    table_ = ConsentState.__table__
    with app.app_context():
        known = set(
            db.session.scalars(
                sa.select(table_.c.address).where(
                    table_.c.organization_id == ds.org_id,
                    table_.c.channel == "text",
                    table_.c.status == "opted_out",
                )
            )
        )
        db.session.remove()
    rng = random.Random(7)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    half = count // 2
    runs = []
    first_post = 0.0
    print(f"  load average before: {_load()}", flush=True)
    for run in range(6):
        # What a district sends: numbers on record (opted out here) and numbers with no choice.
        batch = layout.text_opted_out(half, rng) + layout.unknown_numbers(count - half, rng)
        rng.shuffle(batch)
        request_body = {"channel": "text", "addresses": batch}
        if purpose:
            request_body["purpose"] = purpose
        body = json.dumps(request_body)
        gc.collect()
        with app.app_context():
            db_cpu = database_cpu_seconds(db.engine)
        cpu = time.process_time()
        started = time.perf_counter()
        response = client.post(
            "/api/v1/eligibility", data=body, headers=headers, content_type="application/json"
        )
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        with app.app_context():
            cpu += database_cpu_seconds(db.engine) - db_cpu
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        results = response.get_json()["results"]
        assert len(results) == count and results[0]["address"] == batch[0]
        if purpose in (None, "general", "attendance"):  # emergency reaches some opted out
            assert sum(r["reason"] == "opted_out" for r in results) == half
        if run:  # the first run builds the snapshot, compiles the phone patterns, fills the pool
            runs.append((elapsed, batch, cpu))
        else:
            first_post = elapsed
    bulk = statistics.median(elapsed for elapsed, _b, _c in runs)
    bulk_cpu = statistics.median(cpu for _e, _b, cpu in runs)
    set_times = []
    for _elapsed, batch, _cpu in runs:
        started = time.perf_counter()
        hits = [address in known for address in batch]
        set_times.append(time.perf_counter() - started)
        assert sum(hits) == half
    set_time = statistics.median(set_times)

    singles = layout.text_opted_out(requests // 2, rng)
    singles += layout.unknown_numbers(requests - requests // 2, rng)
    rng.shuffle(singles)
    tail = f"&purpose={purpose}" if purpose else ""
    one = _latencies(
        client, [f"/api/v1/eligibility?channel=text&address={a}{tail}" for a in singles], headers
    )
    base = _latencies(client, ["/bench/bare"] * requests, headers)
    print(f"  load average after: {_load()}", flush=True)
    return [
        Figure(
            f"eligibility POST {count:,} addresses" + (f" (purpose {purpose})" if purpose else ""),
            bulk,
            "s",
            set_time,
            "Python set lookup",
            BUDGET_BULK_S,
        ),
        Figure(
            "  its ratio to the set lookup",
            bulk / set_time,
            "x",
            budget=BUDGET_BULK_RATIO,
        ),
        Figure("  its CPU time (app + database)", bulk_cpu, "s", set_time, "Python set lookup"),
        Figure("  first POST of the process (builds snapshot)", first_post, "s", bulk, "warm"),
        Figure("eligibility GET one p50", percentile(one, 50), "ms", percentile(base, 50), "bare"),
        Figure(
            "eligibility GET one p99",
            percentile(one, 99),
            "ms",
            percentile(base, 99),
            "bare route",
            BUDGET_ONE_P99_MS,
        ),
    ]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _latencies(client, urls: list[str], headers: dict) -> list[float]:
    out = []
    for url in urls:
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return out


def main(argv: list[str] | None = None) -> int:
    args = arguments("python -m bench.eligibility", __doc__.splitlines()[0], argv)
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--addresses", type=int, default=100_000, help="addresses in the POST")
    extra.add_argument("--requests", type=int, default=1_000, help="single-address requests")
    extra.add_argument("--purpose", default=None, help="ask for this purpose (e.g. general)")
    more, _rest = extra.parse_known_args(argv)
    return run_per_database(
        args,
        lambda url: measure(url, args.scale, more.addresses, more.requests, more.purpose),
    )


if __name__ == "__main__":
    raise SystemExit(main())
