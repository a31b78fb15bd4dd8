"""Script in every name and note field is shown as text, in the portal and in the admin panel:
family, contact and student names, notes on opt-outs, the user agent in the activity log, an
import file's name and rows. A browser test checks that no script runs."""

from __future__ import annotations

import html
import io
import re

import pytest
import sqlalchemy as sa
from markupsafe import escape

from consent import imports as optout_import
from consent import ledger
from consent.extensions import db
from consent.ledger import Actor, Origin
from consent.models import ConsentState, ImportBatch, Role, Source
from tests import factories
from tests.conftest import Auth

PAYLOADS = [
    "<script>alert('xss-1')</script>",
    '"><img src=x onerror=alert("xss-2")>',
    "</textarea><svg onload=alert('xss-3')>",
    "'-alert('xss-4')-'",
]


@pytest.fixture
def hostile(app):
    """An organization whose every free-text field that pages show holds script."""
    org = factories.make_org(help_contact=PAYLOADS[0])
    site = factories.make_site(org, name="Site " + PAYLOADS[1])
    family = factories.make_family(org, site, PAYLOADS[0], contacts=2, students=1)
    first, second = family.contacts
    first.first_name, first.last_name = PAYLOADS[1], PAYLOADS[2]
    second.first_name = PAYLOADS[3]
    student = family.students[0]
    student.first_name, student.last_name = PAYLOADS[2], PAYLOADS[0]
    factories.make_user(org, "parent@example.org", Role.PARENT, contact=first, name=PAYLOADS[1])
    admin = factories.make_user(org, "admin@example.org", Role.ORG, name=PAYLOADS[2])
    db.session.flush()
    ledger.opt_out(
        org,
        "text",
        second.phones[0].number,
        source=Source.ADMIN,
        actor=Actor.for_user(admin),
        note=PAYLOADS[1],
        origin=Origin("127.0.0.1", PAYLOADS[0]),
    )
    ledger.opt_out(
        org,
        "email",
        second.emails[0].address,
        source=Source.PORTAL,
        actor=Actor.recipient(PAYLOADS[3]),
        note=PAYLOADS[2],
        origin=Origin("127.0.0.1", PAYLOADS[2]),
    )
    csv = ("Phone,Note\n(202) 555-0111," + PAYLOADS[0] + "\n" + PAYLOADS[1] + ",x\n").encode()
    optout_import.import_file(
        org,
        io.BytesIO(csv),
        PAYLOADS[2] + ".csv",
        "all",
        actor=Actor.for_user(admin),
        note=PAYLOADS[3],
    )
    db.session.commit()
    state = db.session.scalars(
        sa.select(ConsentState).where(ConsentState.note.is_not(None))
    ).first()
    return {
        "family": family,
        "student": student,
        "contact": second,
        "ids": {"student": student.id, "contact": second.id, "state": state.id},
    }


def admin_pages(client, hostile) -> dict[str, str]:
    """The admin pages where these names and notes appear, as an org admin sees them."""
    state = db.session.scalars(
        sa.select(ConsentState).where(ConsentState.note.is_not(None))
    ).first()
    batch = db.session.scalars(sa.select(ImportBatch)).one()
    paths = [
        "/admin/",
        "/admin/optouts/",
        f"/admin/optouts/row/{state.id}/",
        "/admin/contacts/",
        f"/admin/contacts/{hostile['contact'].id}/",
        "/admin/students/",
        f"/admin/students/{hostile['student'].id}/",
        "/admin/activity/",
        "/admin/outbox/",
        "/admin/reports/",
        "/admin/reports/parents/opted_out/",
        "/admin/users/",
        "/admin/settings/",
        f"/admin/optouts/import/batch/{batch.id}",
        "/admin/contacts/?q=" + PAYLOADS[0],
        "/admin/optouts/?search=" + PAYLOADS[1],
    ]
    pages = {}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        pages[path] = response.get_data(as_text=True)
    return pages


def portal_pages(client, hostile) -> dict[str, str]:
    family = hostile["family"]
    paths = ["/account/settings", "/account/contacts", "/account/students"]
    paths += [f"/account/contacts/{c.id}" for c in family.contacts[1:]]
    paths += [f"/account/students/{s.id}" for s in family.students]
    return {p: client.get(p).get_data(as_text=True) for p in paths}


def check_escaped(pages: dict[str, str], expect: list[str]) -> None:
    """No payload appears as markup on any page; each in `expect` appears escaped somewhere."""
    seen = set()
    for path, page in pages.items():
        for payload in PAYLOADS:
            if "<" in payload or '"' in payload:
                assert payload not in page, (path, payload)
            if str(escape(payload)) in page:
                seen.add(payload)
        assert not re.search(r"<(script|svg|img)[^>]*(alert|onerror|onload)", page), path
    assert set(expect) <= seen, set(expect) - seen


def test_names_and_notes_are_escaped_on_every_admin_page(client, hostile):
    """Family, contact and student names, notes, the user agent and the import file's name
    and rows show as text in the admin panel; searching for script finds nothing and echoes
    it escaped."""
    Auth(client).login("admin@example.org", factories.PASSWORD)
    pages = admin_pages(client, hostile)
    check_escaped(pages, PAYLOADS)
    assert html.unescape(PAYLOADS[1]) in html.unescape(
        "".join(pages[p] for p in pages if "/optouts/" in p)
    )


def test_names_are_escaped_on_every_portal_page(client, hostile):
    """The parent sees their family's script-like names as text on every account page."""
    Auth(client).login("parent@example.org", factories.PASSWORD)
    pages = portal_pages(client, hostile)
    check_escaped(pages, PAYLOADS[:4])


@pytest.mark.browser
def test_no_script_runs_in_the_browser_on_portal_or_admin_pages(hostile, live_server, browser_page):
    """In Chromium, every portal and admin page with script-like names opens without a
    dialog, and the names read as text."""
    from tests.live import sign_in_page

    page = browser_page
    ran: list[str] = []
    page.on("dialog", lambda dialog: (ran.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda message: "xss" in message.text and ran.append(message.text))
    page.on("pageerror", lambda error: ran.append(str(error)))

    ids = hostile["ids"]
    portal = ["/account/settings", "/account/contacts", "/account/students"]
    portal += [f"/account/contacts/{ids['contact']}", f"/account/students/{ids['student']}"]
    admin = ["/admin/", "/admin/optouts/", f"/admin/optouts/row/{ids['state']}/"]
    admin += ["/admin/contacts/", f"/admin/contacts/{ids['contact']}/"]
    admin += [f"/admin/students/{ids['student']}/", "/admin/activity/", "/admin/users/"]

    sign_in_page(page, live_server, "parent@example.org", factories.PASSWORD)
    texts = []
    for path in portal:
        page.goto(live_server.url(path))
        texts.append(page.inner_text("body"))
    page.context.clear_cookies()
    sign_in_page(page, live_server, "admin@example.org", factories.PASSWORD)
    for path in admin:
        page.goto(live_server.url(path))
        texts.append(page.inner_text("body"))
    assert ran == []
    shown = "\n".join(texts)
    for payload in PAYLOADS:
        assert payload in shown, payload
