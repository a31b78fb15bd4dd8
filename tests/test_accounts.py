"""Accounts that belong to the person: claiming one from the roster, verifying a self-enrolled
account, resetting a password, sessions that end on sign-out and on a new password, the saved
language, and what a stranger can do with each form and link (nothing)."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from consent import accounts, create_app, jobs, outbox
from consent.extensions import db, limiter
from consent.models import (
    ConsentEvent,
    Contact,
    EmailAddress,
    Family,
    OutboxMessage,
    Phone,
    Role,
    User,
)
from tests.accounts_helpers import link_in_mail
from tests.conftest import Auth, csrf_token
from tests.factories import PASSWORD, make_family, make_org, make_site, make_user
from tests.job_helpers import kill_mid_way, resume
from tests.test_enroll import valid_form

FAILED = "That email and password do not match an account."
NEW_PASSWORD = "a-brand-new-password"


@pytest.fixture
def roster(app):
    """An organization with the Riveras (Ana has an account; Parent2 does not) and the
    Okafors (no account), as a roster import leaves them; an org admin."""
    org = make_org()
    site = make_site(org, "Maple Valley Elementary")
    rivera = make_family(org, site, "Rivera")
    okafor = make_family(org, site, "Okafor")
    ana = make_user(org, "ana@example.org", Role.PARENT, contact=rivera.contacts[0])
    make_user(org, "admin@example.org", Role.ORG, name="Dana Admin")
    db.session.commit()
    return {
        "org": org,
        "ana": ana,
        "unclaimed": rivera.contacts[1],
        "unclaimed_email": rivera.contacts[1].emails[0].address,
        "okafor": okafor.contacts[0],
        "okafor_email": okafor.contacts[0].emails[0].address,
    }


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def main_text(response) -> str:
    """The page's <main>, with the CSRF token and the email typed in left out."""
    page = text(response)
    page = page[page.index("<main") : page.index("</main>")]
    return re.sub(r'name="csrf_token"[^>]*>', "", page)


def post(client, path, data=None, token_from=None):
    data = {**(data or {}), "csrf_token": csrf_token(client, token_from or path)}
    return client.post(path, data=data)


def sign_in(client, email, password=PASSWORD):
    return Auth(client).login(email, password)


def signed_in(client) -> bool:
    return client.get("/account/settings").status_code == 200


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def outbox_to(address: str) -> list[OutboxMessage]:
    return db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.to_address == address)
    ).all()


# --- claim an account ------------------------------------------------------------------------


def test_the_login_page_leads_to_claim_reset_and_verify(client, roster):
    """ "First time here?", "Forgot your password?" and the verification again, from /login."""
    page = text(client.get("/login"))
    for path in ("/account/claim", "/account/reset", "/account/verify"):
        assert f'href="{path}"' in page
    assert "First time here?" in page and "Forgot your password?" in page


