"""Benchmark: the change feed, links for outside senders, and webhook fan-out.

    python -m bench.feed [--database URL ...] [--scale S] [--pages P] [--links N] [--changes C]

On the shared data set (bench.dataset: 2,000,000 events at scale 1), each figure beside its
baseline:
- GET /api/v1/events pages of 1,000 at the start, the middle and the end of the feed (budget
  50 ms a page, the slowest page), beside a bare route on the same client;
- POST /api/v1/links for 10,000 email addresses in one request, beside signing the same
  20,000 tokens alone;
- webhook fan-out: C changes (10,000) queued for one endpoint on a local HTTP server and
  delivered by consent.webhooks.deliver, deliveries/s, beside a bare loop of HTTP POSTs of the
  same bodies to the same server (one connection, no database).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sqlalchemy as sa

from bench import dataset
from bench._report import Figure, arguments, percentile, run_per_database

API_KEY = "bench-api-key"
BUDGET_PAGE_MS = 50.0


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    count = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).count += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def measure(url: str, scale: float, pages: int, links: int, changes: int) -> list[Figure]:
    from consent import feed, ledger, tokens, webhooks
    from consent.extensions import db
    from consent.ledger import Actor, BulkRow
    from consent.models import Channel, ConsentEvent, Organization, Source, WebhookEndpoint

    app = dataset.app_for(url)

    @app.get("/bench/bare")
    def bare():
        return {"ok": True}

    ds = dataset.ensure(app, scale)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}

    # --- the feed: cursors at the start, middle and end --------------------------------------
    with app.app_context():
        total = db.session.scalar(
            sa.select(sa.func.count()).where(ConsentEvent.organization_id == ds.org_id)
        )
        starts = []
        for fraction in (0.0, 0.5, 0.999):
            offset = int(total * fraction)
            row = db.session.execute(
                sa.select(ConsentEvent.txid, ConsentEvent.id)
                .where(ConsentEvent.organization_id == ds.org_id)
                .order_by(ConsentEvent.txid, ConsentEvent.id)
                .offset(offset)
                .limit(1)
            ).first()
            starts.append(str(feed.Cursor(int(row.txid or 0), row.id)) if offset else "")
        db.session.remove()
    times = []
    for start in starts:
        after = start
        for _ in range(pages):
            began = time.perf_counter()
            response = client.get(f"/api/v1/events?limit=1000&after={after}", headers=headers)
            times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, response.get_data(as_text=True)[:300]
            after = response.get_json()["next"]
    base = []
    for _ in range(len(times)):
        began = time.perf_counter()
        client.get("/bench/bare")
        base.append((time.perf_counter() - began) * 1000)

    # --- links for 10,000 addresses ---------------------------------------------------------
    addresses = [dataset.email(i) for i in range(links)]
    body = json.dumps({"channel": "email", "addresses": addresses})
    client.post("/api/v1/links", data=body, headers=headers, content_type="application/json")
    began = time.perf_counter()
    response = client.post(
        "/api/v1/links", data=body, headers=headers, content_type="application/json"
    )
    links_s = time.perf_counter() - began
    assert response.status_code == 200 and len(response.get_json()["results"]) == links
    with app.test_request_context():
        began = time.perf_counter()
        for address in addresses:
            tokens.make("unsubscribe", ds.org_id, "email", address, 1)
            tokens.make("preferences", ds.org_id, "email", address, 1)
        tokens_s = time.perf_counter() - began

    # --- webhook fan-out --------------------------------------------------------------------
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{server.server_port}/hook"
    with app.app_context():
        org = db.session.get(Organization, ds.org_id)
        endpoint, _secret = webhooks.create_endpoint(org, target, ["consent.opted_out"])
        db.session.commit()
        stamp = int(time.time())
        rows = [
            BulkRow(f"fanout-{stamp}-{n}@bench.example.org", {"row": n}) for n in range(changes)
        ]
        for chunk in range(0, changes, 1000):
            ledger.opt_out_many(org, Channel.EMAIL, rows[chunk : chunk + 1000],
                                source=Source.IMPORT, actor=Actor.system())  # fmt: skip
            db.session.commit()
        began = time.perf_counter()
        delivered = 0
        while True:
            report = webhooks.deliver(limit=500)
            delivered += report.delivered
            if report.delivered + report.failed == 0:
                break
        fanout_s = time.perf_counter() - began
        assert delivered == changes, (delivered, changes)
        endpoint = db.session.get(WebhookEndpoint, endpoint.id)
        webhooks.set_active(endpoint, False)
        db.session.commit()
        db.session.remove()
    import requests

    body = json.dumps({"type": "consent.opted_out", "data": {"address": "x@example.org"}})
    session = requests.Session()
    began = time.perf_counter()
    for _ in range(changes):
        session.post(target, data=body, headers={"content-type": "application/json"})
    bare_s = time.perf_counter() - began
    server.shutdown()
    return [
        Figure(
            "feed page of 1,000 (slowest)",
            max(times),
            "ms",
            max(base),
            "bare route",
            BUDGET_PAGE_MS,
        ),
        Figure("feed page of 1,000 p50", percentile(times, 50), "ms", percentile(base, 50), "bare"),
        Figure(
            f"links POST {links:,} addresses", links_s, "s", tokens_s, "signing the tokens alone"
        ),
        Figure(
            f"webhook fan-out {changes:,} changes",
            changes / fanout_s,
            "/s",
            changes / bare_s,
            "bare HTTP POST loop",
            None,
            True,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    args = arguments("python -m bench.feed", __doc__.splitlines()[0], argv)
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--pages", type=int, default=20, help="pages read from each cursor")
    extra.add_argument("--links", type=int, default=10_000, help="addresses in the links POST")
    extra.add_argument("--changes", type=int, default=10_000, help="changes fanned out")
    more, _rest = extra.parse_known_args(argv)
    return run_per_database(
        args, lambda url: measure(url, args.scale, more.pages, more.links, more.changes)
    )


if __name__ == "__main__":
    raise SystemExit(main())
