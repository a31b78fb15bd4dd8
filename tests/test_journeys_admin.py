"""The admin journeys in a real browser (Chromium through Playwright, against the app served on
127.0.0.1): the organization team works the opt-out list end to end, and a site team member
and a staff member see only what their roles allow. Every admin page met is screenshotted at
phone and desktop widths and checked for sideways overflow and 44 px touch targets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from consent import ledger
from consent.addresses import format_phone
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, Source, Status
from tests.factories import PASSWORD
from tests.live import look

pytestmark = pytest.mark.browser


@pytest.fixture
def desk(world):
    """The admin world, plus a cell that replied STOP; plain values only (the session closes
    when the server starts)."""
    blocked = world.near.contacts[0].phones[0].number
    ledger.opt_out(
        world.org,
        Channel.TEXT,
        blocked,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient(blocked),
        carrier_block=True,
        confirm=False,
        notify_org=False,
    )
    db.session.commit()
    return SimpleNamespace(
        org=world.org.id,
        blocked=blocked,
        email=world.near.contacts[1].emails[0].address,
        near_name=world.near.contacts[0].last_name,
        far_name=world.far.contacts[0].last_name,
        far_number=world.far.contacts[0].phones[0].number,
    )


def status_of(org_id, channel, address):
    db.session.expire_all()
    state = ledger.current(org_id, channel, address)
    result = state.status if state else None
    db.session.rollback()
    return result


def sign_in(page, live_server, email):
    page.goto(live_server.url("/login"))
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/")


def admin_look(page, name):
    """Screenshots, overflow, touch targets and axe on the whole page."""
    look(page, f"admin-{name}", portal=False)


def menu_of(page) -> str:
    """The admin menu's words (folded away behind the toggle on a phone)."""
    return " | ".join(
        page.locator("nav a").evaluate_all("links => links.map(a => a.textContent.trim())")
    )


def flashes(page) -> str:
    return page.locator(".alert").all_inner_texts()