def test_a_parent_on_the_roster_claims_an_account_from_the_emailed_link(client, roster, mailbox):
    """The email on record gets a link; GET shows a password form and changes nothing; POST
    makes the verified account and signs the parent in to their own settings."""
    email = roster["unclaimed_email"]
    response = post(client, "/account/claim", {"email": email.upper()})
    assert response.status_code == 200
    assert f"If {email} is on record" in text(response)
    path = link_in_mail(mailbox, email, "/account/claim/")
    assert "choose a password" in mailbox.text(mailbox.to(email)[0])

    form = client.get(path)
    assert form.status_code == 200 and "Make your account" in text(form)
    assert db.session.scalars(sa.select(User).where(User.email == email)).first() is None

    response = post(client, path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302 and response.location == "/account/settings"
    page = text(client.get("/account/settings"))
    assert roster["unclaimed"].name in page and email in page
    user = db.session.scalars(sa.select(User).where(User.email == email)).one()
    assert user.contact_id == roster["unclaimed"].id and user.role == Role.PARENT
    assert user.email_verified and user.check_password(NEW_PASSWORD)


def test_claim_answers_the_same_page_for_an_email_not_on_record_and_sends_nothing(
    client, roster, mailbox
):
    """A stranger cannot tell from the page whether an email is on record; an unknown email
    gets no message at all."""
    known = post(client, "/account/claim", {"email": roster["unclaimed_email"]})
    unknown = post(client, "/account/claim", {"email": "stranger@example.org"})
    assert known.status_code == unknown.status_code == 200
    assert main_text(known).replace(roster["unclaimed_email"], "EMAIL") == main_text(
        unknown
    ).replace("stranger@example.org", "EMAIL")
    assert mailbox.to("stranger@example.org") == []
    assert outbox_to("stranger@example.org") == []


def test_claim_for_an_email_with_an_account_offers_a_reset_instead(client, roster, mailbox):
    """Same page; the account's owner is told it exists, with a reset link; no claim link."""
    response = post(client, "/account/claim", {"email": "ana@example.org"})
    assert "If ana@example.org is on record" in text(response)
    (message,) = mailbox.to("ana@example.org")
    assert "already has an account" in mailbox.text(message)
    assert mailbox.links(message, "/account/reset/")
    assert not mailbox.links(message, "/account/claim/")


def test_a_claim_link_is_spent_once_the_account_is_made(client, roster, mailbox):
    """Replaying the link after use: 410 "already been used", on GET and POST; no second
    account and the password stays the first one."""
    email = roster["unclaimed_email"]
    post(client, "/account/claim", {"email": email})
    path = link_in_mail(mailbox, email, "/account/claim/")
    post(client, path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})

    other = client.application.test_client()
    assert other.get(path).status_code == 410
    assert "already been used" in text(other.get(path))
    response = post(other, path, {"password": "stranger-password", "confirm": "x"}, "/login")
    assert response.status_code == 410
    db.session.expire_all()
    user = db.session.scalars(sa.select(User).where(User.email == email)).one()
    assert user.check_password(NEW_PASSWORD)
    assert count(User) == 3


def test_a_changed_claim_link_is_refused(client, roster, mailbox):
    """One character changed: 400, the bad-link page, nothing made."""
    email = roster["unclaimed_email"]
    post(client, "/account/claim", {"email": email})
    path = link_in_mail(mailbox, email, "/account/claim/")
    spoiled = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert client.get(spoiled).status_code == 400
    response = post(client, spoiled, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, "/login")
    assert response.status_code == 400
    assert db.session.scalars(sa.select(User).where(User.email == email)).first() is None


def test_a_claim_needs_a_long_enough_password_twice(client, roster, mailbox):
    """A short or mistyped password: the form again with the reason, no account."""
    email = roster["unclaimed_email"]
    post(client, "/account/claim", {"email": email})
    path = link_in_mail(mailbox, email, "/account/claim/")
    short = post(client, path, {"password": "short", "confirm": "short"})
    assert short.status_code == 422 and "at least 10 characters" in text(short)
    differ = post(client, path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"})
    assert differ.status_code == 422 and "The two passwords differ." in text(differ)
    assert db.session.scalars(sa.select(User).where(User.email == email)).first() is None


# --- invitations from the admin -----------------------------------------------------------------


def test_an_admin_invites_a_contact_from_its_page_and_the_contact_claims(client, roster, mailbox):
    """The contact's admin page says "Not signed up yet" with a button; the POST queues one
    invitation email with a claim link that makes the account."""
    sign_in(client, "admin@example.org")
    contact = roster["okafor"]
    page = text(client.get(f"/admin/contacts/{contact.id}/"))
    assert "Not signed up yet." in page and "Send an invitation to" in page
    response = post(
        client,
        f"/admin/invitations/contact/{contact.id}",
        token_from=f"/admin/contacts/{contact.id}/",
    )
    assert response.status_code == 302
    assert "Invitation sent to" in text(client.get(response.location))
    (message,) = mailbox.to(roster["okafor_email"])
    assert "invites you to its parent portal" in mailbox.text(message)
    (queued,) = outbox_to(roster["okafor_email"])
    assert queued.purpose == "account_invitation"

    path = link_in_mail(mailbox, roster["okafor_email"], "/account/claim/")
    parent = client.application.test_client()
    post(parent, path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert signed_in(parent)
    assert "Signed up: " + roster["okafor_email"] in text(
        client.get(f"/admin/contacts/{contact.id}/")
    )


def send_to_everyone(client) -> str:
    """Press "Send invitations to everyone…", let a worker run the job and the outbox deliver;
    the job page's words afterwards."""
    response = post(client, "/admin/invitations/send", token_from="/admin/invitations/")
    job_page = response.headers["Location"]
    assert "/admin/invitations/jobs/" in job_page
    assert "Waiting for a worker to start this job" in text(client.get(job_page))
    jobs.work()
    outbox.deliver()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text(client.get(job_page))))


