"""Part-of-an-email search on the opt-out list (issue 18): on SQLite through its trigram index of
the email states (consent.database.EMAIL_SEARCH, kept up to date by triggers), the same rows as
the plain LIKE rule, in list order, whether few or many emails hold the term."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import ledger, optout_list, outbox
from consent.database import has_email_search
from consent.extensions import db
from consent.models import ConsentState, Source

NAMES = ["ana.rivera", "luis.rivera", "mei.chen", "o'brien_k", "100%pure", "zoë.müller", "ab"]


@pytest.fixture
def org(app):
    from tests.factories import make_org

    org = make_org()
    emails = [f"{name}{n}@school.example.org" for name in NAMES for n in range(3)]
    emails += ["Mixed.Case@Example.ORG", "rivera@other.example.net"]
    _opt_out(org, emails)
    return org


def _opt_out(org, addresses):
    rows = [ledger.BulkRow(address, {"test": True}) for address in addresses]
    ledger.opt_out_many(org, "email", rows, source=Source.IMPORT, actor=ledger.Actor.system())
    db.session.commit()
    outbox.deliver_pending()


def _found(org, search: str, limit: int | None = None) -> list[str]:
    stmt = optout_list.filtered_statement(org.id, search=search)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [state.address for state in db.session.scalars(stmt)]


def _without_index(monkeypatch):
    monkeypatch.setattr(optout_list, "has_email_search", lambda _connection: False)


def test_sqlite_has_the_index_and_postgresql_its_trigrams(app):
    assert has_email_search(db.session.connection()) == (db.engine.dialect.name == "sqlite")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    search=st.one_of(
        st.sampled_from(
            [
                "rivera",
                "RIVERA",
                "a.r",
                "chen1",
                "o'brien",
                "100%",
                "_k",
                "ab",
                "müller",
                "zoë",
                "@school",
                "example.org",
                "rivera school",
                "nobody",
            ]
        ),
        st.text(alphabet="abcdeilnorv.@%_'1", min_size=1, max_size=8),
    )  # fmt: skip
)
def test_the_index_finds_what_the_like_rule_finds(org, monkeypatch, search):
    with_index = _found(org, search)
    monkeypatch.setattr(optout_list, "has_email_search", lambda _connection: False)
    try:
        assert with_index == _found(org, search)
    finally:
        monkeypatch.undo()


def test_a_few_matches_are_read_by_id_on_sqlite(org):
    """The page's plan for a term few emails hold, with no statistics: their rows by the list
    index's sort_key (its scan of every email is what took 100 ms at 300,000 emails)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's index; PostgreSQL's plan is pg_trgm's")
    stmt = optout_list.filtered_statement(org.id, search="mei.chen1").limit(50)
    compiled = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
    plan = db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}")).all()
    assert any("channel=? AND sort_key=?" in row[-1] for row in plan), plan
    assert _found(org, "mei.chen1") == ["mei.chen1@school.example.org"]


def test_many_matches_page_in_list_order(org, monkeypatch):
    """More emails hold the term than the index is asked for: the list index's ordered scan,
    and the first page is the first 50 in address order either way."""
    monkeypatch.setattr(optout_list, "EMAIL_SEARCH_FEW", 5)
    page = _found(org, "rivera", limit=50)
    assert page == sorted(page) and len(page) == 7
    _without_index(monkeypatch)
    assert _found(org, "rivera", limit=50) == page


def test_the_index_follows_new_opt_outs_and_removed_states(org):
    """The triggers: a new email state is found at once, a removed one is gone from the index,
    and the index stays consistent."""
    assert _found(org, "newcomer") == []
    _opt_out(org, ["newcomer.family@school.example.org"])
    assert _found(org, "newcomer") == ["newcomer.family@school.example.org"]
    state = db.session.scalar(
        sa.select(ConsentState).where(ConsentState.address == "newcomer.family@school.example.org")
    )
    db.session.execute(sa.delete(ConsentState).where(ConsentState.id == state.id))
    db.session.commit()
    if has_email_search(db.session.connection()):
        matched = db.session.execute(
            sa.text(
                "SELECT rowid FROM consent_states_email_fts "
                "WHERE consent_states_email_fts MATCH '\"newcomer\"'"
            )  # fmt: skip
        ).all()
        assert matched == []
        db.session.execute(
            sa.text(
                "INSERT INTO consent_states_email_fts(consent_states_email_fts, rank) "
                "VALUES ('integrity-check', 0)"
            )  # fmt: skip
        )
