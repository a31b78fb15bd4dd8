"""Benchmark: the Activity Log at 2,000,000 events.

    python -m bench.activity [--database URL ...] [--scale S] [--repeat N]

Figures: the log's first page (newest first), its 1,000th page and its last page (keyset
paging, admin/keyset.py: each page starts after the last row of the one before) and a filter
by address, each a full GET of
/admin/activity/ (Flask-Admin view, query and template) by a signed-in organization admin,
beside the raw SQL query that fetches the same 50 rows. Until the admin view exists, the
query it runs, through SQLAlchemy. The budget names no figure for the log; we hold it to the
opt-out list's (100 ms a page). Both queries walk an index: (organization_id, id) backwards
for the first page, (organization_id, address, id) for the address (EXPLAIN is printed).
"""

from __future__ import annotations

import random

import sqlalchemy as sa

from bench import dataset
from bench._report import Figure, arguments, median_ms, run_per_database

BUDGET_MS = 100.0
RAW = {
    "first page": (
        "SELECT * FROM consent_events WHERE organization_id = :org ORDER BY id DESC LIMIT 50"
    ),
    "address filter": (
        "SELECT * FROM consent_events WHERE organization_id = :org AND address = :address "
        "ORDER BY id DESC LIMIT 50"
    ),
    "1,000th page": (
        "SELECT * FROM consent_events WHERE organization_id = :org AND id < :before "
        "ORDER BY id DESC LIMIT 50"
    ),
    "last page": (
        "SELECT * FROM consent_events WHERE organization_id = :org ORDER BY id ASC LIMIT 50"
    ),
}
DEEP_PAGE = 1_000


def explain(db, sql: str, params: dict) -> str:
    """The database's plan for `sql`, one line per step."""
    postgres = db.engine.dialect.name == "postgresql"
    prefix = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
    rows = db.session.execute(sa.text(prefix + sql), params).all()
    return "\n".join("    " + str(row[0] if postgres else row[-1]) for row in rows)


def _view(app):
    admin = app.extensions.get("admin")
    views = admin[0]._views if isinstance(admin, list) else getattr(admin, "_views", [])
    return next((v for v in views if getattr(v, "endpoint", None) == "activity"), None)


def measure(url: str, scale: float, repeat: int) -> list[Figure]:
    from consent.extensions import db
    from consent.models import ConsentEvent

    app = dataset.app_for(url)
    ds = dataset.ensure(app, scale)
    rng = random.Random(5)
    address = ds.layout.text_opted_out(1, rng)[0]
    with app.app_context():
        total = db.session.scalar(
            sa.text("SELECT count(*) FROM consent_events WHERE organization_id = :org"),
            {"org": ds.org_id},
        )
        skip = min(DEEP_PAGE - 1, total // 50 - 2) * 50 - 1
        before = db.session.scalar(  # the row just before that page (OFFSET once, not timed)
            sa.text(
                "SELECT id FROM consent_events WHERE organization_id = :org "
                "ORDER BY id DESC LIMIT 1 OFFSET :skip"
            ),
            {"org": ds.org_id, "skip": skip},
        )
        db.session.rollback()
    deep = f"{(skip + 1) // 50 + 1:,}th page"
    params = {"org": ds.org_id, "address": address, "before": before}
    view = _view(app)
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = f"{ds.admin_id}:0"  # User.get_id: id and auth_version
        session["_fresh"] = True
    figures = []
    with app.app_context():
        if view is not None:
            with app.test_request_context("/admin/activity/"):
                keys = view.filter_keys() if hasattr(view, "filter_keys") else {}
            key = keys.get("address", "flt0_address_equals")
            from admin import keyset

            after = keyset.encode(["", False], [before])
            actions = {
                "first page": lambda: _get(client, "/admin/activity/"),
                "1,000th page": lambda: _get(client, "/admin/activity/", {"after": after}),
                "last page": lambda: _get(client, "/admin/activity/", {"last": "1"}),
                "address filter": lambda: _get(client, "/admin/activity/", {key: address}),
            }
            how = "view"
        else:
            table_ = ConsentEvent

            def first_page():
                return db.session.scalars(
                    sa.select(table_)
                    .where(table_.organization_id == ds.org_id)
                    .order_by(table_.id.desc())
                    .limit(50)
                ).all()

            def by_address():
                return db.session.scalars(
                    sa.select(table_)
                    .where(table_.organization_id == ds.org_id, table_.address == address)
                    .order_by(table_.id.desc())
                    .limit(50)
                ).all()

            actions = {"first page": first_page, "address filter": by_address}
            how = "query"
            print("  (no admin activity view yet: timing the query it runs, through the ORM)")
        for name, action in actions.items():
            sql = RAW[name]
            print(f"  {name}: plan\n{explain(db, sql, params)}")
            value = median_ms(action, repeat)
            db.session.rollback()
            baseline = median_ms(lambda s=sql: db.session.execute(sa.text(s), params).all(), repeat)
            db.session.rollback()
            figures.append(
                Figure(
                    f"activity log {deep if name == '1,000th page' else name} ({how})",
                    value,
                    "ms",
                    baseline,
                    "raw SQL",
                    BUDGET_MS,
                )
            )
    return figures


def _get(client, path: str, query: dict | None = None):
    response = client.get(path, query_string=query or {})
    assert response.status_code == 200, response.status_code
    return response


def main(argv: list[str] | None = None) -> int:
    args = arguments("python -m bench.activity", __doc__.splitlines()[0], argv)
    return run_per_database(args, lambda url: measure(url, args.scale, args.repeat))


if __name__ == "__main__":
    raise SystemExit(main())