def test_invitations_to_everyone_not_signed_up(client, roster, mailbox):
    """The organization team's page counts the contacts with an email and no account and
    sends each one invitation, through a job whose page says how many; pressing again the
    same day sends no second one."""
    sign_in(client, "admin@example.org")
    page = text(client.get("/admin/invitations/"))
    assert "3 contacts with an email on record are not signed up yet." in page
    expected = {
        roster["unclaimed_email"],
        roster["okafor_email"],
        roster["okafor"].family.contacts[1].emails[0].address,
    }
    done = send_to_everyone(client)
    assert "Done: 3 of 3 contacts." in done
    assert "3 invitations queued in the Outbox" in done
    assert {m["To"] for m in mailbox.messages} == expected
    send_to_everyone(client)
    assert len(mailbox.messages) == 3


def test_the_invitations_job_page_is_the_organizations_own(client, roster):
    """Signed out: the sign-in page; a site team: 403; another organization's job: 404."""
    site = roster["org"].sites[0]
    make_user(roster["org"], "site-admin@example.org", Role.SITE, site=site)
    job = accounts.enqueue_invitations(roster["org"])
    other = make_org(name="Other District", texting_number="+12025550161")
    foreign = accounts.enqueue_invitations(other)
    db.session.commit()
    path = f"/admin/invitations/jobs/{job.id}"
    assert client.get(path).status_code == 302
    sign_in(client, "site-admin@example.org")
    assert client.get(path).status_code == 403
    client.post("/logout", data={"csrf_token": csrf_token(client, "/account/password")})
    sign_in(client, "admin@example.org")
    assert "Waiting for a worker" in text(client.get(path))
    assert client.get(f"/admin/invitations/jobs/{foreign.id}").status_code == 404


def test_invitations_resumed_after_a_killed_worker_reach_each_contact_once(app, database):
    """A worker SIGKILLed part-way through inviting everyone; a second worker finishes: every
    contact has exactly one invitation in the Outbox, and what the job reported as done when
    it died was truly committed."""
    org = make_org()
    site = make_site(org, "Maple Valley Elementary")
    families = 150
    for n in range(families):
        make_family(org, site, f"Family{n:03d}")
    db.session.commit()
    contacts = db.session.scalar(sa.select(sa.func.count()).select_from(Contact))
    job = accounts.enqueue_invitations(org)
    db.session.commit()
    job_id = job.id
    assert job.total == contacts
    db.session.close()

    def invitations() -> list[str]:
        return list(
            db.session.scalars(
                sa.select(OutboxMessage.to_address).where(
                    OutboxMessage.purpose == "account_invitation"
                )
            )
        )

    killed_at, output = kill_mid_way(database, job_id, after=40, INVITE_CHUNK=5)
    assert killed_at.status == "running", output
    assert 0 < killed_at.done < contacts
    assert killed_at.result["sent"] == len(invitations()) == killed_at.done
    done, output = resume(database, job_id, INVITE_CHUNK=5)
    assert done.status == "done", (done.error, output)
    assert done.attempts == 2 and done.done == done.total == contacts
    assert done.result["sent"] == contacts
    sent = invitations()
    assert len(sent) == len(set(sent)) == contacts


def test_invitations_are_for_the_admin_roles_and_sites_that_may_send_them(app, world, client):
    """Signed out: sign-in; a parent and staff: 403; a site team: its own site's contacts
    only (another site's: 404) and not the send-to-everyone page."""
    near = world.near.contacts[1]
    far = world.far.contacts[0]

    def invite(contact_id):
        return client.post(
            f"/admin/invitations/contact/{contact_id}",
            data={"csrf_token": csrf_token(client, "/account/password")},
        )

    assert client.post(f"/admin/invitations/contact/{near.id}").status_code in (302, 400)
    assert client.get("/admin/invitations/").status_code == 302
    for who, code in (("parent", 403), ("staff", 403)):
        world.login(client, who)
        assert invite(near.id).status_code == code, who
        client.post("/logout", data={"csrf_token": csrf_token(client, "/account/password")})
    world.login(client, "site")
    assert invite(far.id).status_code == 404
    assert invite(near.id).status_code == 302
    assert client.get("/admin/invitations/").status_code == 403
    response = client.post(
        "/admin/invitations/send", data={"csrf_token": csrf_token(client, "/account/password")}
    )
    assert response.status_code == 403
    assert "/admin/invitations/" not in text(client.get("/admin/"))


