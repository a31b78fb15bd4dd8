"""Admin Reports (seed 002): the student report with Parent 1-4's text status, the parents
reports, their CSV/XLSX exports (neutralized), and a fixed number of queries per page."""

from __future__ import annotations

import csv
import io
import re

import pytest
from openpyxl import load_workbook

from consent import ledger
from consent.export import neutralize
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, Source
from tests import factories


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def _opt_out(world, number):
    ledger.opt_out(
        world.org,
        Channel.TEXT,
        number,
        source=Source.PORTAL,
        actor=Actor.recipient(),
        confirm=False,
        notify_org=False,
    )
    db.session.commit()


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))


def test_student_report_shows_each_parents_primary_phone_and_text_status(client, world):
    """Each student row shows Parent 1 and Parent 2 with their primary phone and its text
    status in words (green Opted in, red Opted out)."""
    parent2 = world.near.contacts[1]
    _opt_out(world, parent2.phones[0].number)
    world.login(client, "org")
    page = _text(client.get("/admin/reports/"))
    row = page[page.index("Rivera, Kid0") :]
    row = row[: row.index("</tr>")]
    assert "Parent1 Rivera" in row and "Parent2 Rivera" in row
    assert row.index("Opted in") < row.index("Opted out")
    assert "badge-success" in row and "badge-danger" in row


def test_student_report_filters_by_site_and_enrollment_status(client, world):
    """The site and enrollment-status filters narrow the student report."""
    world.far.students[0].enrollment_status = "withdrawn"
    db.session.commit()
    world.login(client, "org")
    by_site = _text(client.get(f"/admin/reports/?site={world.elementary.id}"))
    assert "Rivera, Kid0" in by_site and "Okafor, Kid0" not in by_site
    enrolled = _text(client.get("/admin/reports/?enrollment=enrolled"))
    assert "Rivera, Kid0" in enrolled and "Okafor, Kid0" not in enrolled
    withdrawn = _text(client.get("/admin/reports/?enrollment=withdrawn"))
    assert "Okafor, Kid0" in withdrawn and "Rivera, Kid0" not in withdrawn


def test_student_report_takes_the_same_queries_for_more_students(client, world, count_queries):
    """The student report's page runs a fixed number of queries, however many students."""
    world.login(client, "org")
    with count_queries() as few:
        assert client.get("/admin/reports/").status_code == 200
    for index in range(15):
        factories.make_family(world.org, world.high, name=f"More{index}", contacts=4, students=2)
    db.session.commit()
    with count_queries() as many:
        page = client.get("/admin/reports/")
    assert page.status_code == 200 and "More14" in _text(page)
    assert many.count == few.count


def test_parents_reports_list_opted_out_and_opted_in_parents(client, world):
    """The opted-out report lists the parents whose number is opted out; the opted-in one the
    others."""
    out = world.near.contacts[0]
    _opt_out(world, out.phones[0].number)
    world.login(client, "org")
    opted_out = _text(client.get("/admin/reports/parents/opted_out/"))
    assert "Rivera, Parent1" in opted_out and "Rivera, Parent2" not in opted_out
    assert "Opted out" in opted_out
    opted_in = _text(client.get("/admin/reports/parents/opted_in/"))
    assert "Rivera, Parent2" in opted_in and "Okafor, Parent1" in opted_in
    assert "Rivera, Parent1" not in opted_in


def test_student_report_csv_has_parent_columns_and_neutralized_cells(client, world):
    """The CSV export has a row per student with Parent 1-4 columns; a cell starting with
    = + - @ starts with a quote."""
    student = world.near.students[0]
    student.first_name = '=HYPERLINK("http://x")'
    contact = world.near.contacts[0]
    contact.first_name = "@SUM(A1)"
    db.session.commit()
    world.login(client, "org")
    response = client.get("/admin/reports/students.csv")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    rows = _csv(response)
    assert rows[0][:5] == ["Student ID", "Student", "Site", "Grade", "Enrollment status"]
    assert "Parent 4 text status" in rows[0]
    rivera = next(r for r in rows if r[1].startswith("'=HYPERLINK"))
    assert rivera[2] == "Maple Valley Elementary"
    assert rivera[5] == "'@SUM(A1) Rivera" and rivera[6] == "'" + contact.phones[0].number
    assert rivera[7] == "Opted in"
    assert len(rows) == 3


def test_parents_xlsx_export_has_text_cells_only(client, world):
    """The XLSX export of opted-out parents holds their numbers as text, never formulas."""
    contact = world.far.contacts[1]
    contact.last_name = "-Okafor"
    db.session.commit()
    _opt_out(world, contact.phones[0].number)
    world.login(client, "org")
    response = client.get("/admin/reports/parents/opted_out.xlsx")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.data)).active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][:4] == ["Parent ID", "Parent", "Family", "Phone"]
    assert rows[1][1] == "Parent2 -Okafor" and rows[1][3] == contact.phones[0].number
    assert all(c.data_type == "s" for row in sheet.iter_rows() for c in row)
    assert len(rows) == 2


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+12025550123", "'+12025550123"),
        ("-3", "'-3"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        (None, ""),
        (12, "12"),
    ],
)
def test_neutralize_quotes_only_formula_starts(value, shown):
    """neutralize() quotes a cell that a spreadsheet would run as a formula, nothing else."""
    assert neutralize(value) == shown


def test_unknown_report_or_format_is_404(client, world):
    """A report or format that does not exist answers 404."""
    world.login(client, "org")
    assert client.get("/admin/reports/parents/bounced/").status_code == 404
    assert client.get("/admin/reports/students.pdf").status_code == 404
