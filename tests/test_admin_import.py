"""Importing opt-out files: the admin page (upload, preview, import, report) and the CLI."""

import csv
import io
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import Workbook, load_workbook

from consent import ledger
from consent.extensions import db
from consent.models import ConsentEvent, ConsentState, ImportBatch, Source, Status
from tests import factories
from tests.conftest import csrf_token

IMPORT = "/admin/optouts/import/"
HEADERLESS = "2025550131\n202-555-0132\nnot a number\n(202) 555-0131\nana@example.org\n"


def xlsx_bytes(rows) -> bytes:
    """An XLSX workbook of these rows."""
    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def states(channel=None):
    """{(channel, address): status} of every consent state."""
    db.session.expire_all()
    stmt = sa.select(ConsentState)
    if channel:
        stmt = stmt.where(ConsentState.channel == channel)
    return {(s.channel.value, s.address): s.status for s in db.session.scalars(stmt)}


def upload(client, data: bytes, name: str, channel="all", note="", token=True):
    """POST a file to the preview step."""
    form = {"file": (io.BytesIO(data), name), "channel": channel, "note": note}
    if token:
        form["csrf_token"] = csrf_token(client, IMPORT)
    return client.post(IMPORT + "preview", data=form, content_type="multipart/form-data")


def run_import(client, fields: dict) -> str:
    """Post the Import form, let a worker run the job, and return the page it leads to."""
    from consent import jobs

    job_page = client.post(IMPORT + "run", data=fields)
    assert job_page.status_code == 302 and "/jobs/" in job_page.location
    while jobs.run_one():
        pass
    return client.get(job_page.location, follow_redirects=True).get_data(as_text=True)


def run_form(page: str) -> dict:
    """The hidden fields of the preview's Import form."""
    form = page[page.index('action="/admin/optouts/import/run"') :]
    return dict(
        re.findall(r'name="(\w+)" type="hidden" value="([^"]*)"', form[: form.index("</form>")])
    )


@pytest.fixture
def org_admin(client, auth, staff):
    """Signed in as the organization team."""
    auth.login("admin@example.org", factories.PASSWORD)
    return staff


def test_preview_shows_each_problem_and_writes_nothing(client, org_admin):
    """A header-less CSV: the preview names each bad row's problem; nothing is stored yet."""
    page = upload(client, HEADERLESS.encode(), "list.csv", channel="text").get_data(as_text=True)
    assert "Invalid phone number" in page
    assert "Duplicate of row 1" in page
    assert "An email address cannot be opted out of text messages" in page
    assert "<strong>2</strong> will be opted out" in page
    assert "<strong>3</strong> will be rejected" in page
    assert states() == {}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ImportBatch)) == 0


def test_import_lands_good_rows_and_reports_bad_ones(client, org_admin, app):
    """After the preview, Import opts out the good rows (source import, by the admin, with file,
    row and batch as evidence) and the report lists the rejected rows with reasons."""
    preview = upload(
        client, HEADERLESS.encode(), "list.csv", channel="text", note="From the March list"
    )
    fields = run_form(preview.get_data(as_text=True))
    stored = Path(app.instance_path) / "uploads" / fields["upload"]
    assert stored.exists()
    report = run_import(client, fields)
    assert "<strong>2</strong> imported" in report and "<strong>3</strong> rejected" in report
    assert "Invalid phone number" in report and "Duplicate of row 1" in report
    assert not stored.exists()
    assert states() == {
        ("text", "+12025550131"): Status.OPTED_OUT,
        ("text", "+12025550132"): Status.OPTED_OUT,
    }
    batch = db.session.scalars(sa.select(ImportBatch)).one()
    assert (batch.imported, batch.already, batch.rejected) == (2, 0, 3)
    event = db.session.scalars(
        sa.select(ConsentEvent).where(ConsentEvent.address == "+12025550132")
    ).one()
    assert event.source == Source.IMPORT and event.actor_user_id == org_admin["org"].id
    assert event.evidence == {"file": "list.csv", "row": 2, "batch": batch.id}
    assert event.note == "From the March list"


def test_import_of_utf16_csv_with_header_and_notes(client, org_admin):
    """A UTF-16 file (Excel's "Unicode text") with a header and a note column imports."""
    text = "Phone\tNote\r\n202-555-0141\tmoved away\r\n202-555-0142\t\r\n"
    preview = upload(client, text.encode("utf-16"), "unicode.txt.csv", channel="voice")
    run_import(client, run_form(preview.get_data(as_text=True)))
    assert states() == {
        ("voice", "+12025550141"): Status.OPTED_OUT,
        ("voice", "+12025550142"): Status.OPTED_OUT,
    }
    event = db.session.scalars(
        sa.select(ConsentEvent).where(ConsentEvent.address == "+12025550141")
    ).one()
    assert event.note == "moved away" and event.evidence["row"] == 2


def test_import_of_xlsx_with_all_channels(client, org_admin):
    """An XLSX of phones and emails with "all": phones go to text and voice, emails to email;
    an address already opted out counts as such."""
    org = org_admin["organization"]
    ledger.opt_out(
        org, "email", "old@example.org", source=Source.ADMIN, actor=ledger.Actor.system()
    )
    db.session.commit()
    data = xlsx_bytes(
        [
            ["Name", "Cell", "Email"],
            ["Ana", "2025550151", "Ana@Example.org"],
            ["Old", None, "old@example.org"],
            ["Bad", "555", None],
        ]
    )
    preview = upload(client, data, "book.xlsx").get_data(as_text=True)
    assert "Already opted out" in preview
    report = run_import(client, run_form(preview))
    assert (
        "<strong>1</strong> imported" in report and "<strong>1</strong> already opted out" in report
    )
    assert "<strong>1</strong> rejected" in report
    assert states() == {
        ("text", "+12025550151"): Status.OPTED_OUT,
        ("voice", "+12025550151"): Status.OPTED_OUT,
        ("email", "ana@example.org"): Status.OPTED_OUT,
        ("email", "old@example.org"): Status.OPTED_OUT,
    }