# --- self-enrollment: the account waits for its email -------------------------------------------


def enroll(client, org, email, **changes):
    data = {**valid_form(org, email=email), **changes}
    return client.post("/enroll", data={**data, "csrf_token": csrf_token(client, "/enroll")})


def test_an_enrolled_account_cannot_sign_in_until_its_email_link_is_opened(client, roster, mailbox):
    """Enroll: "Check your email"; sign-in fails with the usual message; the link's GET shows
    a button and changes nothing; its POST verifies and signs in; the link is then spent."""
    response = enroll(client, roster["org"], "mai@example.org")
    assert response.location == "/enroll/sent"
    assert "Check your email: we sent a link to mai@example.org" in text(client.get("/enroll/sent"))
    failed = sign_in(client, "mai@example.org", "long-enough-pass")
    assert failed.status_code == 200 and FAILED in text(failed)
    assert not signed_in(client)

    path = link_in_mail(mailbox, "mai@example.org", "/account/verify/")
    button = client.get(path)
    assert button.status_code == 200 and "Confirm and sign in" in text(button)
    user = db.session.scalars(sa.select(User).where(User.email == "mai@example.org")).one()
    assert not user.email_verified
    response = post(client, path)
    assert response.status_code == 302 and signed_in(client)
    db.session.expire_all()
    assert user.email_verified
    assert client.application.test_client().get(path).status_code == 410


def test_a_verification_link_can_be_sent_again_with_the_same_answer_for_anyone(
    client, roster, mailbox
):
    """/account/verify: the same page for an unverified account, a verified one and an
    unknown email; only the unverified account gets a link."""
    client.get(enroll(client, roster["org"], "mai@example.org").location)  # as a browser would
    mailbox.handler.messages.clear()
    pages = []
    for email in ("mai@example.org", "ana@example.org", "nobody@example.org"):
        pages.append(
            main_text(post(client, "/account/verify", {"email": email})).replace(email, "E")
        )
    assert pages[0] == pages[1] == pages[2]
    assert [m["To"] for m in mailbox.messages] in ([], ["mai@example.org"])  # at most 1 / 10 min
    assert mailbox.to("ana@example.org") == mailbox.to("nobody@example.org") == []


def test_enrolling_with_someone_elses_email_takes_nothing_and_tells_the_owner(
    client, roster, mailbox
):
    """A stranger enrolls with the email of a contact on the roster (no account yet): the
    same page as any enrollment, no family, contact, phone, login or consent event is made,
    and the owner is emailed (with a link to make their own account); no verification link
    goes anywhere."""
    victim = roster["unclaimed_email"]
    before = {m: count(m) for m in (Family, Contact, Phone, EmailAddress, User, ConsentEvent)}
    fresh = enroll(client.application.test_client(), roster["org"], "new@example.org")
    response = enroll(client, roster["org"], victim)
    assert response.status_code == fresh.status_code == 302
    assert response.location == fresh.location == "/enroll/sent"
    assert "we sent a link to " + victim in text(client.get("/enroll/sent"))
    db.session.expire_all()
    after = {m: count(m) for m in before}
    grew = {m.__name__: after[m] - before[m] for m in before}
    # Only the fresh enrollment's rows: one family, one contact, one login, its one opt-in.
    assert grew == {
        "Family": 1,
        "Contact": 1,
        "Phone": 1,
        "EmailAddress": 1,
        "User": 1,
        "ConsentEvent": 1,
    }
    (told,) = mailbox.to(victim)
    assert "Someone tried to enroll" in told["Subject"]
    assert "nothing was saved" in mailbox.text(told)
    assert mailbox.links(told, "/account/claim/")
    assert not mailbox.links(told, "/account/verify/")


