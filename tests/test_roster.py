"""The district's people from its roster (OneRoster 1.1 CSV): the reader, the import through
`flask roster import`, what staff and parents then see, and the admin roster pages."""

from __future__ import annotations

import io
import zipfile

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import jobs, ledger, roster
from consent.extensions import db
from consent.models import (
    ConsentEvent,
    ConsentState,
    Contact,
    Family,
    Job,
    Organization,
    PhoneKind,
    Role,
    Source,
    Status,
    Student,
)
from tests import factories
from tests.conftest import csrf_token
from tests.roster_helpers import FIXTURES, ORGS, USERS_HEADER, user_row, write_users

DISTRICT = FIXTURES / "district"
ANA_CELL = "+12025550123"


def import_roster(runner, path, *extra):
    """`flask roster import PATH …`: (exit code, output)."""
    result = runner.invoke(args=["roster", "import", str(path), *extra])
    db.session.expire_all()
    return result.exit_code, result.output


def contact(sid: str) -> Contact | None:
    return db.session.scalars(sa.select(Contact).where(Contact.sourced_id == sid)).first()


def student(sid: str) -> Student | None:
    return db.session.scalars(sa.select(Student).where(Student.sourced_id == sid)).first()


def state(address: str, channel: str = "text") -> ConsentState | None:
    db.session.expire_all()
    return db.session.scalars(
        sa.select(ConsentState).where(
            ConsentState.address == address, ConsentState.channel == channel
        )
    ).first()


def events_of(address: str) -> list[ConsentEvent]:
    return list(
        db.session.scalars(
            sa.select(ConsentEvent).where(ConsentEvent.address == address).order_by(ConsentEvent.id)
        )
    )


def counts() -> tuple[int, int, int]:
    return tuple(
        db.session.scalar(sa.select(sa.func.count()).select_from(m))
        for m in (Contact, Student, Family)
    )


# --- the command line ------------------------------------------------------------------------


def test_cli_imports_a_district_folder_with_a_report_row_by_row(world, runner):
    """Every row of users.csv is reported with its number and what became of it."""
    code, out = import_roster(runner, DISTRICT)
    assert code == 0, out
    for line in (
        "row 2: Sofia Rivera (s-sofia): Added",
        "row 3: Ana Rivera (p-ana): Added",
        "row 10: Bao Nguyen (r-bao): Made inactive",
        "row 11: Jane Smith (t-smith): Ignored: role teacher is not a student or family",
        "row 12: Kim Gone (s-gone): Made inactive",
    ):
        assert line in out
    assert (
        "8 added, 0 updated, 0 unchanged, 2 made inactive, 1 ignored, 0 rejected (of 11 rows)."
        in out
    )


def test_families_sites_ids_and_addresses_come_from_the_roster(world, runner):
    """Agents make one family; school orgs give the site; sms is a cell, phone a home phone."""
    import_roster(runner, DISTRICT)
    sofia, ana, luis = student("s-sofia"), contact("p-ana"), contact("p-luis")
    assert sofia.site == world.elementary and sofia.grade == "03"
    assert (sofia.external_id, ana.external_id) == ("S-1001", "P-2341")
    assert ana.family_id == luis.family_id == sofia.family_id
    assert sofia.family.name == "Rivera"
    assert {ana.position, luis.position} == {1, 2}
    assert [(p.number, p.kind) for p in luis.phones] == [
        ("+12025550124", PhoneKind.CELL),
        ("+12025550199", PhoneKind.HOME),
    ]
    assert [e.address for e in luis.emails] == ["luis.rivera@example.org"]
    chidi, ada, ngozi = student("s-chidi"), student("s-ada"), contact("g-ngozi")
    assert chidi.site == world.high and ada.site == world.elementary
    assert chidi.family_id == ada.family_id == ngozi.family_id
    assert ngozi.relationship_to_student == "Guardian"
    # A parent listed only by the student's agentSourcedIds joins the student's family.
    assert contact("p-lan").family_id == student("s-minh").family_id
    assert contact("r-bao").active is False and student("s-gone").active is False
    assert db.session.scalar(sa.select(sa.func.count()).where(Contact.sourced_id == "t-smith")) == 0


