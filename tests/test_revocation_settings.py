"""The wording carriers and mail providers expect: texting terms and privacy links in the
texting disclosure, the postal address in every email's footer, and the revoke-all rule, each an
organization setting saved by the organization team only."""

from __future__ import annotations

import html

import pytest
import sqlalchemy as sa

from consent import ledger, outbox
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, Organization, Source
from tests.conftest import csrf_token
from tests.factories import make_org
from tests.test_admin_outbox_settings_users import _settings_data

TERMS = "https://mvsd.example.org/texting-terms"
PRIVACY = "https://mvsd.example.org/privacy"
ADDRESS = "100 Main St, Maple Valley, WA 98038"


def _org() -> Organization:
    db.session.expire_all()
    return db.session.scalars(sa.select(Organization).order_by(Organization.id)).first()


def test_org_team_saves_terms_privacy_address_and_revoke_all(client, world):
    world.login(client, "org")
    page = client.get("/admin/settings/").get_data(as_text=True)
    assert "2027-01-31" in page  # the revoke-all help line gives the date
    for label in ("Texting terms", "Privacy policy", "Postal address"):
        assert label in page
    response = client.post(
        "/admin/settings/",
        data=_settings_data(
            client, terms_url=TERMS, privacy_url=PRIVACY, postal_address=ADDRESS, revoke_all="y"
        ),
    )
    assert response.status_code == 302
    org = db.session.get(Organization, world.org.id, populate_existing=True)
    assert (org.terms_url, org.privacy_url, org.postal_address, org.revoke_all) == (
        TERMS,
        PRIVACY,
        ADDRESS,
        True,
    )


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:text/html,hi", "mvsd.example.org/terms", "https://"]
)
def test_a_link_that_is_not_a_web_address_is_refused(client, world, url):
    """Only http(s) addresses with a host: a javascript: link would run on parents' pages."""
    world.login(client, "org")
    response = client.post("/admin/settings/", data=_settings_data(client, terms_url=url))
    assert response.status_code == 200
    assert "Give a web address that starts with https://" in response.get_data(as_text=True)
    assert db.session.get(Organization, world.org.id, populate_existing=True).terms_url == ""


@pytest.mark.parametrize("who", ["site", "staff", "parent"])
def test_only_the_org_team_may_change_them(client, world, who):
    """A site admin, staff or a parent cannot set the links or the rule."""
    world.login(client, who)
    token = csrf_token(client, "/account/settings") if who == "parent" else "x"
    data = {"csrf_token": token, "terms_url": TERMS, "revoke_all": "y"}
    response = client.post("/admin/settings/", data=data)
    assert response.status_code in (302, 400, 403, 404)
    org = db.session.get(Organization, world.org.id, populate_existing=True)
    assert org.terms_url == "" and org.revoke_all is False


def test_logged_out_cannot_change_them(client, world):
    response = client.post("/admin/settings/", data={"terms_url": TERMS})
    assert response.status_code in (302, 400, 401, 403)
    assert db.session.get(Organization, world.org.id, populate_existing=True).terms_url == ""


def test_enrollment_disclosure_links_to_the_terms_and_privacy_policy(app, client):
    make_org(terms_url=TERMS, privacy_url=PRIVACY)
    db.session.commit()
    page = client.get("/enroll").get_data(as_text=True)
    assert f'<a href="{TERMS}" rel="noopener">' in page
    assert f'<a href="{PRIVACY}" rel="noopener">' in page
    assert "Texting terms:" in html.unescape(page)


def test_disclosure_without_links_reads_as_before(app, client):
    make_org()
    db.session.commit()
    page = html.unescape(client.get("/enroll").get_data(as_text=True))
    assert "Reply STOP to opt out, HELP for help." in page and "Texting terms" not in page


def test_every_email_footer_carries_the_postal_address(app, mailbox):
    """CAN-SPAM: the plain and HTML parts of an email end with the district's postal address."""
    org = make_org(postal_address=ADDRESS)
    ledger.opt_out(
        org, Channel.EMAIL, "mai@example.org", source=Source.PORTAL, actor=Actor.recipient()
    )
    db.session.commit()
    outbox.deliver()
    (message,) = mailbox.to("mai@example.org")
    assert ADDRESS in mailbox.text(message)
    html_part = message.get_body(preferencelist=("html",)).get_content()
    assert ADDRESS in html_part
    (notice,) = mailbox.to("office@example.org")
    assert ADDRESS in mailbox.text(notice)