def test_enrolling_with_an_accounts_email_takes_nothing_and_offers_the_owner_a_reset(
    client, roster, mailbox
):
    """The sign-in email of an existing account: nothing made, the account's password and
    family untouched, and the owner gets a sign-in and reset link."""
    before = {m: count(m) for m in (Family, Contact, User, ConsentEvent)}
    response = enroll(
        client,
        roster["org"],
        "ANA@example.org",
        password="stranger-pass1",
        confirm="stranger-pass1",
    )
    assert response.location == "/enroll/sent"
    db.session.expire_all()
    assert {m: count(m) for m in before} == before
    assert sign_in(client, "ana@example.org", "stranger-pass1").status_code == 200
    (told,) = mailbox.to("ana@example.org")
    assert "tried to enroll" in mailbox.text(told)
    assert mailbox.links(told, "/account/reset/")


# --- password reset -----------------------------------------------------------------------------


def test_a_password_is_reset_by_the_emailed_link_which_then_is_spent(client, roster, mailbox):
    """Forgot your password: the email gets a link; the new password works, the old one no
    longer; the link replayed is spent."""
    response = post(client, "/account/reset", {"email": "ana@example.org"})
    assert "If ana@example.org has an account" in text(response)
    path = link_in_mail(mailbox, "ana@example.org", "/account/reset/")
    assert client.get(path).status_code == 200
    response = post(client, path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302 and signed_in(client)

    other = client.application.test_client()
    assert FAILED in text(sign_in(other, "ana@example.org", PASSWORD))
    assert sign_in(other, "ana@example.org", NEW_PASSWORD).status_code == 302
    replay = client.application.test_client()
    assert replay.get(path).status_code == 410
    response = post(
        replay, path, {"password": "another-password", "confirm": "another-password"}, "/login"
    )
    assert response.status_code == 410
    db.session.expire_all()
    assert roster["ana"].check_password(NEW_PASSWORD)


def test_reset_answers_the_same_for_an_unknown_email_and_sends_nothing(client, roster, mailbox):
    known = post(client, "/account/reset", {"email": "ana@example.org"})
    unknown = post(client, "/account/reset", {"email": "nobody@example.org"})
    assert main_text(known).replace("ana@example.org", "E") == main_text(unknown).replace(
        "nobody@example.org", "E"
    )
    assert mailbox.to("nobody@example.org") == [] and outbox_to("nobody@example.org") == []


def test_a_reset_ends_every_other_session(client, roster, mailbox):
    """Signed in on one device; a reset from another: the first device is signed out."""
    sign_in(client, "ana@example.org")
    assert signed_in(client)
    other = client.application.test_client()
    post(other, "/account/reset", {"email": "ana@example.org"})
    path = link_in_mail(mailbox, "ana@example.org", "/account/reset/")
    post(other, path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert signed_in(other)
    assert not signed_in(client)


# --- sessions -----------------------------------------------------------------------------------


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def test_a_session_cookie_captured_before_sign_out_no_longer_works(app, client, roster):
    """Someone copies the cookie; the parent signs out; the copy is signed out too."""
    sign_in(client, "ana@example.org")
    captured = session_cookie(client)
    thief = app.test_client()
    thief.set_cookie("session", captured)
    assert signed_in(thief)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/account/settings")})
    assert not signed_in(client)
    assert thief.get("/account/settings").status_code == 302


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(app, client, roster):
    """Current password required; after the change this browser stays signed in, another
    one is signed out, and the new password is the one that works."""
    sign_in(client, "ana@example.org")
    laptop = app.test_client()
    sign_in(laptop, "ana@example.org")
    wrong = post(
        client,
        "/account/password",
        {"current": "not-my-password", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert wrong.status_code == 422 and "That is not your password." in text(wrong)
    assert signed_in(laptop)

    response = post(
        client,
        "/account/password",
        {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert "signed out everywhere else" in text(client.get(response.location))
    assert signed_in(client)
    assert not signed_in(laptop)
    assert FAILED in text(sign_in(app.test_client(), "ana@example.org", PASSWORD))


def test_the_settings_page_links_to_the_password_and_saves_a_language(client, roster):
    sign_in(client, "ana@example.org")
    page = text(client.get("/account/settings"))
    assert 'href="/account/password"' in page and 'action="/account/language"' in page


def test_admin_pages_have_a_visible_sign_out(client, roster):
    """A Sign out button (a POST with its CSRF token) outside the collapsing admin menu."""
    sign_in(client, "admin@example.org")
    page = text(client.get("/admin/"))
    form = re.search(r'<form method="post" action="/logout".*?</form>', page, re.S)
    assert form and "Sign out" in form.group(0) and "csrf_token" in form.group(0)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    assert client.get("/admin/").status_code == 302


# --- language -----------------------------------------------------------------------------------


def test_lang_in_the_address_changes_only_the_session_and_a_post_saves_it(client, roster):
    sign_in(client, "ana@example.org")
    contact_id = roster["ana"].contact_id
    assert "Su configuración" in text(client.get("/account/settings?lang=es"))
    db.session.expire_all()
    assert db.session.get(Contact, contact_id).language == "en"
    response = post(client, "/account/language", {"language": "es"}, "/account/settings")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Contact, contact_id).language == "es"
    assert (
        post(client, "/account/language", {"language": "xx"}, "/account/settings").status_code
        == 400
    )


def test_the_saved_language_is_the_parents_own(app, client, roster):
    """Signed out: sign-in; an admin: 404 (not a parent)."""
    assert client.post("/account/language", data={"language": "es"}).status_code in (302, 400)
    sign_in(client, "admin@example.org")
    assert (
        post(client, "/account/language", {"language": "es"}, "/account/password").status_code
        == 404
    )


# --- every new form needs its CSRF token; every page its sign-in --------------------------------


def test_every_new_form_refuses_a_post_without_its_csrf_token(app, client, roster, mailbox):
    """A cross-site form cannot ask for links, use them, or change a password or language."""
    from consent import accounts

    org, contact = roster["org"], roster["unclaimed"]
    enroll(app.test_client(), org, "mai@example.org")
    mai = db.session.scalars(sa.select(User).where(User.email == "mai@example.org")).one()
    paths = [
        "/account/claim",
        "/account/reset",
        "/account/verify",
        urlsplit(accounts.claim_url(org, contact, roster["unclaimed_email"])).path,
        urlsplit(accounts.reset_url(org, roster["ana"])).path,
        urlsplit(accounts.verify_url(org, mai)).path,
    ]
    fields = {"email": "ana@example.org", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    for path in paths:
        assert client.post(path, data=fields).status_code == 400, path
    sign_in(client, "ana@example.org")
    for path, data in (
        ("/account/password", {"current": PASSWORD, **fields}),
        ("/account/language", {"language": "es"}),
    ):
        assert client.post(path, data=data).status_code == 400, path
    sign_in(admin := app.test_client(), "admin@example.org")
    for path in (f"/admin/invitations/contact/{contact.id}", "/admin/invitations/send"):
        assert admin.post(path).status_code == 400, path
    db.session.expire_all()
    assert (
        db.session.scalars(sa.select(User).where(User.email == roster["unclaimed_email"])).first()
        is None
    )
    assert not mai.email_verified and roster["ana"].check_password(PASSWORD)
    assert outbox_to(roster["unclaimed_email"]) == []


def test_changing_a_password_needs_sign_in(client, roster):
    assert client.get("/account/password").location.startswith("/login")
    assert client.post("/account/password").status_code in (302, 400)


# --- limits -------------------------------------------------------------------------------------


@pytest.fixture
def limited(app, roster):
    limited = create_app({**app.config, "RATELIMIT_ENABLED": True})
    limiter.reset()
    yield limited
    limiter.reset()
    limiter.enabled = False


def test_asking_for_links_is_rate_limited(limited):
    """Five asks a minute from one connection; the sixth is 429 on a page that names the
    district."""
    client = limited.test_client()
    token = csrf_token(client, "/account/claim")
    codes = [
        client.post(
            "/account/claim", data={"email": f"a{n}@example.org", "csrf_token": token}
        ).status_code
        for n in range(6)
    ]
    assert codes == [200] * 5 + [429]


def test_the_too_many_page_names_the_district(limited):
    client = limited.test_client()
    token = csrf_token(client)
    for n in range(11):
        response = client.post(
            "/login", data={"email": f"g{n}@example.org", "password": "x", "csrf_token": token}
        )
    assert response.status_code == 429
    page = text(response)
    assert "Maple Valley School District" in page and "None" not in page


def test_a_person_gone_from_the_roster_is_signed_out_at_their_next_page(client, roster):
    """The roster makes Ana inactive while she is signed in: her session ends at once, not at
    her next sign-in."""
    assert sign_in(client, "ana@example.org").status_code == 302 and signed_in(client)
    user = db.session.scalars(sa.select(User).where(User.email == "ana@example.org")).one()
    user.active = False
    db.session.commit()
    assert not signed_in(client)
