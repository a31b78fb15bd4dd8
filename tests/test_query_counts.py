"""Pages and the bulk API run a fixed number of queries, however many rows there are (issue 8:
a district has a million opt-outs; a query per row would not survive it)."""

from __future__ import annotations

import pytest
from psycopg import _queries as psycopg_queries
from sqlalchemy.dialects import postgresql

from consent import choices, ledger, outbox, web
from consent.extensions import db
from consent.models import Contact, EmailAddress, Phone, PhoneKind, Source, Student
from tests import factories


def _opt_out(org, channel: str, addresses: list[str]) -> None:
    rows = [ledger.BulkRow(address, {"test": True}) for address in addresses]
    ledger.opt_out_many(org, channel, rows, source=Source.IMPORT, actor=ledger.Actor.system())
    _commit()


def _commit() -> None:
    """Commit, and send what the changes queued (as a request's end would)."""
    db.session.commit()
    outbox.deliver_pending()


def _numbers(start: int, count: int) -> list[str]:
    return [f"+1202555{n:04d}" for n in range(start, start + count)]


@pytest.mark.parametrize(
    "query",
    [{}, {"search": "202555"}, {"search": "example.org"}, {"flt0_channel_equals": "voice"}],
    ids=["first page", "digits search", "email search", "channel filter"],
)
def test_opt_out_list_pages_take_the_same_queries_for_more_rows(
    client, world, count_queries, query
):
    """The Opt-Out List's first page, searches and filter: 4 rows or 144 (phones and emails on
    the page either way: their owners are one query per kind), the same queries."""
    world.login(client, "org")
    _opt_out(world.org, "voice", _numbers(1000, 3))
    _opt_out(world.org, "email", ["a1@example.org"])
    with count_queries() as few:
        page = client.get("/admin/optouts/", query_string=query)
    assert page.status_code == 200 and 'name="rowid"' in page.get_data(as_text=True)
    _opt_out(world.org, "voice", _numbers(2000, 120))
    _opt_out(world.org, "email", [f"b{n}@example.org" for n in range(20)])
    with count_queries() as many:
        page = client.get("/admin/optouts/", query_string=query)
    assert page.status_code == 200
    assert many.count == few.count


def test_activity_log_filter_by_address_takes_the_same_queries_for_more_events(
    client, world, count_queries
):
    """The Activity Log filtered by an address: one event or forty, the same queries."""
    world.login(client, "org")
    number = "+12025550777"
    _opt_out(world.org, "text", [number])
    query = {"flt0_address_equals": "(202) 555-0777"}
    with count_queries() as few:
        assert client.get("/admin/activity/", query_string=query).status_code == 200
    for _ in range(20):
        ledger.opt_in(world.org, "text", number, source=Source.PORTAL, actor=ledger.Actor.system())
        ledger.opt_out(world.org, "text", number, source=Source.PORTAL, actor=ledger.Actor.system())
        _commit()
    with count_queries() as many:
        assert client.get("/admin/activity/", query_string=query).status_code == 200
    assert many.count == few.count, (few.statements, many.statements[:8])


SETTINGS_PAGE_QUERIES = 2  # README.md, "Settings page"


