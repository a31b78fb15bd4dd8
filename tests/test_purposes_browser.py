"""Message purposes in Chromium at 390 px: the parent's purposes table (no sideways scrolling,
44 px targets, statuses in words, axe clean), turned off and on with the buttons alone; the
preferences page's kinds of email; the admin contact page with its kinds-of-messages table
and a purpose opt-out recorded from it through its confirm step; the Settings editor; and the
admin's pages axe clean as whole pages (Flask-Admin's menu too) at desktop and 390 px, in the
staff member's language."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from consent import ledger, notifications, purposes
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, Role, Source
from tests.factories import PASSWORD, make_user
from tests.live import DESKTOP, PHONE, axe_violations, look, sign_in_page

pytestmark = pytest.mark.browser


@pytest.fixture
def family(world):
    """The admin world's Rivera family: Ana signs in; her texts are turned off channel-wide,
    so the table shows the General row off by channel and Emergency still reaching her."""
    ana = world.near.contacts[0]
    ledger.opt_out(
        world.org, Channel.TEXT, ana.phones[0].number, source=Source.PORTAL,
        actor=Actor.recipient(), confirm=False, notify_org=False,
    )  # fmt: skip
    user = world.users.get("parent") or make_user(
        world.org, "ana@example.org", Role.PARENT, contact=ana
    )
    token = notifications.preferences_token(world.org, ana.emails[0].address)
    db.session.commit()
    return SimpleNamespace(
        ana_id=ana.id,
        login=user.email,
        phone_id=ana.phones[0].id,
        email_id=ana.emails[0].id,
        email=ana.emails[0].address,
        token=token,
        general_id=purposes.general(world.org).id,
    )


def test_parent_purposes_table_at_phone_width(family, live_server, browser_page):
    page = browser_page
    sign_in_page(page, live_server, family.login, PASSWORD)
    page.goto(live_server.url("/account/settings"))
    table = page.locator(f"#purposes-phone-{family.phone_id}")
    assert table.is_visible()
    texts = table.locator("tbody tr").filter(has_text="General").locator("td").first
    assert texts.locator(".status").inner_text() == "Off: all texts are off"
    emergency = table.locator("tbody tr").filter(has_text="Emergency").locator("td").first
    assert emergency.locator(".status").inner_text() == "Emergency still reaches you"
    look(page, "portal-purposes")

    email_table = page.locator(f"#purposes-email-{family.email_id}")
    general = email_table.locator("tbody tr").filter(has_text="General")
    general.get_by_role("button", name="Turn off").click()
    page.wait_for_load_state()
    email_table = page.locator(f"#purposes-email-{family.email_id}")
    general = email_table.locator("tbody tr").filter(has_text="General")
    assert general.locator(".status").inner_text() == "Off"
    assert "General email to" in page.inner_text("main")
    general.get_by_role("button", name="Turn on").click()
    page.wait_for_load_state()
    general = page.locator(f"#purposes-email-{family.email_id} tbody tr").filter(has_text="General")
    assert general.locator(".status").inner_text() == "Sent"
    assert axe_violations(page) == []

    page.goto(live_server.url("/account/settings?lang=es"))
    look(page, "portal-purposes-es")


def test_preferences_page_kinds_of_email(family, live_server, browser_page):
    page = browser_page
    page.goto(live_server.url(f"/preferences/{family.token}"))
    look(page, "preferences-purposes")
    row = page.locator("#purposes tbody tr").filter(has_text="General")
    row.get_by_role("button", name="Turn off").click()
    page.wait_for_load_state()
    row = page.locator("#purposes tbody tr").filter(has_text="General")
    assert row.locator(".status").inner_text() == "Off"
    assert "this link is used up" in page.inner_text("#purposes")
    look(page, "preferences-purposes-spent")


def test_preferences_page_kinds_of_texts_and_calls(family, live_server, browser_page):
    """The covered cell number's table (texts and calls) at 390 px; a button turns one off."""
    page = browser_page
    page.goto(live_server.url(f"/preferences/{family.token}"))
    table = page.locator("#number-purposes table").first
    assert [t.strip() for t in table.locator("thead th").all_inner_texts()] == [
        "Messages about", "Texts", "Calls",
    ]  # fmt: skip
    look(page, "preferences-number-purposes")
    row = table.locator("tbody tr").filter(has_text="Attendance")
    row.locator("td").nth(1).get_by_role("button", name="Turn off").click()
    page.wait_for_load_state()
    row = page.locator("#number-purposes tbody tr").filter(has_text="Attendance")
    assert row.locator("td").nth(1).locator(".status").inner_text() == "Off"
    assert "this link is used up" in page.inner_text("#number-purposes")
    look(page, "preferences-number-purposes-spent")