def test_preview_and_import_without_token_are_400(client, org_admin):
    """Neither step works without the CSRF token, and nothing is imported."""
    assert upload(client, HEADERLESS.encode(), "list.csv", token=False).status_code == 400
    fields = run_form(upload(client, HEADERLESS.encode(), "list.csv").get_data(as_text=True))
    fields.pop("csrf_token")
    assert client.post(IMPORT + "run", data=fields).status_code == 400
    assert states() == {}


def test_file_over_the_import_limit_gets_a_clear_message(client, org_admin, app):
    """A file larger than IMPORT_MAX_BYTES is refused with the limit in words."""
    app.config["IMPORT_MAX_BYTES"] = 1000
    page = upload(client, ("2025550123\n" * 200).encode(), "big.csv").get_data(as_text=True)
    assert "The file is larger than 1,000 bytes" in page
    assert states() == {}


def test_upload_over_the_request_limit_gets_a_clear_message(client, org_admin, app):
    """An upload over MAX_CONTENT_LENGTH is sent back to the form with the limit in words."""
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024
    response = upload(client, b"2025550123\n" * 300_000, "huge.csv")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The file is larger than 2 MB" in page


def test_an_unreadable_file_is_refused_before_anything_is_stored(client, org_admin, app):
    """A PDF is not a spreadsheet: the form says so, and the upload is not kept."""
    page = upload(client, b"%PDF-1.4 whatever", "list.csv").get_data(as_text=True)
    assert "is not a spreadsheet" in page
    folder = Path(app.instance_path) / "uploads"
    assert not any(
        p.name.startswith(f"{org_admin['org'].id}-") and p.stat().st_size < 40
        for p in folder.iterdir()
    )


def test_import_of_someone_elses_upload_is_refused(client, org_admin):
    """An upload name of another user is not found."""
    fields = run_form(upload(client, HEADERLESS.encode(), "list.csv").get_data(as_text=True))
    fields["upload"] = "999-" + fields["upload"].split("-", 1)[1]
    page = client.post(IMPORT + "run", data=fields, follow_redirects=True).get_data(as_text=True)
    assert "That upload is no longer here" in page
    assert states() == {}


# --- the CLI --------------------------------------------------------------------------------


def test_cli_import_reports_each_row_and_exits_1_when_rows_were_rejected(runner, staff, tmp_path):
    """`flask optouts import` lands the good rows, prints each row, and exits 1 for rejects."""
    path = tmp_path / "list.csv"
    path.write_text(HEADERLESS)
    result = runner.invoke(args=["optouts", "import", str(path), "--channel", "text"])
    assert result.exit_code == 1
    assert "row 1: 2025550131 (+12025550131): Imported" in result.output
    assert "row 3: not a number: Rejected: Invalid phone number" in result.output
    assert "2 imported, 0 already opted out, 3 rejected, 0 ignored" in result.output
    assert states() == {
        ("text", "+12025550131"): Status.OPTED_OUT,
        ("text", "+12025550132"): Status.OPTED_OUT,
    }
    event = db.session.scalars(sa.select(ConsentEvent)).first()
    assert event.source == Source.IMPORT and event.actor == "system"


def test_cli_import_of_a_clean_xlsx_exits_0(runner, staff, tmp_path):
    """A file with only good rows imports and exits 0."""
    path = tmp_path / "list.xlsx"
    path.write_bytes(xlsx_bytes([["Email"], ["a@example.org"], ["b@example.org"]]))
    result = runner.invoke(args=["optouts", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert set(states()) == {("email", "a@example.org"), ("email", "b@example.org")}


def test_cli_dry_run_changes_nothing(runner, staff, tmp_path):
    """--dry-run prints what would happen and writes nothing."""
    path = tmp_path / "list.csv"
    path.write_text(HEADERLESS)
    result = runner.invoke(args=["optouts", "import", str(path), "--dry-run"])
    assert "Will be imported" in result.output and "would be imported" in result.output
    assert states() == {}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ImportBatch)) == 0


def test_cli_import_of_an_unreadable_file_says_why(runner, staff, tmp_path):
    """A file without addresses fails with the reason and exit code 1."""
    path = tmp_path / "list.csv"
    path.write_text("name,grade\nAna,3\n")
    result = runner.invoke(args=["optouts", "import", str(path)])
    assert result.exit_code == 1
    assert "No column of phone numbers or email addresses" in result.output


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_cli_export_writes_the_list(runner, staff, tmp_path, suffix):
    """`flask optouts export FILE` writes the opted-out list, neutralized, by extension."""
    org = staff["organization"]
    ledger.opt_out(org, "text", "+12025550123", source=Source.ADMIN, actor=ledger.Actor.system())
    ledger.opt_out(
        org,
        "email",
        "ana@example.org",
        source=Source.ADMIN,
        actor=ledger.Actor.system(),
        note="-1+1",
    )
    db.session.commit()
    path = tmp_path / f"out.{suffix}"
    result = runner.invoke(args=["optouts", "export", str(path)])
    assert result.exit_code == 0, result.output
    if suffix == "csv":
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        assert [r[0] for r in rows] == ["Address", "ana@example.org", "'+12025550123"]
        assert rows[1][7] == "'-1+1"
    else:
        values = [[c.value for c in row] for row in load_workbook(path).active.iter_rows()]
        assert [v[0] for v in values] == ["Address", "ana@example.org", "+12025550123"]
