"""Keyset paging of the admin lists (admin/keyset.py): the opt-out list and the activity log
page by position, in plain links that keep the search, filters, sort and page size; a bad or
forged position gives the first page (never another organization's rows, never a 500); a site
team still sees only its own site's people on every page."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admin import keyset
from consent import ledger
from consent.extensions import db
from consent.models import Source
from tests import factories

LIST = "/admin/optouts/"
LOG = "/admin/activity/"
BAD_LINK = "That page link was not valid, so the first page is shown."


def login(auth, who):
    names = {"org": "admin", "site": "site"}
    auth.login(f"{names[who]}@example.org", factories.PASSWORD)


def opt_out_numbers(org, channel: str, numbers: list[str]) -> None:
    rows = [ledger.BulkRow(n, {}) for n in numbers]
    ledger.opt_out_many(org, channel, rows, source=Source.IMPORT, actor=ledger.Actor.system())
    db.session.commit()


def shown_numbers(page: str) -> list[str]:
    """The national numbers on the list, in order ("+1 202-555-1000" -> "2025551000")."""
    table = page[page.index("model-list") :]
    return [a + b + c for a, b, c in re.findall(r"\+1 (\d{3})-(\d{3})-(\d{4})", table)]


def link(page: str, rel: str) -> str | None:
    """The URL of the First/Previous/Next/Last page link, or None when it is not a link."""
    labels = {"first": "First page", "prev": "Previous page", "next": "Next page"}
    labels["last"] = "Last page"
    found = re.search(r'<a class="page-link" href="([^"]+)"[^>]*>' + labels[rel] + "<", page)
    return html.unescape(found.group(1)) if found else None


def walk(client, url: str, rel: str = "next") -> list[list[str]]:
    """Every page from `url`, following one kind of link until there is none."""
    pages = []
    while url:
        page = client.get(url).get_data(as_text=True)
        pages.append(shown_numbers(page))
        url = link(page, rel)
        assert len(pages) < 20
    return pages


@pytest.fixture
def many(staff):
    """45 text opt-outs (+1202555 1000-1044) and 5 voice ones."""
    org = staff["organization"]
    opt_out_numbers(org, "text", [f"+1202555{n:04d}" for n in range(1000, 1045)])
    opt_out_numbers(org, "voice", [f"+1202555{n:04d}" for n in range(2000, 2005)])
    return staff


def test_opt_out_list_pages_through_every_row_and_back(client, auth, many):
    """Next links walk every row once, in the list's order, and the last page's Previous
    links walk back the same pages; Last page shows the last rows."""
    login(auth, "org")
    forward = walk(client, LIST + "?page_size=20")
    everything = [f"202555{n:04d}" for n in [*range(1000, 1045), *range(2000, 2005)]]
    assert [len(p) for p in forward] == [20, 20, 10]
    assert sum(forward, []) == everything
    first = client.get(LIST + "?page_size=20").get_data(as_text=True)
    assert link(first, "prev") is None and link(first, "first") is None
    last_url = link(first, "last")
    last = client.get(last_url).get_data(as_text=True)
    assert shown_numbers(last) == everything[-20:] and link(last, "next") is None
    backward = walk(client, last_url, "prev")
    assert [len(p) for p in backward] == [20, 20, 10]
    assert sum(reversed(backward), []) == everything


def test_opt_out_list_keeps_filters_search_and_sort_across_pages(client, auth, many):
    """The channel filter, a digits search and a descending sort stay on every page."""
    login(auth, "org")
    url = LIST + "?page_size=20&flt2_channel_equals=text&search=20255510"
    pages = walk(client, url)
    assert sum(pages, []) == [f"202555{n:04d}" for n in range(1000, 1045)]
    sort = LIST + "?page_size=20&sort=0&desc=1&flt2_channel_equals=text"
    pages = walk(client, sort)
    assert sum(pages, []) == [f"202555{n:04d}" for n in reversed(range(1000, 1045))]
    second = client.get(link(client.get(sort).get_data(as_text=True), "next"))
    assert "desc=1" in link(second.get_data(as_text=True), "next")


def test_activity_log_pages_newest_first_without_offset(client, world, count_queries):
    """The log's Next link goes on from the last event shown: the SQL starts there (a
    position, not an OFFSET)."""
    for index in range(60):
        ledger.opt_out(
            world.org,
            "email",
            f"many{index}@example.org",
            source=Source.ADMIN,
            actor=ledger.Actor.for_user(world.users["org"]),
            confirm=False,
        )
    db.session.commit()
    world.login(client, "org")
    first = client.get(LOG).get_data(as_text=True)
    assert "many59@example.org" in first and "many9@example.org" not in first
    with count_queries() as queries:
        second = client.get(link(first, "next")).get_data(as_text=True)
    assert "many9@example.org" in second and "many59@example.org" not in second
    listed = [s for s in queries.statements if "FROM consent_events" in s and "LIMIT" in s]
    assert len(listed) == 1 and "consent_events.id) < (" in listed[0]  # a position, no skip
    back = client.get(link(second, "prev")).get_data(as_text=True)
    assert "many59@example.org" in back and "many9@example.org" not in back


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "",
        keyset.encode(["changed_at", True], ["text", "000012025551000"]),  # another sort
        keyset.encode(["", False], [1, 2]),  # wrong types
        keyset.encode(["", False], ["fax", "x"]),  # no such channel
        keyset.encode(["", False], ["text"]),  # too few values
    ],
)
@pytest.mark.parametrize("direction", ["after", "before"])
def test_a_bad_cursor_gives_the_first_page_in_words(client, auth, many, cursor, direction):
    login(auth, "org")
    response = client.get(LIST, query_string={direction: cursor, "page_size": 20})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert shown_numbers(page)[:1] == ["2025551000"]
    if cursor:
        assert BAD_LINK in page


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cursor=st.text(max_size=200))
def test_any_cursor_gives_a_page_never_an_error(client, auth, many, cursor):
    login(auth, "org")
    for path in (LIST, LOG):
        assert client.get(path, query_string={"after": cursor}).status_code == 200


def test_a_forged_cursor_never_shows_another_organizations_rows(client, auth, many):
    """A cursor placed before every address still lists only the signed-in organization's."""
    other = factories.make_org(name="Other District", texting_number="+12025550188")
    opt_out_numbers(other, "text", ["+12025550500", "+12025550501"])
    login(auth, "org")
    forged = keyset.encode(["", False], ["email", ""])
    page = client.get(LIST, query_string={"before": forged}).get_data(as_text=True)
    assert "2025550500" not in "".join(shown_numbers(page))
    start = keyset.encode(["", False], ["text", "0"])
    page = client.get(LIST, query_string={"after": start, "page_size": 100}).get_data(as_text=True)
    assert shown_numbers(page)[:1] == ["2025551000"]
    assert "2025550500" not in "".join(shown_numbers(page))


def test_a_site_team_sees_only_its_sites_people_on_a_later_page(client, auth, staff):
    """Past the first page, the names shown are still only those of the team's own site."""
    org = staff["organization"]
    near = factories.make_family(org, staff["elementary"], name="Nearby")
    far = factories.make_family(org, staff["high"], name="Faraway")
    db.session.commit()
    opt_out_numbers(org, "text", [f"+1202555{n:04d}" for n in range(1000, 1025)])
    numbers = [p.number for f in (near, far) for c in f.contacts for p in c.phones]
    opt_out_numbers(org, "text", numbers)  # +1415…: after the 202 numbers
    login(auth, "site")
    first = client.get(LIST, query_string={"page_size": 20}).get_data(as_text=True)
    assert "Nearby" not in first
    second = client.get(link(first, "next")).get_data(as_text=True)
    assert "Parent1 Nearby (contact)" in second
    assert "Faraway" not in second
