"""Benchmark: the admin Opt-Out List with 1,000,000 opt-outs.

    python -m bench.admin_list [--database URL ...] [--scale S] [--repeat N]

Figures, on the shared data set (bench.dataset): the list's first page, its 1,000th page and
its last page (keyset paging, admin/keyset.py), a digits search, an email search (part of an
address), one for a part most emails hold (their domain) and a channel filter, each a full GET
of /admin/optouts/
(Flask-Admin view, query and template) by a signed-in organization admin; beside each, the raw
SQL query that fetches the same 50 rows. Budget (issue 8; README "Performance": the first page, the
digits search and the filter): <= 100 ms each, the email search (part of an address among
300,000 emails: a trigram index on both, pg_trgm on PostgreSQL and FTS5 on SQLite) included.
The email search's raw SQL is the list index's scan, what SQLite did before its trigram index.
The plan of each raw query is printed (EXPLAIN / EXPLAIN QUERY PLAN).
"""

from __future__ import annotations

import random

import sqlalchemy as sa

from bench import dataset
from bench._report import Figure, arguments, median_ms, run_per_database

BUDGET_MS = 100.0
RAW = {
    "first page": (
        "SELECT * FROM consent_states WHERE organization_id = :org AND status = 'opted_out' "
        "ORDER BY channel, sort_key LIMIT 50"
    ),
    "digits search": (
        "SELECT * FROM consent_states WHERE organization_id = :org AND status = 'opted_out' "
        "AND digits >= :digits AND digits < :after ORDER BY channel, sort_key LIMIT 50"
    ),
    "email search": (
        "SELECT * FROM consent_states WHERE organization_id = :org AND status = 'opted_out' "
        "AND channel = 'email' AND sort_key LIKE :like AND address LIKE :like "
        "ORDER BY channel, sort_key LIMIT 50"
    ),
    # A part most emails hold (their domain): a page of matches early in list order.
    "email search, many match": (
        "SELECT * FROM consent_states WHERE organization_id = :org AND status = 'opted_out' "
        "AND channel = 'email' AND sort_key LIKE :like_many AND address LIKE :like_many "
        "ORDER BY channel, sort_key LIMIT 50"
    ),
    "channel filter": (
        "SELECT * FROM consent_states WHERE organization_id = :org AND status = 'opted_out' "
        "AND channel = 'voice' ORDER BY channel, sort_key LIMIT 50"
    ),
    "1,000th page": (
        "SELECT * FROM consent_states WHERE organization_id = :org AND status = 'opted_out' "
        "AND (channel, sort_key) > (:channel, :sort_key) ORDER BY channel, sort_key LIMIT 50"
    ),
    "last page": (
        "SELECT * FROM consent_states WHERE organization_id = :org AND status = 'opted_out' "
        "ORDER BY channel DESC, sort_key DESC LIMIT 50"
    ),
}
DEEP_PAGE = 1_000
# The row just before the 1,000th page (found once, with OFFSET; not timed).
BEFORE_PAGE = (
    "SELECT channel, sort_key FROM consent_states WHERE organization_id = :org "
    "AND status = 'opted_out' ORDER BY channel, sort_key LIMIT 1 OFFSET :skip"
)


def _filter_arg(app, name: str) -> str:
    """The URL name of the opt-out list's filter called `name` (named_filter_urls)."""
    admin = app.extensions["admin"]
    admin = admin[0] if isinstance(admin, list) else admin
    view = next(v for v in admin._views if getattr(v, "endpoint", None) == "optouts")
    for index, flt in enumerate(view._filters):
        if str(flt.name).lower() == name:
            return view.get_filter_arg(index, flt)
    raise LookupError(name)


def measure(url: str, scale: float, repeat: int) -> list[Figure]:
    from bench.activity import explain
    from consent.extensions import db

    app = dataset.app_for(url)
    ds = dataset.ensure(app, scale)
    rng = random.Random(13)
    number = ds.layout.text_opted_out(1, rng)[0]
    digits = number[2:]
    email = ds.layout.email_opted_out(rng.randrange(10**6))
    email_part = email.split("@")[0][-9:]  # "lee123456": part of the local part
    domain_part = email.split("@")[1].split(".")[0]  # "family": most emails hold it
    with app.test_request_context():
        channel_arg = _filter_arg(app, "channel")
    from admin import keyset

    with app.app_context():
        skip = min(DEEP_PAGE - 1, ds.layout.opted_out // 50 - 2) * 50 - 1
        channel, sort_key = db.session.execute(
            sa.text(BEFORE_PAGE), {"org": ds.org_id, "skip": skip}
        ).one()
        db.session.rollback()
    deep = f"{(skip + 1) // 50 + 1:,}th page"
    searches = {
        "first page": {},
        "1,000th page": {"after": keyset.encode(["", False], [channel, sort_key])},
        "last page": {"last": "1"},
        "digits search": {"search": digits},
        "email search": {"search": email_part},
        "email search, many match": {"search": domain_part},
        "channel filter": {f"flt0_{channel_arg}": "voice"},
    }
    params = {
        "org": ds.org_id,
        "digits": digits,
        "after": str(int(digits) + 1),
        "like": f"%{email_part}%",
        "like_many": f"%{domain_part}%",
        "channel": channel,
        "sort_key": sort_key,
    }
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = f"{ds.admin_id}:0"  # User.get_id: id and auth_version
        session["_fresh"] = True
    figures = []
    with app.app_context():
        for name, query in searches.items():
            response = client.get("/admin/optouts/", query_string=query)
            assert response.status_code == 200, response.status_code
            page = response.get_data(as_text=True)
            assert page.count('name="rowid"') >= 1, f"{name}: no rows"
            sql = RAW[name]
            print(f"  {name}: plan\n{explain(db, sql, params)}")
            value = median_ms(lambda q=query: client.get("/admin/optouts/", query_string=q), repeat)
            baseline = median_ms(lambda s=sql: db.session.execute(sa.text(s), params).all(), repeat)
            db.session.rollback()
            label = deep if name == "1,000th page" else name
            figures.append(
                Figure(f"opt-out list {label}", value, "ms", baseline, "raw SQL", BUDGET_MS)
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    args = arguments("python -m bench.admin_list", __doc__.splitlines()[0], argv)
    return run_per_database(args, lambda url: measure(url, args.scale, args.repeat))


if __name__ == "__main__":
    raise SystemExit(main())
