"""Who may use which admin view (seed 000): every view of this half x every role: allowed and in
the menu, or absent from the menu and 403."""

from __future__ import annotations

import pytest

VIEWS = {
    "/admin/contacts/": ("org", "site", "staff"),
    "/admin/students/": ("org", "site", "staff"),
    "/admin/reports/": ("org",),
    "/admin/reports/parents/opted_out/": ("org",),
    "/admin/reports/students.csv": ("org",),
    "/admin/activity/": ("org",),
    "/admin/activity/download/csv/": ("org",),
    "/admin/outbox/": ("org",),
    "/admin/settings/": ("org",),
    "/admin/users/": ("org",),
    "/admin/users/new/": ("org",),
}
MENU = {
    "/admin/contacts/": ("org", "site", "staff"),
    "/admin/students/": ("org", "site", "staff"),
    "/admin/reports/": ("org",),
    "/admin/activity/": ("org",),
    "/admin/outbox/": ("org",),
    "/admin/settings/": ("org",),
    "/admin/users/": ("org",),
}


@pytest.mark.parametrize("who", ["org", "site", "staff", "parent"])
def test_each_view_answers_each_role(client, world, who):
    """A role listed for a view gets 200; any other admin role or a parent gets 403."""
    world.login(client, who)
    answers = {path: client.get(path).status_code for path in VIEWS}
    assert answers == {path: 200 if who in roles else 403 for path, roles in VIEWS.items()}


def test_each_view_sends_a_stranger_to_sign_in(client, world):
    """Without signing in, every view redirects to the sign-in page."""
    for path in VIEWS:
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


@pytest.mark.parametrize("who", ["org", "site", "staff"])
def test_menu_lists_only_the_views_a_role_may_use(client, world, who):
    """The admin menu shows a view only to the roles that may use it."""
    world.login(client, who)
    page = client.get("/admin/").get_data(as_text=True)
    for path, roles in MENU.items():
        link = f'href="{path}"'
        assert (link in page) == (who in roles), (who, path)


def test_home_shows_counts_to_the_org_team(client, world):
    """The organization team's home shows the opt-out, bounce, block, event and outbox counts."""
    from consent import ledger
    from consent.extensions import db
    from consent.ledger import Actor
    from consent.models import Channel, Source

    number = world.near.contacts[0].phones[0].number
    ledger.opt_out(
        world.org,
        Channel.TEXT,
        number,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient(),
        carrier_block=True,
        confirm=False,
        notify_org=False,
    )
    ledger.mark_bounced(world.org, Channel.VOICE, number)
    db.session.commit()
    world.login(client, "org")
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="count-text">1<' in page and 'id="count-email">0<' in page
    assert 'id="count-bounced">1<' in page and 'id="count-blocks">1<' in page
    assert 'id="count-week">8<' in page  # six enrollment opt-ins, the STOP, the bounce
    assert 'id="count-failed">0<' in page


def test_home_for_staff_has_links_but_no_organization_counts(client, world):
    """Staff see their links and no organization-wide counts."""
    world.login(client, "staff")
    page = client.get("/admin/").get_data(as_text=True)
    assert "read-only" in page and 'id="counts"' not in page
    assert 'href="/admin/contacts/"' in page
