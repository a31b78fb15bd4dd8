"""Big exports run as background jobs: the request queues the job, its page shows the
progress bar, then offers the file; nobody else can see the job or download its file."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from consent import jobs, ledger
from consent.extensions import db
from consent.models import Contact, Source
from tests import factories

LIST = "/admin/optouts/"


@pytest.fixture
def big_export(app, client, auth, staff):
    """Exports over one row go to a job; two numbers opted out; signed in as the org team."""
    app.config["EXPORT_JOB_ROWS"] = 1
    org = staff["organization"]
    contact = db.session.scalars(sa.select(Contact)).first()
    for channel in ("text", "voice"):
        ledger.opt_out(
            org, channel, contact.phones[0].number, source=Source.ADMIN, actor=ledger.Actor.system()
        )
    db.session.commit()
    auth.login("admin@example.org", factories.PASSWORD)
    return contact


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_big_export_is_a_job_whose_page_offers_the_file(client, big_export, fmt):
    queued = client.get(LIST + f"export-people.{fmt}")
    assert queued.status_code == 302 and "/export-jobs/" in queued.location
    waiting = client.get(queued.location).get_data(as_text=True)
    assert "<progress" in waiting and 'http-equiv="refresh"' in waiting
    assert "Waiting for a worker" in waiting
    while jobs.run_one():
        pass
    page = client.get(queued.location).get_data(as_text=True)
    assert 'id="download"' in page and "1 rows" in page
    assert 'http-equiv="refresh"' not in page
    download = client.get(queued.location + "/download")
    assert download.status_code == 200
    assert download.headers["Cache-Control"] == "no-store"
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff"))))
    else:
        sheet = load_workbook(io.BytesIO(download.data)).active
        rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][:2] == ["Person", "ID"]
    assert len(rows) == 2 and rows[1][2] == big_export.name


def test_another_staff_member_cannot_see_or_download_the_export(client, auth, big_export):
    queued = client.get(LIST + "export-people.csv").location
    while jobs.run_one():
        pass
    auth.logout()
    auth.login("site@example.org", factories.PASSWORD)
    assert client.get(queued).status_code == 404
    assert client.get(queued + "/download").status_code == 404
    auth.logout()
    assert client.get(queued + "/download").status_code in (302, 401, 403, 404)
