"""The admin's shared plumbing: roles on the dashboard, and CSRF on Flask-Admin's own forms."""

import re

import pytest
import sqlalchemy as sa
from flask_admin.actions import action

from admin.base import ORG, SecureModelView
from consent.extensions import db
from consent.models import Site
from tests import factories
from tests.helpers import form_token


class RenameSites(SecureModelView):
    """A test-only list with one Flask-Admin list action (site names are not consent data)."""

    roles = ORG
    can_delete = True

    @action("shout", "Shout", "Shout these names?")
    def action_shout(self, ids):
        """Upper-case the chosen sites' names."""
        for site in db.session.scalars(sa.select(Site).where(Site.id.in_([int(i) for i in ids]))):
            site.name = site.name.upper()
        db.session.commit()


@pytest.fixture
def shout_view(app):
    """The test-only view, added to this app's admin before its first request (the test is
    marked `own_app`: the session's app has served requests already)."""
    app.extensions["admin"][0].add_view(
        RenameSites(Site, db, name="Sites (test)", endpoint="testsites")
    )
    return "/admin/testsites/"


@pytest.mark.parametrize(
    ("email", "status"),
    [("org", 200), ("site", 200), ("staff", 200), ("parent", 403)],
)
def test_dashboard_is_for_admins_only(client, auth, staff, email, status):
    """Every admin role reaches /admin/; a parent gets 403."""
    auth.login(staff[email].email, factories.PASSWORD)
    assert client.get("/admin/").status_code == status


def test_dashboard_sends_a_stranger_to_sign_in(client, staff):
    """Without a session /admin/ redirects to /login."""
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


@pytest.mark.own_app
def test_flask_admin_list_action_needs_the_csrf_token(client, auth, staff, shout_view):
    """A list action POST without a token is 400 and changes nothing; with the token it runs."""
    auth.login("admin@example.org", factories.PASSWORD)
    page = client.get(shout_view).get_data(as_text=True)
    assert 'name="csrf_token"' in page
    site = staff["elementary"]
    data = {"action": "shout", "rowid": [str(site.id)]}
    refused = client.post(shout_view + "action/", data=data)
    assert refused.status_code == 400
    db.session.expire_all()
    assert db.session.get(Site, site.id).name == "Maple Valley Elementary"

    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    done = client.post(shout_view + "action/", data={**data, "csrf_token": token})
    assert done.status_code == 302
    db.session.expire_all()
    assert db.session.get(Site, site.id).name == "MAPLE VALLEY ELEMENTARY"


@pytest.mark.own_app
def test_flask_admin_delete_needs_the_csrf_token(client, auth, staff, shout_view):
    """Flask-Admin's delete form carries the token; a delete POST without it is 400."""
    auth.login("admin@example.org", factories.PASSWORD)
    site = staff["high"]
    refused = client.post(shout_view + "delete/", data={"id": str(site.id)})
    assert refused.status_code == 400
    assert db.session.get(Site, site.id) is not None
    assert form_token(client.get(shout_view).get_data(as_text=True))
