"""A small organization for the admin tests: two sites, an admin of each role, a family at each
site with cells, emails and text opt-ins (the demo data is too slow to load per test)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from consent import ledger
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, Family, Organization, Role, Site, Source, User
from tests import factories

PASSWORD = factories.PASSWORD
ROLES = ("org", "site", "staff")


@dataclass
class World:
    org: Organization
    elementary: Site
    high: Site
    users: dict[str, User]  # org, site, staff (Elementary), site_high, parent
    near: Family  # a family at Elementary
    far: Family  # a family at High

    def login(self, client, who: str):
        """Sign `client` in as one of the users ("org", "site", "staff", "site_high", "parent")."""
        from tests.conftest import Auth

        response = Auth(client).login(self.users[who].email, PASSWORD)
        assert response.status_code == 302, "sign-in failed"
        return response


def build() -> World:
    """Create the world and commit it."""
    org = factories.make_org()
    elementary = factories.make_site(org, "Maple Valley Elementary")
    high = factories.make_site(org, "Maple Valley High")
    near = factories.make_family(org, elementary, name="Rivera")
    far = factories.make_family(org, high, name="Okafor")
    users = {
        "org": factories.make_user(org, "org@example.org", Role.ORG, name="Olga Org"),
        "site": factories.make_user(
            org, "site@example.org", Role.SITE, site=elementary, name="Sam Site"
        ),
        "staff": factories.make_user(
            org, "staff@example.org", Role.STAFF, site=elementary, name="Terry Staff"
        ),
        "site_high": factories.make_user(
            org, "sitehigh@example.org", Role.SITE, site=high, name="Hal High"
        ),
        "parent": factories.make_user(
            org, "parent@example.org", Role.PARENT, contact=near.contacts[0], name="Ana Rivera"
        ),
    }
    actor = Actor.system("test set-up")
    for family in (near, far):
        for person in [*family.contacts, *family.students]:
            for phone in person.phones:
                ledger.opt_in(
                    org,
                    Channel.TEXT,
                    phone.number,
                    source=Source.ENROLLMENT,
                    actor=actor,
                    confirm=False,
                    notify_org=False,
                )
    db.session.commit()
    return World(org, elementary, high, users, near, far)


@pytest.fixture
def world(app):
    """Two sites, an admin of each role, a family at each site (texts opted in)."""
    return build()


def session_token(client) -> str:
    """A valid CSRF token for the client's session, for pages of a role that shows no form."""
    import secrets

    from flask import current_app
    from itsdangerous import URLSafeTimedSerializer

    with client.session_transaction() as sess:
        raw = sess.setdefault("csrf_token", secrets.token_hex(20))
    return URLSafeTimedSerializer(current_app.secret_key, salt="wtf-csrf-token").dumps(raw)