def test_a_zip_with_a_bom_and_other_header_case_reads_like_the_folder(world, runner):
    """district.zip holds the same roster with a BOM, lower-case headers and CRLF line ends."""
    code, out = import_roster(runner, FIXTURES / "district.zip")
    assert code == 0, out
    assert "8 added" in out and "0 rejected" in out
    assert student("s-sofia").external_id == "S-1001"


def test_reimport_updates_by_sourced_id_without_duplicates(world, runner):
    import_roster(runner, DISTRICT)
    before = counts()
    code, out = import_roster(runner, FIXTURES / "district.zip")
    assert code == 0
    assert "0 added, 0 updated, 10 unchanged" in out
    assert counts() == before


def test_dry_run_reports_and_writes_nothing(world, runner):
    before = counts()
    code, out = import_roster(runner, DISTRICT, "--dry-run")
    assert code == 0
    assert "row 2: Sofia Rivera (s-sofia): Will be added" in out
    assert "8 will be added" in out
    assert counts() == before
    assert state(ANA_CELL) is None
    assert db.session.scalar(sa.select(sa.func.count()).where(Contact.sourced_id.is_not(None))) == 0


def test_bad_rows_are_reported_with_their_reason_and_good_rows_land(world, runner):
    code, out = import_roster(runner, FIXTURES / "bad")
    assert code == 1
    for line in (
        "row 4: No Id: Rejected: no sourcedId",
        "row 5: Pia Principal (x-principal): Rejected: unknown role 'principal'",
        "row 6: Bea Phone (s-badphone): Rejected: sms: '12' is not a valid address",
        "row 7: Ed Mail (p-bademail): Rejected: email: 'not-an-email' is not a valid address",
        "row 8: Nora Org (s-noorg): Rejected: unknown org org-nowhere (not in orgs.csv)",
        "row 9: Gus Ghost (p-ghost): Rejected: its agent s-ghost is neither in users.csv nor on "
        "record",
        "row 10: Mia Middle (s-middle): Rejected: school 'Maple Valley Middle' matches no site",
    ):
        assert line in out
    assert "2 added" in out and "7 rejected (of 9 rows)" in out
    assert student("s-good").family_id == contact("p-good").family_id
    # No site was made up for the unknown school.
    assert [s.name for s in world.org.sites] == ["Maple Valley Elementary", "Maple Valley High"]


def test_a_row_whose_agent_was_rejected_is_rejected_too(world, runner, tmp_path):
    rows = [
        user_row(sourcedId="s-x", role="student", givenName="X", orgSourcedIds="org-nowhere"),
        user_row(sourcedId="p-x", role="parent", givenName="P", agentSourcedIds="s-x"),
    ]
    code, out = import_roster(runner, write_users(tmp_path / "r", rows))
    assert code == 1
    assert "row 3: P (p-x): Rejected: its agent s-x is on rejected row 2" in out


def test_missing_file_or_column_is_an_error_not_a_crash(world, runner, tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "orgs.csv").write_text(ORGS)
    code, out = import_roster(runner, tmp_path / "only")
    assert code == 1 and "The roster has no users.csv." in out
    folder = write_users(tmp_path / "cols", [])
    (folder / "users.csv").write_text("id,name\n1,x\n")
    code, out = import_roster(runner, folder)
    assert code == 1 and "users.csv has no sourcedId column." in out


def test_sites_match_by_identifier_and_keep_the_rosters_ids(world, runner, tmp_path):
    world.elementary.name = "MV Elementary School"
    world.elementary.identifier = "MVE"
    db.session.commit()
    import_roster(runner, DISTRICT)
    assert student("s-sofia").site_id == world.elementary.id
    db.session.refresh(world.high)
    assert (world.high.sourced_id, world.high.identifier) == ("org-high", "MVH")


def test_a_student_on_record_cannot_turn_into_a_contact(world, runner, tmp_path):
    import_roster(runner, DISTRICT)
    rows = [user_row(sourcedId="s-sofia", role="parent", givenName="Sofia", familyName="R")]
    code, out = import_roster(runner, write_users(tmp_path / "r", rows))
    assert code == 1
    assert "Rejected: sourcedId s-sofia is a student on record already" in out


