"""The Activity Log: every event newest first, filters, export, and no way to change an event."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import sqlalchemy as sa

from consent import ledger
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, ConsentEvent, Source
from tests.helpers import csrf_token


def _events() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))


def _opt_out(world, channel, address, note, who="org"):
    ledger.opt_out(
        world.org,
        channel,
        address,
        source=Source.ADMIN,
        actor=Actor.for_user(world.users[who]),
        note=note,
        confirm=False,
    )
    db.session.commit()


def test_log_lists_every_event_newest_first(client, world):
    """The log shows each event, the newest at the top, with its source and actor."""
    email = world.near.contacts[0].emails[0].address
    _opt_out(world, Channel.EMAIL, email, "newest note")
    world.login(client, "org")
    page = client.get("/admin/activity/").get_data(as_text=True)
    rows = page[page.index("model-list") :]
    assert rows.index("newest note") < rows.index("enrollment")
    assert "Olga Org" in page and email in page


def test_log_filters_by_address_channel_source_actor_and_date(client, world):
    """The plain filter form (address typed any way, channel, source, actor, dates) keeps only
    the matching events, and its empty fields filter nothing."""
    email = world.near.contacts[0].emails[0].address
    number = world.far.contacts[0].phones[0].number
    _opt_out(world, Channel.EMAIL, email, "by org")
    _opt_out(world, Channel.VOICE, number, "by site", who="site")
    world.login(client, "org")

    def shown(**filters):
        args = {"flt1_address_equals": "", "flt2_channel_equals": "", "flt5_date_on_or_after": ""}
        args.update(filters)
        return client.get("/admin/activity/", query_string=args).get_data(as_text=True)

    everything = shown()
    assert "by org" in everything and "by site" in everything
    assert "Parent1" not in everything  # (no names in the log: addresses only)
    dashed = f"{number[2:5]}-{number[5:8]}-{number[8:]}"
    assert_only(shown(flt1_address_equals=dashed), "by site", "by org")
    assert_only(shown(flt1_address_equals=email.upper()), "by org", "by site")
    assert_only(shown(flt2_channel_equals="voice"), "by site", "by org")
    assert_only(shown(flt3_source_equals="admin", flt4_by_contains="Sam Site"), "by site", "by org")
    today = db.session.scalar(sa.select(sa.func.max(ConsentEvent.occurred_at))).date()
    assert "by org" in shown(
        flt5_date_on_or_after=today.isoformat(), flt6_date_on_or_before=today.isoformat()
    )
    assert "by org" not in shown(flt5_date_on_or_after=(today + timedelta(days=1)).isoformat())
    page = shown()
    assert 'name="flt1_address_equals"' in page and '<label for="f-source">' in page


def assert_only(page: str, present: str, absent: str) -> None:
    assert present in page and absent not in page


def test_log_export_csv_follows_filters_and_neutralizes(client, world):
    """The CSV export has one row per event under the filters, formula cells neutralized."""
    email = world.near.contacts[0].emails[0].address
    _opt_out(world, Channel.EMAIL, email, "=cmd|' /C calc'!A0")
    world.login(client, "org")
    response = client.get("/admin/activity/download/csv/")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:4] == ["Event", "When (UTC)", "Channel", "Address"]
    assert len(rows) == 1 + _events()
    assert rows[1][3] == email and rows[1][11] == "'=cmd|' /C calc'!A0"
    response = client.get(f"/admin/activity/download/csv/?flt1_address_equals={email}")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == 2


def test_log_export_xlsx(client, world):
    """The XLSX export opens and has a row per event."""
    from openpyxl import load_workbook

    world.login(client, "org")
    response = client.get("/admin/activity/download/xlsx/")
    sheet = load_workbook(io.BytesIO(response.data)).active
    assert sheet.max_row == 1 + _events()


@pytest.mark.parametrize("path", ["/admin/activity/new/", "/admin/activity/edit/?id=1"])
def test_log_has_no_create_or_edit(client, world, path):
    """The log's create and edit URLs answer 404."""
    world.login(client, "org")
    assert client.get(path).status_code == 404
    assert (
        client.post(path, data={"csrf_token": csrf_token(client), "note": "x"}).status_code == 404
    )


def test_post_to_delete_changes_nothing(client, world):
    """A POST to the delete URL or a delete action answers without deleting any event."""
    world.login(client, "org")
    before = _events()
    token = csrf_token(client)
    delete = client.post("/admin/activity/delete/", data={"id": "1", "csrf_token": token})
    assert delete.status_code == 404
    client.post(
        "/admin/activity/action/",
        data={"action": "delete", "rowid": ["1", "2"], "csrf_token": token},
    )
    assert _events() == before
    page = client.get("/admin/activity/").get_data(as_text=True)
    assert "/admin/activity/delete/" not in page and "/admin/activity/edit/" not in page


def test_log_pages_do_not_count_rows(client, world, count_queries):
    """A page of the log runs no COUNT (first page fast with millions of events), and the same
    number of queries however many events there are."""
    world.login(client, "org")
    with count_queries() as few:
        client.get("/admin/activity/")
    for index in range(60):
        _opt_out(world, Channel.EMAIL, f"many{index}@example.org", None)
    with count_queries() as many:
        page = client.get("/admin/activity/").get_data(as_text=True)
    assert "many59@example.org" in page and "many0@example.org" not in page
    assert many.count == few.count
    assert not any("count(" in s.lower() and "consent_events" in s for s in many.statements)


def test_log_details_show_evidence(client, world):
    """An event's details show its evidence and note."""
    email = world.near.contacts[0].emails[0].address
    _opt_out(world, Channel.EMAIL, email, "at the front desk")
    event_id = db.session.scalar(sa.select(sa.func.max(ConsentEvent.id)))
    world.login(client, "org")
    page = client.get(f"/admin/activity/details/?id={event_id}").get_data(as_text=True)
    assert "at the front desk" in page and "Olga Org" in page
