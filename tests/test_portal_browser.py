"""The enrollment form and the settings page in Chromium, served by the live server."""

from __future__ import annotations

import pytest

from consent.extensions import db
from tests.accounts_helpers import link_in_mail
from tests.factories import make_org, make_site

pytestmark = pytest.mark.browser


@pytest.fixture
def schools(app):
    """An organization with one school, as enrollment needs."""
    org = make_org()
    make_site(org, "Maple Valley Elementary")
    db.session.commit()
    return org


def test_enroll_with_no_texts_then_settings_show_texts_off(
    schools, live_server, browser_page, mailbox
):
    """Pick Cell: the choice appears; submit without it: the error; choose No, enroll, open
    the emailed link: signed in, the settings page says texts are off."""
    page = browser_page
    problems = []  # script errors and CSP refusals (not HTTP statuses such as the 422)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    page.goto(live_server.url("/enroll"))

    choice = page.locator("#guardians-0-phones-0-texts")
    assert choice.is_hidden()  # no type picked yet: no choice shown
    assert page.locator('[data-block="guardian"][data-optional]').first.is_hidden()
    page.get_by_role("button", name="Add another guardian").click()
    assert page.locator('[data-block="guardian"][data-optional]').first.is_visible()

    page.fill("#guardians-0-first_name", "Mai")
    page.fill("#guardians-0-last_name", "Nguyen")
    page.fill("#guardians-0-email", "mai@example.org")
    page.fill("#guardians-0-phones-0-number", "(202) 555-0199")
    page.select_option("#guardians-0-phones-0-kind", "cell")
    assert choice.is_visible()
    assert "Msg & data rates may apply" in choice.inner_text()
    assert not page.is_checked("#guardians-0-phones-0-texts-0")
    assert not page.is_checked("#guardians-0-phones-0-texts-1")
    page.fill("#students-0-first_name", "Kim")
    page.fill("#students-0-last_name", "Nguyen")
    page.select_option("#students-0-site", label="Maple Valley Elementary")
    page.select_option("#students-0-grade", "3")
    page.fill("#password", "long-enough-pass")
    page.fill("#confirm", "long-enough-pass")
    # The browser would stop a required radio; the server's answer is what is tested here.
    page.evaluate("document.querySelectorAll('input[type=radio]').forEach(e => e.required = false)")
    page.get_by_role("button", name="Enroll", exact=True).click()

    error = page.locator("#guardians-0-phones-0-texts-error")
    assert error.is_visible()
    assert "Choose whether this cell number may get text messages" in error.inner_text()
    assert page.locator("#guardians-0-phones-0-texts").is_visible()

    page.get_by_label("No, do not send me text messages").first.check()
    page.fill("#password", "long-enough-pass")
    page.fill("#confirm", "long-enough-pass")
    page.get_by_role("button", name="Enroll", exact=True).click()
    page.wait_for_url("**/enroll/sent")
    assert "Check your email: we sent a link to mai@example.org" in page.inner_text("main")

    page.goto(live_server.url(link_in_mail(mailbox, "mai@example.org", "/account/verify/")))
    page.get_by_role("button", name="Confirm and sign in").click()
    page.wait_for_url("**/account/settings")
    row = page.locator("#toggle-phone-1-text")
    assert row.locator(".status").inner_text() == "Texts off"
    # A number typed at enrollment is not confirmed yet: its toggle waits for the code.
    assert row.get_by_role("button", name="Turn on").is_disabled()
    assert "Not confirmed yet" in page.inner_text("#unconfirmed-phone-1")
    assert problems == []