# --- addresses and consent -------------------------------------------------------------------


def test_roster_cells_are_staff_entries_with_the_file_and_row(world, runner):
    import_roster(runner, DISTRICT)
    assert state(ANA_CELL).status == Status.OPTED_IN
    (event,) = events_of(ANA_CELL)
    assert event.source == Source.STAFF_ENTRY and event.to_status == Status.OPTED_IN
    assert event.evidence == {"file": "district", "row": 3, "sourced_id": "p-ana"}
    assert event.actor_label == "command-line roster import"
    # Home phones are not cells, and an inactive person's cell is not entered.
    assert state("+12025550199") is None and state("+12025550142") is None


def test_staff_entry_setting_off_leaves_roster_cells_unknown(world, runner):
    world.org.staff_cell_starts_opted_in = False
    db.session.commit()
    import_roster(runner, DISTRICT)
    assert contact("p-ana").phones[0].number == ANA_CELL
    assert state(ANA_CELL) is None and events_of(ANA_CELL) == []


def test_a_cell_that_had_opted_out_stays_opted_out(world, runner):
    """A STOP before the roster arrives: the staff entry keeps the choice (the ledger's rule)."""
    ledger.opt_out(
        world.org,
        "text",
        ANA_CELL,
        source=Source.SMS_KEYWORD,
        actor=ledger.Actor.recipient(),
        carrier_block=True,
        confirm=False,
    )
    db.session.commit()
    import_roster(runner, DISTRICT)
    kept = state(ANA_CELL)
    assert kept.status == Status.OPTED_OUT and kept.carrier_block
    assert [e.source for e in events_of(ANA_CELL)] == [Source.SMS_KEYWORD]


def test_a_changed_phone_or_email_replaces_the_old_one_and_the_old_consent_stays(
    world, runner, tmp_path
):
    import_roster(runner, DISTRICT)
    old_events = [e.id for e in events_of(ANA_CELL)]
    users = (DISTRICT / "users.csv").read_text()
    users = users.replace("(202) 555-0123", "202-555-0177").replace(
        "ana.rivera@example.org", "ana@rivera.example.org"
    )
    folder = tmp_path / "roster-december"
    folder.mkdir()
    (folder / "orgs.csv").write_text(ORGS)
    (folder / "users.csv").write_text(users)
    code, out = import_roster(runner, folder)
    assert code == 0
    assert "row 3: Ana Rivera (p-ana): Updated: cell, email" in out
    ana = contact("p-ana")
    assert [p.number for p in ana.phones] == ["+12025550177"]
    assert [e.address for e in ana.emails] == ["ana@rivera.example.org"]
    # The old number's consent is a fact about that number: kept, with its events.
    assert state(ANA_CELL).status == Status.OPTED_IN
    assert [e.id for e in events_of(ANA_CELL)] == old_events
    (new_event,) = events_of("+12025550177")
    assert new_event.evidence["file"] == "roster-december" and new_event.evidence["row"] == 3


def test_a_person_made_inactive_is_kept_with_their_history(world, runner, tmp_path):
    import_roster(runner, DISTRICT)
    users = (
        (DISTRICT / "users.csv")
        .read_text()
        .replace(
            "s-sofia,active,2026-08-01T00:00:00Z,true",
            "s-sofia,tobedeleted,2026-08-01T00:00:00Z,true",
        )
    )
    write_users(tmp_path / "r", [])
    (tmp_path / "r" / "users.csv").write_text(users)
    code, out = import_roster(runner, tmp_path / "r")
    assert "row 2: Sofia Rivera (s-sofia): Made inactive" in out
    sofia = student("s-sofia")
    assert sofia.active is False and sofia.phones[0].number == "+12025550125"
    assert state("+12025550125").status == Status.OPTED_IN


# --- what staff and parents see ---------------------------------------------------------------


