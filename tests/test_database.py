"""PostgreSQL details the bulk paths rely on: array literals, and plans that probe the
(organization, channel, address) index even when the statistics are stale."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from consent import eligibility, ledger
from consent.database import pg_array
from consent.extensions import db
from consent.models import Source
from tests import factories
from tests.conftest import POSTGRES_URL, _pg_url


@pytest.fixture(scope="module")
def pg_engine():
    if not POSTGRES_URL:
        pytest.skip("needs TEST_DATABASE_URL")
    engine = sa.create_engine(_pg_url(POSTGRES_URL))
    yield engine
    engine.dispose()


# Text from outside: notes typed by staff, addresses, evidence as JSON (no NUL: PostgreSQL
# text cannot hold one).
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))


@given(values=st.lists(st.none() | TEXT, max_size=20))
def test_pg_array_reads_back_as_the_same_values(pg_engine, values):
    """Whatever the text (quotes, backslashes, braces, commas, "NULL", newlines), the array
    literal reads back on PostgreSQL as exactly the values given, None as NULL."""
    with pg_engine.connect() as conn:
        back = conn.execute(
            sa.text("SELECT CAST(:values AS text[])"), {"values": pg_array(values)}
        ).scalar()
    assert back == values


def test_pg_array_of_numbers_casts_to_bigint(pg_engine):
    with pg_engine.connect() as conn:
        back = conn.execute(
            sa.text("SELECT CAST(:values AS bigint[])"), {"values": pg_array([1, 2**40, None])}
        ).scalar()
    assert back == [1, 2**40, None]


def _plans(app, action) -> list[str]:
    """EXPLAIN of every consent_states SELECT that `action` sends, taken on its own connection
    just before it runs (a bulk lookup may read a temporary staging table of that
    transaction)."""
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT") and "consent_states" in statement:
            raw = cursor.connection.cursor()
            try:
                raw.execute("EXPLAIN " + statement, parameters)
                plans.append("\n".join(row[0] for row in raw.fetchall()))
            finally:
                raw.close()

    sa.event.listen(db.engine, "before_cursor_execute", explain)
    try:
        action()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", explain)
    db.session.rollback()
    return plans


def test_lookups_probe_the_address_index_with_stale_statistics(app):
    """Statistics taken when the organization had no rows ("it has none") must not send the
    import's lock, the eligibility check or a single lookup through an index by organization
    alone: each plan looks the address up in the index."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner (SQLite keeps no per-value statistics)")
    system = ledger.Actor.system()
    first = factories.make_org()
    second = factories.make_org(name="Second District", texting_number="+12025550199")
    db.session.commit()
    rows = [ledger.BulkRow(f"+1202555{n:04d}", {}) for n in range(3000)]
    ledger.opt_out_many(first, "text", rows, source=Source.IMPORT, actor=system)
    db.session.commit()
    with db.engine.connect() as conn:
        conn.execute(sa.text("ANALYZE consent_states"))
        conn.commit()
    rows = [ledger.BulkRow(f"+1303555{n:04d}", {}) for n in range(2000)]
    ledger.opt_out_many(second, "text", rows, source=Source.IMPORT, actor=system)
    db.session.commit()
    wanted = [f"+1303555{n:04d}" for n in range(0, 2000, 100)]

    plans = _plans(
        app,
        lambda: (
            ledger.opt_out_many(
                second, "text", [ledger.BulkRow(a, {}) for a in wanted], source=Source.IMPORT,
                actor=system,
            ),
            eligibility.check_many(second, "text", wanted),
            eligibility.check_one(second, "text", wanted[0]),
            ledger.current(second, "text", wanted[0]),
        ),
    )  # fmt: skip
    assert len(plans) >= 4
    for plan in plans:
        assert "address" in plan.split("Index Cond:", 1)[-1].split("\n")[0], plan


def test_lookups_of_many_emails_probe_the_address_index_not_the_search_index(app):
    """PostgreSQL: the email search's trigram index (GIN, on consent_states' email addresses)
    answers `address = ANY(list)` too, and the planner takes it for a long list of emails: at
    a district's scale 5,000 addresses took 9.7 s that way (each address searched trigram by
    trigram), against 0.03 s probing the address index. Nor may they read the organization's
    rows and compare each with every address given. The links for a mailing, an import's
    preview and the status words of many emails each look their addresses up in the address
    index."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner and its trigram index")
    import io

    from consent import imports, sender_links
    from consent.status import StatusBook

    org = factories.make_org()
    db.session.commit()
    emails = [f"parent{n}.family{n % 97}@example.org" for n in range(8000)]
    rows = [ledger.BulkRow(address, {}) for address in emails]
    ledger.opt_out_many(org, "email", rows, source=Source.IMPORT, actor=ledger.Actor.system())
    db.session.commit()
    with db.engine.connect() as conn:
        conn.execute(sa.text("ANALYZE consent_states"))
        conn.commit()
    wanted = emails[::2] + [f"new{n}@example.org" for n in range(1000)]
    csv = ("email\n" + "\n".join(wanted) + "\n").encode()

    links, preview, book = [], [], []
    plans = _plans(
        app,
        lambda: (
            # As at a district's scale, where reading the whole table costs more than either
            # index (here it holds only this test's rows).
            db.session.execute(sa.text("SET LOCAL enable_seqscan = off")),
            links.extend(sender_links.links_for(org, "email", wanted)),
            preview.append(imports.preview_file(org, io.BytesIO(csv), "emails.csv", "email")),
            book.append(StatusBook(org.id, emails=wanted)),
        ),
    )
    assert len(plans) >= 3
    for plan in plans:
        assert "trgm" not in plan, plan
        assert "= ANY" not in plan, plan  # the addresses a set to join, not a list to compare
    # The same answers as before: every opted-out address found, the new ones not.
    assert [bool(link.get("unsubscribe_url")) for link in links] == [True] * len(wanted)
    assert (preview[0].already, preview[0].imported) == (4000, 1000)
    assert len(book[0].states) == 4000
