"""Admin Outbox (retry), Settings (rules with help, audited) and Users (roles, sites,
passwords never shown)."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from consent import outbox
from consent.extensions import db
from consent.models import Organization, OutboxMessage, Role, User, utcnow
from tests.conftest import csrf_token
from tests.factories import PASSWORD


def _message(world, status="failed", to="retry@example.org", attempts=8, error="SMTP down"):
    message = OutboxMessage(
        organization_id=world.org.id,
        idempotency_key=f"test:{to}:{status}",
        channel="email",
        purpose="org_notification",
        to_address=to,
        subject="Hello",
        body="Body text",
        status=status,
        attempts=attempts,
        last_error=error,
        next_attempt_at=utcnow(),
    )
    db.session.add(message)
    db.session.commit()
    return message


# --- outbox ---------------------------------------------------------------------------------


def test_outbox_lists_status_attempts_and_last_error(client, world):
    """The outbox list shows each message's status, attempts and last error."""
    _message(world)
    world.login(client, "org")
    page = client.get("/admin/outbox/").get_data(as_text=True)
    assert "retry@example.org" in page and "failed" in page and "SMTP down" in page
    assert "Body text" not in page


def test_list_row_checkboxes_are_labelled_without_javascript(client, world):
    """Each row checkbox (and the select-all one) sits in a <label> that names it in words,
    in the HTML itself: no script copies a title into a label."""
    import re

    from consent import ledger
    from consent.ledger import Actor
    from consent.models import Channel, Source

    _message(world)
    ledger.opt_out(
        world.org,
        Channel.TEXT,
        world.near.contacts[0].phones[0].number,
        source=Source.ADMIN,
        actor=Actor.system(),
    )
    db.session.commit()
    world.login(client, "org")
    for path in ("/admin/outbox/", "/admin/optouts/"):
        page = client.get(path).get_data(as_text=True)
        boxes = re.findall(r'<input type="checkbox" name="(rowid|rowtoggle)"', page)
        assert "rowid" in boxes and "rowtoggle" in boxes, path
        labelled = re.findall(
            r'<label class="row-select[^"]*"><input type="checkbox" name="(rowid|rowtoggle)"'
            r'[^>]*/><span class="sr-only">(Select record|Select all records)</span></label>',
            page,
        )
        assert len(labelled) == len(boxes), path
        assert "box.setAttribute('aria-label'" not in page