def test_inactive_people_are_hidden_from_the_admin_lists_unless_asked_for(world, runner, client):
    import_roster(runner, DISTRICT)
    world.login(client, "org")
    page = client.get("/admin/contacts/").get_data(as_text=True)
    assert "Rivera, Ana" in page and "Nguyen, Bao" not in page
    page = client.get("/admin/contacts/?inactive=1").get_data(as_text=True)
    assert "Nguyen, Bao" in page and "inactive" in page
    page = client.get("/admin/students/").get_data(as_text=True)
    assert "Rivera, Sofia" in page and "Gone, Kim" not in page
    assert "Gone, Kim" in client.get("/admin/students/?inactive=1").get_data(as_text=True)
    details = client.get(f"/admin/contacts/{contact('r-bao').id}/").get_data(as_text=True)
    assert "Inactive: this person is gone from the roster." in details


def test_an_inactive_contacts_portal_login_cannot_sign_in(world, runner, client, tmp_path):
    import_roster(runner, DISTRICT)
    factories.make_user(world.org, "lan@example.org", Role.PARENT, contact=contact("p-lan"))
    db.session.commit()
    users = (DISTRICT / "users.csv").read_text()
    gone = users.replace("p-lan,active,2026-08-01T00:00:00Z,true", "p-lan,active,x,false")
    write_users(tmp_path / "gone", [])
    (tmp_path / "gone" / "users.csv").write_text(gone)
    code, out = import_roster(runner, tmp_path / "gone")
    assert "row 9: Lan Nguyen (p-lan): Made inactive" in out
    client.post(
        "/login",
        data={
            "email": "lan@example.org",
            "password": factories.PASSWORD,
            "csrf_token": csrf_token(client),
        },
    )
    assert client.get("/account/settings").status_code == 302  # not signed in
    code, out = import_roster(runner, DISTRICT)  # back on the roster: the login works again
    assert "row 9: Lan Nguyen (p-lan): Updated: active again" in out
    response = client.post(
        "/login",
        data={
            "email": "lan@example.org",
            "password": factories.PASSWORD,
            "csrf_token": csrf_token(client),
        },
    )
    assert response.status_code == 302
    assert client.get("/account/settings").status_code == 200


# --- the reader, with any text -----------------------------------------------------------------

TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),
    max_size=40,
)
GOOD = user_row(
    sourcedId="s-good",
    role="student",
    orgSourcedIds="org-elem",
    givenName="Gail",
    familyName="Good",
    sms="202-555-0151",
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(TEXT, min_size=0, max_size=len(USERS_HEADER) + 2), max_size=4))
def test_any_text_in_any_column_never_crashes_and_good_rows_land(world, rows):
    """Bad rows are reported; the good row lands; the counts add up to the rows."""
    buffer = io.StringIO()
    import csv

    writer = csv.writer(buffer)
    writer.writerow(USERS_HEADER)
    writer.writerow(GOOD)
    writer.writerows(rows)
    files = {"orgs.csv": ORGS.encode(), "users.csv": buffer.getvalue().encode("utf-8")}
    org = db.session.get(Organization, world.org.id)
    results = []
    try:
        plan = roster.build_plan(org, files)
        report = roster.run(
            org, plan, "users.csv", actor=ledger.Actor.system("test"), on_row=results.append
        )
        db.session.flush()
        assert sum(report.counts.values()) == report.total == plan.total
        assert results[0].row == 2 or any(r.sourced_id == "s-good" for r in results)
        good = [r for r in results if r.sourced_id == "s-good" and r.row == 2]
        assert good and good[0].outcome == roster.NEW
        assert student("s-good") is not None
        for result in results:
            assert result.outcome in roster.OUTCOMES
            if result.outcome == roster.REJECTED:
                assert result.reason
    finally:
        db.session.rollback()


# --- the admin pages ------------------------------------------------------------------------


def zip_of(folder) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("orgs.csv", "users.csv"):
            archive.write(folder / name, name)
    return buffer.getvalue()


def upload(client, data: dict):
    data = {**data, "csrf_token": csrf_token(client, "/admin/roster/")}
    return client.post("/admin/roster/upload", data=data, content_type="multipart/form-data")