def test_admin_searches_adds_imports_and_opts_back_in(desk, live_server, pages, mailbox):
    """Search by digits; add an opt-out; import a CSV; try to opt back in a STOP-blocked
    number and read why not; opt back in the admin-added address; the recipient confirms
    from the emailed link and is opted in."""
    page = pages.new()
    sign_in(page, live_server, "org@example.org")
    admin_look(page, "home")

    # Search by the digits alone: the STOP-blocked number is found, marked as such.
    page.goto(live_server.url("/admin/optouts/"))
    admin_look(page, "optouts")
    digits = desk.blocked[2:]  # +1 and the national digits
    page.fill("#search", digits)
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()
    row = page.locator("tr", has_text=format_phone(desk.blocked))
    assert row.count() == 1
    assert "Carrier block (replied STOP)" in row.inner_text()
    admin_look(page, "optouts-search")

    # Opt Back In of the STOP-blocked number: refused, with the reason.
    row.locator('a[href*="/row/"]').click()
    page.wait_for_load_state()
    reason = page.locator(".alert-warning").inner_text()
    assert "replied STOP" in reason and "START" in reason
    assert page.get_by_role("button", name="Send the confirmation").count() == 0
    admin_look(page, "optouts-row-blocked")

    # Add Opt-Out for an email address, with a note.
    page.goto(live_server.url("/admin/optouts/add/"))
    admin_look(page, "optouts-add")
    page.get_by_label("Phone number or email address").fill(desk.email)
    page.get_by_label("Email", exact=True).check()
    page.get_by_label("Note (who asked, and how)").fill("Asked at the front desk")
    page.get_by_role("button", name="Add Opt-Out").click()
    page.wait_for_load_state()
    assert "Nothing has changed yet" in page.content()  # the first click asks first
    assert status_of(desk.org, Channel.EMAIL, desk.email) is None
    page.get_by_role("button", name="Yes, opt out").click()
    page.wait_for_url("**/admin/optouts/")
    assert any("is now opted out of email" in text for text in flashes(page))
    assert status_of(desk.org, Channel.EMAIL, desk.email) == Status.OPTED_OUT

    # Import a CSV: preview, then import.
    page.goto(live_server.url("/admin/optouts/import/"))
    admin_look(page, "optouts-import")
    csv = f"phone\n{desk.far_number}\nnot a number\n".encode()
    page.set_input_files(
        'input[type="file"]', files=[{"name": "optouts.csv", "mimeType": "text/csv", "buffer": csv}]
    )
    page.get_by_label("Text messages").check()
    page.get_by_role("button", name="Preview").click()
    page.wait_for_load_state()
    assert "Preview of optouts.csv" in page.inner_text("h1")
    admin_look(page, "optouts-import-preview")
    page.get_by_role("button", name="Import 1 rows").click()
    page.wait_for_url("**/import/jobs/*")  # a background job: its progress page first
    from consent import jobs

    while jobs.run_one():
        pass
    page.wait_for_url("**/import/batch/*", timeout=10_000)  # the page refreshes itself
    admin_look(page, "optouts-import-report")
    assert status_of(desk.org, Channel.TEXT, desk.far_number) == Status.OPTED_OUT

    # Opt Back In the admin-added address: a confirmation goes to the person.
    mailbox.handler.messages.clear()
    page.goto(live_server.url("/admin/optouts/"))
    page.fill("#search", desk.email)
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()
    page.locator("tr", has_text=desk.email).locator('a[href*="/row/"]').click()
    page.wait_for_load_state()
    admin_look(page, "optouts-row")
    page.get_by_label("This person asked me to opt them back in").check()
    page.get_by_label("Note").fill("Called the office")
    page.get_by_role("button", name="Send the confirmation").click()
    page.wait_for_url("**/admin/optouts/")
    assert any("Nothing changes until they confirm" in text for text in flashes(page))
    assert status_of(desk.org, Channel.EMAIL, desk.email) == Status.OPTED_OUT

    # The recipient, on their own phone, confirms from the email as it arrived.
    (message,) = mailbox.to(desk.email)
    (link,) = mailbox.links(message, "/confirm/")
    recipient = pages.new()
    recipient.goto(link)
    recipient.get_by_role("button", name="Confirm").click()
    recipient.wait_for_load_state()
    assert "Thank you" in recipient.inner_text("main")
    assert status_of(desk.org, Channel.EMAIL, desk.email) == Status.OPTED_IN

    for path, name in (
        ("/admin/contacts/", "contacts"),
        ("/admin/students/", "students"),
        ("/admin/reports/", "reports"),
        ("/admin/activity/", "activity"),
        ("/admin/outbox/", "outbox"),
        ("/admin/settings/", "settings"),
        ("/admin/users/", "users"),
    ):
        page.goto(live_server.url(path))
        admin_look(page, name)


def test_site_team_and_staff_see_only_what_their_roles_allow(desk, live_server, pages):
    """The site team: the opt-out list and their own site's people, nothing of the
    organization team's. Staff: their site's people read-only, no opt-out list."""
    site = pages.new()
    sign_in(site, live_server, "site@example.org")
    menu = menu_of(site)
    assert "Opt-Out List" in menu and "Contacts" in menu
    for hidden in ("Users", "Settings", "Activity", "Outbox", "Reports"):
        assert hidden not in menu, hidden
    admin_look(site, "site-home")
    site.goto(live_server.url("/admin/contacts/"))
    people = site.inner_text("body")
    assert desk.near_name in people and desk.far_name not in people
    admin_look(site, "site-contacts")
    for path in ("/admin/optouts/import/", "/admin/users/", "/admin/activity/"):
        assert site.goto(live_server.url(path)).status == 403, path
    assert site.goto(live_server.url("/admin/optouts/")).status == 200

    staff = pages.new()
    sign_in(staff, live_server, "staff@example.org")
    menu = menu_of(staff)
    assert "Contacts" in menu and "Opt-Out List" not in menu
    staff.goto(live_server.url("/admin/contacts/"))
    assert desk.near_name in staff.inner_text("body")
    assert desk.far_name not in staff.inner_text("body")
    admin_look(staff, "staff-contacts")
    for path in ("/admin/optouts/", "/admin/optouts/add/", "/admin/users/"):
        assert staff.goto(live_server.url(path)).status == 403, path