def test_account_settings_takes_the_same_queries_for_a_bigger_family(client, world, count_queries):
    """A parent's settings page: a family of two or of four contacts, three students and more
    phones, the same queries (the family's addresses are read in one go)."""
    world.login(client, "parent")
    client.get("/account/settings")  # the process keeps the purposes from the first page on
    with count_queries() as few:
        page = client.get("/account/settings")
    assert page.status_code == 200
    family = world.near
    for position in (3, 4):
        contact = Contact(family=family, first_name=f"P{position}", last_name="Rivera",
                          position=position)  # fmt: skip
        contact.phones.append(Phone(number=factories.next_number(), kind=PhoneKind.CELL))
        contact.emails.append(EmailAddress(address=f"p{position}.rivera@example.org"))
        db.session.add(contact)
    for index in range(2):
        student = Student(family=family, site=world.elementary, first_name=f"Kid{index}",
                          last_name="Rivera", grade="5")  # fmt: skip
        student.phones.append(Phone(number=factories.next_number(), kind=PhoneKind.HOME))
        db.session.add(student)
    db.session.commit()
    with count_queries() as many:
        page = client.get("/account/settings")
    assert page.status_code == 200
    # The README's figure: the user with their contact, family and the organization (one
    # query); the family's phones and emails with their owners, the consent states, pending
    # confirmations and purpose choices of the parent's addresses, and the purposes'
    # fingerprint (one: consent.choices._PAGE; the purposes are kept while it stays the same).
    assert few.count == SETTINGS_PAGE_QUERIES, few.statements
    # A new query on every portal page would show here first.
    assert many.count == few.count, many.statements


# psycopg keeps its conversion of a statement (placeholders to the server's $1, $2) only up to
# this length and this many parameters (psycopg._queries; private, hence the defaults); a longer
# statement is converted again on every execution, a tenth of a millisecond for the settings
# page's (issue 18).
PSYCOPG_KEPT_LENGTH = getattr(psycopg_queries, "MAX_CACHED_STATEMENT_LENGTH", 4096)
PSYCOPG_KEPT_PARAMS = getattr(psycopg_queries, "MAX_CACHED_STATEMENT_PARAMS", 50)


def test_the_settings_page_statements_are_short_enough_for_psycopg_to_keep():
    """Both statements of every portal page, as psycopg is given them on PostgreSQL (any test
    database: compiled for it here), fit psycopg's conversion cache, with room to spare for a
    column or two more."""
    dialect = postgresql.psycopg.dialect()
    values = {"user_id": 1, "org_id": 1, "family_id": 1, "contact_id": 1, "student_id": None}
    for statement in (web._USER_AND_ORGANIZATION, choices._PAGE):
        compiled = statement.params(values).compile(
            dialect=dialect, compile_kwargs={"render_postcompile": True}
        )
        sql = str(compiled).encode()
        assert len(sql) <= PSYCOPG_KEPT_LENGTH - 200, (len(sql), sql[:200])
        assert len(compiled.binds) <= PSYCOPG_KEPT_PARAMS


def test_the_settings_page_statements_are_converted_once(client, world, count_queries):
    """PostgreSQL: a later settings page finds both of its statements in psycopg's cache of
    conversions (a miss there would be a statement converted again on every page)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("psycopg's conversion cache: PostgreSQL only")
    world.login(client, "parent")
    client.get("/account/settings")
    before = psycopg_queries._query2pg.cache_info()
    with count_queries() as queries:
        assert client.get("/account/settings").status_code == 200
    after = psycopg_queries._query2pg.cache_info()
    assert queries.count == SETTINGS_PAGE_QUERIES
    assert [len(s.encode()) <= PSYCOPG_KEPT_LENGTH for s in queries.statements] == [True, True]
    assert after.hits - before.hits == SETTINGS_PAGE_QUERIES, (before, after)


@pytest.mark.parametrize("path", ["/admin/optouts/", "/admin/activity/"])
def test_a_later_page_takes_the_same_queries_as_the_first(client, world, count_queries, path):
    """Keyset paging: the next page, deep or not, is the same queries as the first (no COUNT,
    no OFFSET walk)."""
    import html
    import re

    world.login(client, "org")
    _opt_out(world.org, "voice", _numbers(3000, 130))
    with count_queries() as first:
        page = client.get(path).get_data(as_text=True)
    following = html.unescape(re.search(r'href="([^"]+)" rel="next"', page).group(1))
    with count_queries() as later:
        page = client.get(following)
    assert page.status_code == 200
    assert later.count <= first.count
    assert not any("count(" in s.lower() for s in later.statements)