def test_admin_previews_then_imports_the_roster_as_background_jobs(world, client, mailbox):
    before = counts()
    world.login(client, "org")
    page = client.get("/admin/roster/").get_data(as_text=True)
    assert "Load the roster" in page and 'type="file"' in page
    response = upload(client, {"files": (io.BytesIO(zip_of(DISTRICT)), "district.zip")})
    assert response.status_code == 302
    preview_url = response.headers["Location"]
    page = client.get(preview_url).get_data(as_text=True)
    assert "Waiting for a worker" in page and 'http-equiv="refresh"' in page
    assert jobs.run_one() is not None
    page = client.get(preview_url).get_data(as_text=True)
    assert 'http-equiv="refresh"' not in page
    assert "Preview of district.zip" in page
    assert "<strong>8</strong> will be added" in page and "<strong>1</strong> ignored" in page
    assert "Import this roster" in page and "<progress" in page
    assert counts() == before  # the preview wrote nothing
    token = csrf_token(client, preview_url)
    response = client.post(preview_url + "/import", data={"csrf_token": token})
    assert response.status_code == 302
    import_url = response.headers["Location"]
    assert import_url != preview_url
    assert jobs.run_one() is not None
    page = client.get(import_url).get_data(as_text=True)
    assert "Import of district.zip" in page and "Done: 11 of 11 rows." in page
    assert "<strong>8</strong> added" in page
    (event,) = events_of(ANA_CELL)
    assert event.actor_user_id == world.users["org"].id
    assert event.evidence["file"] == "district.zip"


def test_admin_upload_of_the_two_csv_files(world, client):
    world.login(client, "org")
    response = upload(
        client,
        {
            "files": [
                (io.BytesIO((DISTRICT / "orgs.csv").read_bytes()), "orgs.csv"),
                (io.BytesIO((DISTRICT / "users.csv").read_bytes()), "users.csv"),
            ]
        },
    )
    assert response.status_code == 302
    jobs.run_one()
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "<strong>8</strong> will be added" in page


def test_admin_upload_without_users_csv_says_so_and_queues_nothing(world, client):
    world.login(client, "org")
    response = upload(
        client, {"files": [(io.BytesIO((DISTRICT / "orgs.csv").read_bytes()), "orgs.csv")]}
    )
    assert response.status_code == 200
    assert "The roster has no users.csv." in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Job)) == 0


def test_the_preview_page_lists_rejected_rows_with_their_reason(world, client):
    world.login(client, "org")
    response = upload(client, {"files": (io.BytesIO(zip_of(FIXTURES / "bad")), "bad.zip")})
    jobs.run_one()
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "<strong>7</strong> rejected" in page
    assert "unknown org org-nowhere (not in orgs.csv)" in page


def session_csrf(client) -> str:
    """A valid CSRF token of the client's session (for users whose pages have no form)."""
    from flask import current_app
    from itsdangerous import URLSafeTimedSerializer

    with client.session_transaction() as session:
        raw = session["csrf_token"]
    return URLSafeTimedSerializer(current_app.secret_key, salt="wtf-csrf-token").dumps(raw)


@pytest.fixture
def roster_job(world):
    """A finished roster preview of the district folder."""
    org = db.session.get(Organization, world.org.id)
    job = roster.enqueue(org, roster.open_path(str(DISTRICT)), "district", dry_run=True)
    db.session.commit()
    jobs.run_one()
    return job.id


@pytest.mark.parametrize("who", ["site", "staff", "site_high", "parent"])
def test_only_the_organization_team_reaches_the_roster_pages(world, client, roster_job, who):
    world.login(client, who)
    assert client.get("/admin/roster/").status_code == 403
    assert client.get(f"/admin/roster/jobs/{roster_job}").status_code == 403
    token = session_csrf(client)
    upload_data = {
        "csrf_token": token,
        "files": (io.BytesIO(zip_of(DISTRICT)), "district.zip"),
    }
    assert (
        client.post(
            "/admin/roster/upload", data=upload_data, content_type="multipart/form-data"
        ).status_code
        == 403
    )
    response = client.post(f"/admin/roster/jobs/{roster_job}/import", data={"csrf_token": token})
    assert response.status_code == 403
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Job)) == 1


def test_signed_out_visitors_are_sent_to_sign_in(world, client, roster_job):
    for path in ("/admin/roster/", f"/admin/roster/jobs/{roster_job}"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    response = client.post(f"/admin/roster/jobs/{roster_job}/import", data={})
    assert response.status_code in (302, 400)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Job)) == 1


