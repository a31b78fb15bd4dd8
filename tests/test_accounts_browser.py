"""Account journeys in Chromium: claiming an account from an emailed invitation, and resetting
a forgotten password, each link read from the real mailbox."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from consent.extensions import db
from consent.models import Role
from tests.accounts_helpers import link_in_mail
from tests.factories import PASSWORD, make_family, make_org, make_site, make_user
from tests.live import look, sign_in_page

pytestmark = pytest.mark.browser

NEW_PASSWORD = "a-brand-new-password"


@pytest.fixture
def roster(app):
    """The Okafors from the roster (no account yet), Ana with an account, an org admin."""
    org = make_org()
    site = make_site(org, "Maple Valley Elementary")
    okafor = make_family(org, site, "Okafor", contacts=1)
    rivera = make_family(org, site, "Rivera", contacts=1)
    make_user(org, "ana@example.org", Role.PARENT, contact=rivera.contacts[0], name="Ana Rivera")
    make_user(org, "admin@example.org", Role.ORG, name="Dana Admin")
    db.session.commit()
    contact = okafor.contacts[0]
    return SimpleNamespace(
        contact_id=contact.id, name=contact.name, email=contact.emails[0].address
    )


def test_a_parent_claims_an_account_from_an_emailed_invitation(roster, live_server, pages, mailbox):
    """The admin presses "Send an invitation" on the contact's page; the parent opens the
    emailed link, chooses a password and lands signed in on their settings."""
    admin = pages.new()
    sign_in_page(admin, live_server, "admin@example.org", PASSWORD)
    admin.goto(live_server.url(f"/admin/contacts/{roster.contact_id}/"))
    admin.get_by_role("button", name=f"Send an invitation to {roster.email}").click()
    admin.wait_for_load_state()
    assert f"Invitation sent to {roster.email}" in admin.inner_text("body")

    parent = pages.new()
    parent.goto(live_server.url(link_in_mail(mailbox, roster.email, "/account/claim/")))
    assert roster.email in parent.inner_text("main")
    look(parent, "account-claim")
    parent.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    parent.get_by_label("New password again").fill(NEW_PASSWORD)
    parent.get_by_role("button", name="Make my account").click()
    parent.wait_for_url("**/account/settings")
    assert "Your account is ready" in parent.inner_text("main")
    assert roster.name in parent.inner_text("main")
    look(parent, "account-settings-claimed")


def test_a_parent_resets_a_forgotten_password(roster, live_server, browser_page, mailbox):
    """ "Forgot your password?" on the sign-in page; the emailed link; a new password; the
    parent is signed in, and later signs in with the new password."""
    page = browser_page
    page.goto(live_server.url("/login"))
    page.get_by_role("link", name="Forgot your password?").click()
    page.wait_for_url("**/account/reset")
    look(page, "account-reset-ask")
    page.get_by_label("Email").fill("ana@example.org")
    page.get_by_role("button", name="Send me a link").click()
    page.wait_for_load_state()
    assert "Check your email" in page.inner_text("main")
    look(page, "account-reset-sent")

    page.goto(live_server.url(link_in_mail(mailbox, "ana@example.org", "/account/reset/")))
    look(page, "account-reset")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Save the new password").click()
    page.wait_for_url("**/account/settings")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    sign_in_page(page, live_server, "ana@example.org", NEW_PASSWORD)
    page.wait_for_url("**/account/settings")