def test_admin_contact_page_with_purposes(family, live_server, browser_page):
    page = browser_page
    sign_in_page(page, live_server, "org@example.org", PASSWORD)
    page.goto(live_server.url(f"/admin/contacts/{family.ana_id}/"))
    assert page.locator("#purposes").is_visible()
    # Axe on the whole page (Flask-Admin's layout too), at phone width after look().
    look(page, "admin-contact-purposes", portal=False)
    cell = page.locator("table.purposes-admin tbody tr").filter(has_text="Email")
    cell = cell.locator("td").nth(2)  # General
    cell.locator("summary").click()
    cell.get_by_label("Note (why they asked)").fill("asked at the front desk")
    cell.get_by_role("button", name="Turn off General (opt out)").click()
    page.wait_for_load_state()
    # The confirm step (issue 15): nothing changed yet, what is sent said, the note kept.
    assert "Nothing has changed yet." in page.inner_text("main")
    assert "Nothing is sent to the person" in page.inner_text("main")
    assert page.get_by_label("Note (why they asked)").input_value() == "asked at the front desk"
    look(page, "admin-purpose-confirm", portal=False)
    page.get_by_role("button", name="Yes, turn it off").click()
    page.wait_for_load_state()
    assert "General email to" in " ".join(page.locator(".alert").all_inner_texts())
    row = page.locator("table.purposes-admin tbody tr").filter(has_text="Email")
    assert row.locator("td").nth(2).locator(".badge").inner_text() == "Off"
    assert axe_violations(page) == []

    page.goto(live_server.url("/admin/settings/purposes"))
    look(page, "admin-settings-purposes", portal=False)


ADMIN_PAGES = {
    "contact": "/admin/contacts/{ana_id}/",
    "optouts": "/admin/optouts/",
    "activity": "/admin/activity/",
    "settings": "/admin/settings/",
    "settings-purposes": "/admin/settings/purposes",
    "import": "/admin/optouts/import/",
    "reports": "/admin/reports/",
    "integrations": "/admin/integrations/",
    "roster": "/admin/roster/",
    "outbox": "/admin/outbox/",
    "users": "/admin/users/",
    "invitations-job": "/admin/invitations/jobs/{invite_job}",
    "import-job": "/admin/optouts/import/jobs/{import_job}",
}


def _running_job(org, kind: str, **params) -> int:
    """A job part-way through (leased to a worker far in the future, so no worker of the live
    server takes it): the page shows its progress bar."""
    from datetime import timedelta

    from consent.models import Job, utcnow

    now = utcnow()
    job = Job(
        kind=kind,
        organization_id=org.id,
        status="running",
        total=200,
        done=80,
        params=params,
        started_at=now - timedelta(seconds=40),
        heartbeat_at=now,
        locked_until=now + timedelta(hours=1),
        worker="elsewhere",
    )
    db.session.add(job)
    db.session.commit()
    return job.id


@pytest.fixture
def part_way(world):
    """An invitations job and an import job part-way through, and a webhook endpoint (so the
    integrations page has its table): the ids the job pages' paths need."""
    from consent import accounts, imports, webhooks

    webhooks.create_endpoint(world.org, "https://hooks.example.org/consent", ["consent.opted_out"])
    db.session.commit()
    return {
        "invite_job": _running_job(world.org, accounts.INVITE_JOB),
        "import_job": _running_job(world.org, imports.JOB_KIND, filename="optouts.csv"),
    }


@pytest.mark.parametrize("language", ["en", "es"])
def test_admin_pages_are_axe_clean_as_whole_pages(
    family, part_way, live_server, browser_page, language
):
    """The admin's pages, whole (Flask-Admin's menu and buttons too), at desktop and 390 px:
    no serious or critical axe violation, `<html lang>` the staff member's language."""
    page = browser_page
    page.context.set_extra_http_headers({"Accept-Language": language})
    ids = {"ana_id": family.ana_id, **part_way}
    sign_in_page(page, live_server, "org@example.org", PASSWORD)
    problems = []
    for name, path in ADMIN_PAGES.items():
        page.goto(live_server.url(path.format(**ids)))
        assert page.locator("html").get_attribute("lang") == language, name
        look(page, f"admin-whole-{name}-{language}", axe=False, portal=False)
        for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(viewport)
            problems += [f"{name} at {width}: {v}" for v in axe_violations(page)]
    assert problems == [], "\n".join(problems)


def test_a_job_page_follows_the_job_in_place_without_a_meta_refresh(
    part_way, live_server, browser_page
):
    """With JavaScript the job's page updates its words and bar where they are (no reload, no
    meta refresh for axe to flag), and loads again once the job is done."""
    from consent.models import Job

    page = browser_page
    sign_in_page(page, live_server, "org@example.org", PASSWORD)
    page.goto(live_server.url(f"/admin/invitations/jobs/{part_way['invite_job']}"))
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    assert "80 of 200" in page.locator("#job-progress [role=status]").inner_text()
    page.evaluate("window.__same_page = true")
    with live_server.app.app_context():
        job = db.session.get(Job, part_way["invite_job"])
        job.done = 150
        db.session.commit()
        page.locator("#job-progress [role=status]").filter(has_text="150 of 200").wait_for()
        assert page.evaluate("window.__same_page") is True  # updated in place, not reloaded
        assert page.evaluate("document.getElementById('job-bar').value") == 150
        job = db.session.get(Job, part_way["invite_job"])
        job.status, job.done, job.result = "done", 200, {"sent": 200}
        db.session.commit()
    page.locator("#totals").wait_for()
    assert "Done: 200 of 200" in page.inner_text("main")
    assert axe_violations(page) == []