def test_import_without_a_csrf_token_is_refused(world, client, roster_job):
    world.login(client, "org")
    response = client.post(f"/admin/roster/jobs/{roster_job}/import", data={})
    assert response.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Job)) == 1


def test_jobs_of_another_organization_or_kind_are_not_found(world, client, roster_job):
    other = factories.make_org(name="Other District", texting_number="+12025550188")
    foreign = jobs.enqueue(roster.JOB_KIND, other.id, params={"dry_run": True})
    other_kind = jobs.enqueue("export", world.org.id)
    db.session.commit()
    world.login(client, "org")
    for job_id in (foreign.id, other_kind.id, 9999):
        assert client.get(f"/admin/roster/jobs/{job_id}").status_code == 404
    token = csrf_token(client, "/admin/roster/")
    assert (
        client.post(f"/admin/roster/jobs/{foreign.id}/import", data={"csrf_token": token})
    ).status_code == 404


def test_an_import_cannot_be_rerun_from_an_import_job(world, client, roster_job):
    """Only a finished preview offers "Import"; posting to an import job's page is a 404."""
    world.login(client, "org")
    token = csrf_token(client, f"/admin/roster/jobs/{roster_job}")
    response = client.post(f"/admin/roster/jobs/{roster_job}/import", data={"csrf_token": token})
    import_id = int(response.headers["Location"].rsplit("/", 1)[1])
    response = client.post(f"/admin/roster/jobs/{import_id}/import", data={"csrf_token": token})
    assert response.status_code == 404


def test_bulk_staff_entries_write_what_one_staff_entry_writes(world):
    """ledger.record_staff_entries (the roster's path) and record_staff_entry agree."""
    actor = ledger.Actor.for_user(world.users["org"])
    origin = ledger.Origin(ip="203.0.113.9", user_agent="test")
    ledger.record_staff_entry(
        world.org, "+12025550161", actor=actor, origin=origin, evidence={"n": 1}
    )
    codes = ledger.record_staff_entries(
        world.org,
        [ledger.BulkRow("+12025550162", {"n": 2}), ledger.BulkRow("+12025550161", {"n": 3})],
        actor=actor,
        origin=origin,
    )
    db.session.commit()
    assert codes == {"+12025550162": "changed", "+12025550161": "kept"}
    one, many = state("+12025550161"), state("+12025550162")
    columns = ("status", "source", "changed_by", "changed_by_user_id", "version", "sort_key")
    assert [getattr(many, c) for c in columns[:5]] == [getattr(one, c) for c in columns[:5]]
    assert many.sort_key and many.digits == "2025550162"
    (first,), (second,) = events_of("+12025550161"), events_of("+12025550162")
    assert many.last_event_id == second.id
    fields = ("kind", "from_status", "to_status", "source", "actor", "actor_user_id")
    fields += ("actor_label", "ip", "user_agent", "state_version", "carrier_block")
    assert [getattr(second, f) for f in fields] == [getattr(first, f) for f in fields]
    assert second.evidence == {"n": 2}


def _last_analyze(table: str):
    with db.engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        return conn.scalar(
            sa.text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = :t"),
            {"t": table},
        )


def test_an_import_gives_the_tables_it_grows_their_statistics(world, runner):
    """PostgreSQL: an import analyzes the tables it grows as it goes (a first roster grows them
    from nothing, and without statistics each chunk's lookup by sourcedId became a loop over
    the whole table); a dry run, which grows nothing, does not."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's statistics (SQLite keeps none unless asked)")
    with db.engine.connect() as conn:
        started = conn.scalar(sa.text("SELECT now()"))
    code, out = import_roster(runner, DISTRICT, "--dry-run")
    assert code == 0, out
    for table in ("contacts", "students", "families"):
        analyzed = _last_analyze(table)
        assert analyzed is None or analyzed < started, table
    code, out = import_roster(runner, DISTRICT)
    assert code == 0, out
    for table in ("contacts", "students", "families", "phones", "email_addresses"):
        analyzed = _last_analyze(table)
        assert analyzed is not None and analyzed >= started, table
