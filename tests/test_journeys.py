"""Every journey in a real browser (Chromium through Playwright, against the app served on
127.0.0.1): parents, recipients, admins. Each page met on the way is screenshotted at phone
and desktop widths and checked for sideways overflow, 44 px touch targets and (parent and
recipient pages) axe-core's serious and critical violations."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from consent import ledger, notifications
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, ConsentEvent, Organization, Role, Source, Status
from tests.accounts_helpers import link_in_mail
from tests.factories import PASSWORD, make_family, make_org, make_site, make_user
from tests.live import look

pytestmark = pytest.mark.browser


@pytest.fixture
def family(app):
    """The Riveras: Ana signs in; Parent2 Rivera and a student, each with a cell and email."""
    org = make_org()
    site = make_site(org, "Maple Valley Elementary")
    rivera = make_family(org, site, "Rivera", contacts=2, students=1)
    ana, other = rivera.contacts
    kid = rivera.students[0]
    for person in (ana, other, kid):
        ledger.opt_in(
            org,
            Channel.TEXT,
            person.phones[0].number,
            source=Source.ENROLLMENT,
            actor=Actor.system("test"),
            confirm=False,
        )
    make_user(org, "ana@example.org", Role.PARENT, contact=ana, name="Ana Rivera")
    db.session.commit()

    def plain(person):  # the session closes when the server starts: keep plain values
        phone = person.phones[0]
        return SimpleNamespace(
            name=person.name,
            phone_id=phone.id,
            number=phone.number,
            email=person.emails[0].address if person.emails else None,
        )

    return SimpleNamespace(org=org.id, ana=plain(ana), other=plain(other), kid=plain(kid))


def state(org, channel, address):
    """The consent state as the database has it now (then the read is let go)."""
    db.session.expire_all()
    current = ledger.current(org, channel, address)
    result = (current.status, current.carrier_block) if current else (None, False)
    db.session.rollback()
    return result


def sign_in(page, live_server, email, password=PASSWORD):
    page.goto(live_server.url("/login"))
    page.fill("#email", email)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def tab_to(page, element_id: str, limit: int = 80) -> None:
    """Press Tab until the element with this id has the focus."""
    for _ in range(limit):
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{element_id}")


def test_parent_enrolls_by_keyboard_with_a_cell_and_yes_then_sees_that_choice(
    app, live_server, browser_page, mailbox
):
    """The whole enrollment form with the keyboard alone (Tab, typing, arrows, Space, Enter):
    a Cell with Yes; then the emailed link signs in: the settings page says texts are allowed."""
    org = make_org()
    make_site(org, "Maple Valley Elementary")
    db.session.commit()
    page = browser_page
    page.goto(live_server.url("/enroll"))
    look(page, "enroll")

    page.keyboard.press("Tab")  # the skip link first
    assert page.evaluate("document.activeElement.className") == "skip-link"
    typed = [
        ("family_name", "Okafor"),
        ("guardians-0-first_name", "Ngozi"),
        ("guardians-0-last_name", "Okafor"),
        ("guardians-0-relationship", "Mother"),
        ("guardians-0-email", "ngozi@example.org"),
        ("guardians-0-phones-0-number", "(202) 555-0177"),
    ]
    for element_id, words in typed:
        tab_to(page, element_id)
        page.keyboard.type(words)
    tab_to(page, "guardians-0-phones-0-kind")
    page.keyboard.press("ArrowDown")  # "Cell", the first kind after "Choose a type"
    assert page.input_value("#guardians-0-phones-0-kind") == "cell"
    assert page.locator("#guardians-0-phones-0-texts").is_visible()
    tab_to(page, "guardians-0-phones-0-texts-0")
    page.keyboard.press("Space")
    assert page.is_checked("#guardians-0-phones-0-texts-0")  # Yes
    for element_id, words in (
        ("students-0-first_name", "Chidi"),
        ("students-0-last_name", "Okafor"),
    ):
        tab_to(page, element_id)
        page.keyboard.type(words)
    tab_to(page, "students-0-site")
    page.keyboard.press("ArrowDown")
    tab_to(page, "students-0-grade")
    for _ in range(4):  # Pre-K, K, 1, 2
        page.keyboard.press("ArrowDown")
    for element_id in ("password", "confirm"):
        tab_to(page, element_id)
        page.keyboard.type("long-enough-pass")
    page.keyboard.press("Enter")
    page.wait_for_url("**/enroll/sent")
    assert "Check your email: we sent a link to ngozi@example.org" in page.inner_text("main")
    look(page, "enroll-sent")

    page.goto(live_server.url(link_in_mail(mailbox, "ngozi@example.org", "/account/verify/")))
    look(page, "account-verify")
    page.get_by_role("button", name="Confirm and sign in").click()
    page.wait_for_url("**/account/settings")
    row = page.locator("[id^=toggle-phone-][id$=-text]")
    assert row.locator(".status").inner_text() == "Texts allowed"
    assert row.get_by_role("button", name="Turn off").is_visible()
    look(page, "account-settings")
    assert state(org, Channel.TEXT, "+12025550177") == (Status.OPTED_IN, False)


def test_enrollment_errors_are_tied_to_their_fields_for_a_screen_reader(
    app, live_server, browser_page
):
    """Sent empty: each error is the field's accessible description, the field is marked
    invalid, and the page says nothing was saved."""
    org = make_org()
    make_site(org)
    db.session.commit()
    page = browser_page
    page.goto(live_server.url("/enroll"))
    page.evaluate("document.getElementById('enroll-form').noValidate = true")
    page.get_by_role("button", name="Enroll", exact=True).click()
    page.wait_for_load_state()
    assert "Nothing was saved" in page.inner_text(".flashes")
    first = page.locator("#guardians-0-first_name")
    assert first.get_attribute("aria-invalid") == "true"
    described = first.get_attribute("aria-describedby").split()
    assert "guardians-0-first_name-error" in described
    assert "Enter the first name." in page.inner_text("#guardians-0-first_name-error")
    look(page, "enroll-errors")


def test_parent_turns_texts_off_for_self_another_contact_and_a_student(
    family, live_server, browser_page
):
    """Ana turns texts off on her own page, Parent2's page and her student's page; each row
    then says "Texts off" in words, and each number is opted out."""
    page = browser_page
    sign_in(page, live_server, "ana@example.org")
    page.wait_for_url("**/account/settings")

    people = [
        (family.ana, None, "account-settings-parent"),
        (family.other, "/account/contacts", "account-contact"),
        (family.kid, "/account/students", "account-student"),
    ]
    for person, list_path, name in people:
        if list_path:
            page.goto(live_server.url(list_path))
            look(page, list_path.strip("/").replace("/", "-"))
            verb = "Edit" if "contacts" in list_path else "View"
            page.get_by_role("link", name=f"{verb} {person.name}").click()
            page.wait_for_load_state()
        row = page.locator(f"#toggle-phone-{person.phone_id}-text")
        assert row.locator(".status").inner_text() == "Texts allowed"
        row.get_by_role("button", name="Turn off").click()
        page.wait_for_load_state()
        row = page.locator(f"#toggle-phone-{person.phone_id}-text")
        assert row.locator(".status").inner_text() == "Texts off"
        assert row.locator(".status").get_attribute("data-status") == "opted_out"
        assert "are off" in page.inner_text(".flashes")
        look(page, name)
        assert state(family.org, Channel.TEXT, person.number) == (Status.OPTED_OUT, False)


def test_recipient_confirms_from_the_link_in_the_email_that_arrived(
    family, live_server, browser_page, mailbox
):
    """An opted-out email address asks to opt back in; the confirmation email arrives at the
    SMTP server; its link opens the confirm page; Confirm opts the address in."""
    address = family.other.email
    org = db.session.get(Organization, family.org)
    ledger.opt_out(
        org, Channel.EMAIL, address, source=Source.ONE_CLICK, actor=Actor.recipient(address)
    )
    db.session.commit()
    db.session.close()
    mailbox.handler.messages.clear()

    page = browser_page
    page.goto(live_server.url("/opt-back-in"))
    look(page, "opt-back-in")
    page.get_by_label("Email", exact=True).check()
    page.get_by_label("Your email address or phone number").fill(address)
    page.get_by_role("button", name="Send me a confirmation").click()
    page.wait_for_load_state()
    assert "Check your messages" in page.inner_text("main")
    look(page, "opt-back-in-sent")

    (message,) = mailbox.to(address)
    (link,) = mailbox.links(message, "/confirm/")
    assert link.startswith(live_server.base_url)
    page.goto(link)
    look(page, "confirm")
    assert state(family.org, Channel.EMAIL, address)[0] == Status.OPTED_OUT  # GET: no change
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_load_state()
    assert "Thank you" in page.inner_text("main")
    assert page.locator(".status").inner_text() == "Opted in"
    look(page, "confirmed")
    assert state(family.org, Channel.EMAIL, address) == (Status.OPTED_IN, False)

    page.goto(link)  # the link is spent now
    assert "This link has already been used" in page.inner_text("main")
    look(page, "bad-link")


def test_recipient_uses_the_preferences_page_and_the_one_click_page(
    family, live_server, browser_page
):
    """From the links an email to Parent2 carries: "No" on the preferences page turns texts
    off for the number; the unsubscribe page's button stops email."""
    address = family.other.email
    number = family.other.number
    _headers, unsubscribe_url, preferences_url = notifications.email_headers(
        db.session.get(Organization, family.org), address
    )
    db.session.rollback()
    page = browser_page

    page.goto(preferences_url)
    look(page, "preferences")
    assert "Receives texts" in page.inner_text("main")
    page.get_by_role("button", name="No, do not send me text messages").click()
    page.wait_for_load_state()
    assert "Saved. We will not send text messages" in page.inner_text(".flashes")
    assert "Opted out" in page.inner_text("main")
    look(page, "preferences-saved")
    assert state(family.org, Channel.TEXT, number) == (Status.OPTED_OUT, False)

    page.goto(unsubscribe_url)
    look(page, "unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_load_state()
    assert "You are unsubscribed" in page.inner_text("main")
    look(page, "unsubscribed")
    assert state(family.org, Channel.EMAIL, address) == (Status.OPTED_OUT, False)
    db.session.expire_all()
    sources = db.session.scalars(
        sa.select(ConsentEvent.source).where(ConsentEvent.address.in_([address, number]))
    ).all()
    db.session.rollback()
    assert Source.ONE_CLICK in sources or Source.EMAIL_LINK in sources


def test_pages_in_spanish_in_the_browser(family, live_server, pages):
    """A Spanish browser reads the enrollment page in Spanish; the switch turns it English
    and keeps the page."""
    page = pages.new(locale="es-MX", extra_http_headers={"Accept-Language": "es-MX,es;q=0.9"})
    page.goto(live_server.url("/enroll"))
    assert page.locator("h1").inner_text() == "Inscriba a su familia"
    assert page.get_attribute("html", "lang") == "es"
    look(page, "enroll-es")
    page.get_by_role("link", name="English").click()
    page.wait_for_url("**/enroll?lang=en")
    assert page.locator("h1").inner_text() == "Enroll your family"