def test_retry_action_sends_a_failed_message_again(client, world, mailbox):
    """Retry makes a failed message due now and sends it: it arrives and shows as sent."""
    message = _message(world)
    world.login(client, "org")
    response = client.post(
        "/admin/outbox/action/",
        data={"action": "retry", "rowid": [str(message.id)], "csrf_token": csrf_token(client)},
    )
    assert response.status_code == 302
    db.session.expire_all()
    message = db.session.get(OutboxMessage, message.id)
    assert message.status == "sent" and message.attempts == 9
    assert [m["Subject"] for m in mailbox.to("retry@example.org")] == ["Hello"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "1 message(s) retried: 1 sent" in page


def test_retry_leaves_sent_messages_alone(world):
    """retry() touches only failed or queued messages."""
    sent = _message(world, status="sent", to="sent@example.org", error=None)
    failed = _message(world, status="failed", to="failed@example.org")
    assert outbox.retry([sent.id, failed.id]) == 1
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(OutboxMessage, sent.id).status == "sent"
    assert db.session.get(OutboxMessage, failed.id).status == "queued"


def test_outbox_action_without_csrf_is_400(client, world):
    """A retry POST without a CSRF token answers 400 and changes nothing."""
    message = _message(world)
    world.login(client, "org")
    response = client.post(
        "/admin/outbox/action/", data={"action": "retry", "rowid": [str(message.id)]}
    )
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(OutboxMessage, message.id).status == "failed"


def test_outbox_messages_cannot_be_edited_or_deleted(client, world):
    """The outbox has no create, edit or delete."""
    message = _message(world)
    world.login(client, "org")
    token = csrf_token(client)
    assert client.get("/admin/outbox/new/").status_code == 404
    assert client.get(f"/admin/outbox/edit/?id={message.id}").status_code == 404
    assert (
        client.post(
            "/admin/outbox/delete/", data={"id": message.id, "csrf_token": token}
        ).status_code
        == 404
    )
    assert db.session.get(OutboxMessage, message.id) is not None


# --- settings -------------------------------------------------------------------------------


def _settings_data(client, **changes):
    data = {
        "csrf_token": csrf_token(client, "/admin/settings/"),
        "texting_number": "+1 202-555-0100",
        "notification_email": "office@example.org",
        "help_contact": "office@example.org",
        "texts_about": "school closures",
        "message_frequency": "up to 10 messages a month",
        "text_requires_consent": "y",
        "start_opts_in": "y",
        "admin_may_record_opt_out": "y",
        "staff_cell_starts_opted_in": "y",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_settings_show_each_rule_with_its_help(client, world):
    """The settings page lists every rule with its line of help, and the texting number."""
    world.login(client, "org")
    page = client.get("/admin/settings/").get_data(as_text=True)
    for help_line in Organization.RULES.values():
        assert help_line.replace("'", "&#39;") in page
    assert "+1 202-555-0100" in page and "office@example.org" in page


def test_changing_settings_saves_and_audits_who_changed_what(client, world, caplog):
    """Saving changed settings stores them and logs who changed what from what to what."""
    world.login(client, "org")
    caplog.set_level(logging.INFO, logger="consent.audit")
    response = client.post(
        "/admin/settings/",
        data=_settings_data(client, texting_number="(202) 555-0199", stop_blocks_voice="y"),
    )
    assert response.status_code == 302
    db.session.expire_all()
    org = db.session.get(Organization, world.org.id)
    assert org.texting_number == "+12025550199" and org.stop_blocks_voice is True
    line = caplog.messages[-1]
    assert "org@example.org" in line and "texting_number: '+12025550100' -> '+12025550199'" in line
    assert "stop_blocks_voice: False -> True" in line


def test_bad_settings_show_the_error_and_change_nothing(client, world):
    """An invalid texting number is refused with its reason beside the field."""
    world.login(client, "org")
    response = client.post(
        "/admin/settings/",
        data=_settings_data(client, texting_number="not a number", stop_blocks_voice="y"),
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "This is not a phone number" in page
    assert 'aria-describedby="texting_number-hint texting_number-error"' in page
    db.session.expire_all()
    assert db.session.get(Organization, world.org.id).stop_blocks_voice is False


def test_settings_post_without_csrf_is_400(client, world):
    """A settings POST without a CSRF token answers 400 and changes nothing."""
    world.login(client, "org")
    data = _settings_data(client, stop_blocks_voice="y")
    del data["csrf_token"]
    assert client.post("/admin/settings/", data=data).status_code == 400
    db.session.expire_all()
    assert db.session.get(Organization, world.org.id).stop_blocks_voice is False


# --- users ----------------------------------------------------------------------------------


def _user(email):
    db.session.expire_all()
    return db.session.scalars(sa.select(User).where(User.email == email)).first()


def test_users_list_shows_admins_without_password_hashes(client, world):
    """The users list shows the admin logins and their roles, never a password hash nor a
    parent login."""
    world.login(client, "org")
    page = client.get("/admin/users/").get_data(as_text=True)
    assert "sitehigh@example.org" in page and "Site team" in page
    assert "parent@example.org" not in page
    assert "scrypt" not in page and "password_hash" not in page
    edit = client.get(f"/admin/users/edit/?id={world.users['site'].id}").get_data(as_text=True)
    assert "scrypt" not in edit and 'type="password"' in edit and 'value="scrypt' not in edit


def test_org_team_creates_a_site_admin_who_can_sign_in(client, world, caplog):
    """Creating a user with a role, site and password works, is audited, and the new user
    signs in and sees only their site."""
    world.login(client, "org")
    caplog.set_level(logging.INFO, logger="consent.audit")
    response = client.post(
        "/admin/users/new/",
        data={
            "csrf_token": csrf_token(client, "/admin/users/new/"),
            "email": "New.Person@Example.org",
            "name": "New Person",
            "role": "site",
            "site": str(world.high.id),
            "active": "y",
            "password": "a-long-enough-password",
        },
    )
    assert response.status_code == 302
    user = _user("new.person@example.org")
    assert (
        user.role == Role.SITE
        and user.site_id == world.high.id
        and user.check_password("a-long-enough-password")
    )
    assert "New.Person" not in user.email
    assert any(
        "new.person@example.org (created)" in m and "password: '(changed)'" in m
        for m in caplog.messages
    )
    assert not any("a-long-enough-password" in m for m in caplog.messages)
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    from tests.conftest import Auth

    assert Auth(client).login("new.person@example.org", "a-long-enough-password").status_code == 302
    contacts = client.get("/admin/contacts/").get_data(as_text=True)
    assert "Okafor" in contacts and "Rivera" not in contacts


def test_a_site_role_needs_a_site_and_a_new_user_a_password(client, world):
    """A site team member without a site, or a new user without a password, is refused with
    the reason."""
    world.login(client, "org")
    data = {
        "csrf_token": csrf_token(client, "/admin/users/new/"),
        "email": "nosite@example.org",
        "role": "staff",
        "site": "__None",
        "active": "y",
    }
    page = client.post("/admin/users/new/", data=data).get_data(as_text=True)
    assert "needs a site" in page and "This field is required" in page
    assert _user("nosite@example.org") is None


def test_org_team_changes_role_and_deactivates(client, world):
    """Changing a user's role and site, and deactivating, takes effect: a deactivated user
    cannot sign in."""
    world.login(client, "org")
    staff = world.users["staff"]
    response = client.post(
        f"/admin/users/edit/?id={staff.id}",
        data={
            "csrf_token": csrf_token(client, f"/admin/users/edit/?id={staff.id}"),
            "email": staff.email,
            "name": "Terry Staff",
            "role": "site",
            "site": str(world.high.id),
        },
    )
    assert response.status_code == 302
    user = _user(staff.email)
    assert user.role == Role.SITE and user.site_id == world.high.id and not user.active
    assert user.check_password(PASSWORD)
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    from tests.conftest import Auth

    Auth(client).login(staff.email, PASSWORD)
    assert client.get("/admin/").status_code in (302, 403)


def test_org_admin_cannot_deactivate_themself(client, world):
    """The signed-in admin cannot deactivate their own login."""
    world.login(client, "org")
    me = world.users["org"]
    page = client.post(
        f"/admin/users/edit/?id={me.id}",
        data={
            "csrf_token": csrf_token(client, f"/admin/users/edit/?id={me.id}"),
            "email": me.email,
            "role": "org",
            "site": "__None",
        },
    ).get_data(as_text=True)
    assert "cannot deactivate yourself" in page
    assert _user(me.email).active


def test_parent_logins_are_not_editable_here(client, world):
    """A parent login cannot be opened in the users view."""
    world.login(client, "org")
    response = client.get(f"/admin/users/edit/?id={world.users['parent'].id}")
    assert response.status_code == 302
    assert _user("parent@example.org").role == Role.PARENT
