"""Accounts that belong to the person: claiming one from the roster, verifying a self-enrolled
one, resetting a password, signing in with a growing wait after failures, ending sessions.

Every answer a visitor sees is the same whatever is on record; what differs is only the email
that the address's owner gets. Links are signed (consent/tokens.py) and spent by the change
they make: a claim once the contact has an account, a reset once the password changes, a
verification once the email is verified. The caller commits.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from consent import jobs, notifications, tokens
from consent.database import begin_write
from consent.extensions import db
from consent.models import (
    Contact,
    EmailAddress,
    Family,
    Organization,
    Role,
    SignInFailure,
    Student,
    User,
    utcnow,
)
from consent.passwords import hash_method
from consent.tokens import TokenError

MIN_PASSWORD = 10
# Failed sign-ins in a row for one email before each further attempt must wait.
FAILURES_BEFORE_WAIT = 5
MAX_WAIT_SECONDS = 15 * 60  # the wait grows to this and no further: never a lock-out
FAILURES_FORGOTTEN_AFTER = timedelta(days=1)
# At most one email of a kind to an address in this time, however often a form asks.
RESEND_BUCKET_SECONDS = 10 * 60

_dummy_users: dict[str, User] = {}  # one throwaway account per hash method


# --- looking people up ------------------------------------------------------------------------


def find_user(email: str) -> User | None:
    """The login with this (normalized) email, if any."""
    return db.session.scalars(sa.select(User).where(User.email == email)).first()


def claimable_contact(org: Organization, email: str) -> Contact | None:
    """The first contact of the organization with this email on record and no account yet."""
    return db.session.scalars(
        sa.select(Contact)
        .join(EmailAddress, EmailAddress.contact_id == Contact.id)
        .join(Family, Family.id == Contact.family_id)
        .outerjoin(User, User.contact_id == Contact.id)
        .where(
            EmailAddress.address == email,
            Family.organization_id == org.id,
            User.id.is_(None),
        )
        .order_by(Contact.id)
        .limit(1)
    ).first()


def email_on_record(org: Organization, email: str) -> bool:
    """Does this email belong to an account, or to a contact or student of the organization?"""
    if find_user(email) is not None:
        return True
    contact = sa.select(EmailAddress.id).join(Contact, EmailAddress.contact_id == Contact.id)
    contact = contact.join(Family, Family.id == Contact.family_id)
    student = sa.select(EmailAddress.id).join(Student, EmailAddress.student_id == Student.id)
    student = student.join(Family, Family.id == Student.family_id)
    for stmt in (contact, student):
        found = db.session.scalar(
            stmt.where(EmailAddress.address == email, Family.organization_id == org.id).limit(1)
        )
        if found is not None:
            return True
    return False


# --- passwords and sessions -------------------------------------------------------------------


def spend_equal_time(password: str) -> bool:
    """Check a password against a throwaway account's hash, so an answer about an unknown
    email costs the same work as one about a real account. Always False."""
    method = hash_method()
    if method not in _dummy_users:
        dummy = User(email="nobody@invalid")
        dummy.set_password("not-a-real-password")
        _dummy_users[method] = dummy
    _dummy_users[method].check_password(password)
    return False


def password_fingerprint(user: User) -> str:
    """A short digest of the password hash: a reset link names it, so a new password spends it."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


def end_sessions(user: User) -> None:
    """End every session of this account (the session id names the old version)."""
    user.auth_version = (user.auth_version or 0) + 1


def set_password(user: User, password: str) -> None:
    """A new password: every session signed in with the old one ends, and failed sign-ins
    are forgotten (the person proved who they are)."""
    user.set_password(password)
    end_sessions(user)
    clear_failures(user.email)


def password_problem(password: str, again: str) -> str | None:
    """Why a new password cannot be used, in words; None when it can."""
    from consent.i18n import gettext as _

    if len(password or "") < MIN_PASSWORD:
        return _("Use at least %(n)d characters for the password.", n=MIN_PASSWORD)
    if password != again:
        return _("The two passwords differ.")
    return None


# --- signing in: a growing wait per email, never a lock-out -----------------------------------


def _failure_key(email: str) -> str:
    return hashlib.sha256(("sign-in:" + email).encode()).hexdigest()


def wait_seconds(email: str) -> int:
    """How long before this email may try again (0: now). After FAILURES_BEFORE_WAIT failures
    in a row, the n-th further attempt waits 2**n seconds after the last failure, at most
    MAX_WAIT_SECONDS. Known and unknown emails alike."""
    row = db.session.get(SignInFailure, _failure_key(email))
    if row is None or row.failures < FAILURES_BEFORE_WAIT:
        return 0
    now = utcnow()
    if now - row.last_failed_at > FAILURES_FORGOTTEN_AFTER:
        return 0
    wait = min(2 ** (row.failures - FAILURES_BEFORE_WAIT + 1), MAX_WAIT_SECONDS)
    left = (row.last_failed_at + timedelta(seconds=wait) - now).total_seconds()
    return math.ceil(left) if left > 0 else 0


def record_failure(email: str) -> None:
    now = utcnow()
    row = db.session.get(SignInFailure, _failure_key(email))
    if row is None:
        db.session.add(SignInFailure(key=_failure_key(email), failures=1, last_failed_at=now))
        # Forget old rows now and then (a new row is the only thing that grows the table).
        db.session.execute(
            sa.delete(SignInFailure).where(
                SignInFailure.last_failed_at < now - FAILURES_FORGOTTEN_AFTER
            )
        )
        return
    if now - row.last_failed_at > FAILURES_FORGOTTEN_AFTER:
        row.failures = 0
    row.failures += 1
    row.last_failed_at = now


def clear_failures(email: str) -> None:
    db.session.execute(sa.delete(SignInFailure).where(SignInFailure.key == _failure_key(email)))


@dataclass
class SignIn:
    """What a sign-in attempt came to: the user, or nothing (and how long to wait)."""

    user: User | None = None
    wait: int = 0


def sign_in(org: Organization | None, email: str, password: str) -> SignIn:
    """Check an email and password. One password check for every attempt that is not told to
    wait, whether the email has an account or not; the checks of `active` and of a verified
    email come after it. A right password for an account whose email is not verified yet
    sends the verification link again (the page says nothing about it)."""
    wait = wait_seconds(email)
    if wait:
        return SignIn(wait=wait)
    user = find_user(email)
    right = user.check_password(password) if user is not None else spend_equal_time(password)
    if right and user.active and user.email_verified:
        clear_failures(email)
        user.last_login_at = utcnow()
        return SignIn(user=user)
    if right and user.active and org is not None:
        send_verification(org, user)
    else:
        record_failure(email)
    return SignIn()


# --- the emails -------------------------------------------------------------------------------


def _bucket() -> int:
    return int(utcnow().timestamp()) // RESEND_BUCKET_SECONDS


def _language_of(user: User | None, email: str, org: Organization) -> str:
    if user is not None and user.contact is not None and user.contact.language:
        return user.contact.language
    return notifications.language_for("email", email, org.id)


def _queue(org, *, to, purpose, template, key, language, **context):
    return notifications.queue_email(
        org, to=to, purpose=purpose, template=template, key=key, language=language, **context
    )


def claim_url(org: Organization, contact: Contact, email: str) -> str:
    token = tokens.make("claim", org.id, "email", email, 0, c=contact.id)
    return notifications.link("/account/claim/" + token)


def reset_url(org: Organization, user: User) -> str:
    token = tokens.make(
        "reset", org.id, "email", user.email, 0, u=user.id, p=password_fingerprint(user)
    )
    return notifications.link("/account/reset/" + token)


def verify_url(org: Organization, user: User) -> str:
    token = tokens.make("verify", org.id, "email", user.email, 0, u=user.id)
    return notifications.link("/account/verify/" + token)


def sign_in_url() -> str:
    return notifications.link("/login")


def _account_exists_email(org: Organization, user: User, why: str) -> None:
    """Tell the owner of an account that someone asked for a new account with its email, and
    offer a password reset instead."""
    _queue(
        org,
        to=user.email,
        purpose="account_notice",
        template="account_exists",
        key=f"account-exists:{user.id}:{why}:{_bucket()}",
        language=_language_of(user, user.email, org),
        why=why,
        reset_url=reset_url(org, user),
        sign_in_url=sign_in_url(),
    )


def request_claim(org: Organization, email: str) -> str:
    """A visitor asks for an account for `email` (normalized). Returns a code for tests and
    logs; the page answers the same whatever it is.

    A contact on record with this email and no account gets a claim link; an email that
    already has an account is told so, with a reset link; anything else gets nothing."""
    user = find_user(email)
    if user is not None:
        if user.active:
            _account_exists_email(org, user, "claim")
            return "account_exists"
        return "inactive"
    contact = claimable_contact(org, email)
    if contact is None:
        return "not_on_record"
    _send_claim(org, contact, email, purpose="account_claim", template="account_claim")
    return "sent"


def _send_claim(org, contact, email, *, purpose, template, key=None):
    return _queue(
        org,
        to=email,
        purpose=purpose,
        template=template,
        key=key or f"{purpose}:{contact.id}:{email}:{_bucket()}",
        language=contact.language or "en",
        name=contact.first_name,
        claim_url=claim_url(org, contact, email),
        sign_in_url=sign_in_url(),
    )


@dataclass
class Invitations:
    """What sending invitations did."""

    sent: int = 0
    already_signed_up: int = 0
    no_email: int = 0

    def add(self, other: Invitations) -> None:
        self.sent += other.sent
        self.already_signed_up += other.already_signed_up
        self.no_email += other.no_email

    def as_dict(self) -> dict:
        return {
            "sent": self.sent,
            "already_signed_up": self.already_signed_up,
            "no_email": self.no_email,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Invitations:
        return cls(*(int(data.get(k) or 0) for k in ("sent", "already_signed_up", "no_email")))


def invite(
    org: Organization, contact: Contact, *, by: User | None = None, day: str | None = None
) -> Invitations:
    """Staff invite a contact to claim an account: one email to the contact's first email on
    record (at most one a day: `day`, today unless a job queued on another day says). A
    contact with an account or without email gets none."""
    result = Invitations()
    if contact.user is not None:
        result.already_signed_up = 1
        return result
    emails = [e.address for e in contact.emails]
    email = next((e for e in emails if find_user(e) is None), None)
    if email is None:
        result.no_email = 1
        if emails:  # every email of theirs is someone's sign-in already
            result.no_email, result.already_signed_up = 0, 1
        return result
    day = day or utcnow().date().isoformat()
    _send_claim(
        org,
        contact,
        email,
        purpose="account_invitation",
        template="account_invitation",
        key=f"account_invitation:{contact.id}:{email}:{day}",
    )
    result.sent = 1
    return result


def not_signed_up(org: Organization) -> sa.Select:
    """The contacts of the organization with an email on record and no account."""
    has_email = sa.select(EmailAddress.id).where(EmailAddress.contact_id == Contact.id).exists()
    return (
        sa.select(Contact)
        .join(Family, Family.id == Contact.family_id)
        .outerjoin(User, User.contact_id == Contact.id)
        .where(Family.organization_id == org.id, User.id.is_(None), has_email)
        .order_by(Contact.id)
    )


def count_not_signed_up(org: Organization) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(not_signed_up(org).subquery()))


def invite_everyone(org: Organization, *, by: User | None = None) -> Invitations:
    """An invitation to every contact not signed up yet (each at most once a day), in this
    transaction. Staff send them through a job (enqueue_invitations) instead."""
    total = Invitations()
    for contact in db.session.scalars(not_signed_up(org)):
        total.add(invite(org, contact, by=by))
    return total


# --- inviting everyone, as a background job ----------------------------------------------------

INVITE_JOB = "account_invitations"
INVITE_CHUNK = 200  # contacts per committed chunk


def enqueue_invitations(org: Organization, *, by: User | None = None):
    """Queue the invitations to everyone not signed up yet as a job (the caller commits).

    The job's day is today's: a worker that resumes it after midnight still uses the
    invitation keys of the day it was asked for, so no contact gets two."""
    return jobs.enqueue(
        INVITE_JOB,
        org.id,
        params={"day": utcnow().date().isoformat()},
        created_by_user_id=by.id if by else None,
        total=count_not_signed_up(org),
    )


@jobs.register(INVITE_JOB)
def _run_invitations(run: jobs.JobRun) -> dict:
    """Invite the contacts in id order, a chunk at a time; each chunk's outbox emails are
    committed with the job's progress (the contact it got to), so a worker that resumes the
    job starts after the last committed contact, and a chunk in flight when a worker died
    was rolled back with it: no contact is invited twice, none is skipped."""
    from flask import current_app

    org = db.session.get(Organization, run.job.organization_id)
    by = db.session.get(User, run.job.created_by_user_id) if run.job.created_by_user_id else None
    saved = run.saved_result
    counts = Invitations.from_dict(saved)
    last_id = int(saved.get("last_contact_id") or 0)
    done = run.resumed_from
    size = current_app.config.get("INVITE_CHUNK", INVITE_CHUNK)
    day = run.params.get("day")
    while True:
        begin_write()
        contacts = db.session.scalars(
            not_signed_up(org).where(Contact.id > last_id).limit(size)
        ).all()
        if not contacts:
            db.session.rollback()
            break
        for contact in contacts:
            counts.add(invite(org, contact, by=by, day=day))
        last_id = contacts[-1].id
        done += len(contacts)
        result = counts.as_dict() | {"last_contact_id": last_id}
        run.progress(done, total=max(run.job.total or 0, done), result=result)
    return counts.as_dict() | {"last_contact_id": last_id}


def request_reset(org: Organization, email: str) -> str:
    """A visitor asks for a password reset for `email`. An active account gets a reset link;
    a contact on record without an account gets a claim link instead; else nothing."""
    user = find_user(email)
    if user is not None:
        if not user.active:
            return "inactive"
        _queue(
            org,
            to=user.email,
            purpose="account_reset",
            template="account_reset",
            key=f"account_reset:{user.id}:{password_fingerprint(user)}:{_bucket()}",
            language=_language_of(user, user.email, org),
            reset_url=reset_url(org, user),
        )
        return "sent"
    contact = claimable_contact(org, email)
    if contact is None:
        return "not_on_record"
    _send_claim(org, contact, email, purpose="account_claim", template="account_claim")
    return "claim_sent"


def send_verification(org: Organization, user: User) -> str:
    """The link that proves a self-enrolled account's email (at most one per ten minutes)."""
    if user.email_verified or not user.active:
        return "nothing_to_verify"
    _queue(
        org,
        to=user.email,
        purpose="account_verify",
        template="account_verify",
        key=f"account_verify:{user.id}:{_bucket()}",
        language=_language_of(user, user.email, org),
        name=user.contact.first_name if user.contact else user.name,
        verify_url=verify_url(org, user),
    )
    return "sent"


def request_verification(org: Organization, email: str) -> str:
    """A visitor asks for the verification link again: sent only to an unverified account."""
    user = find_user(email)
    if user is None:
        return "not_on_record"
    return send_verification(org, user)


def tell_owner_of_enrollment_attempt(org: Organization, email: str) -> None:
    """Someone enrolled with an email that is already on record: nothing is created for them,
    and the address is told, with links to sign in, reset or claim."""
    user = find_user(email)
    if user is not None:
        _account_exists_email(org, user, "enroll")
        return
    contact = claimable_contact(org, email)
    _queue(
        org,
        to=email,
        purpose="account_notice",
        template="enroll_attempt",
        key=f"enroll-attempt:{email}:{_bucket()}",
        language=notifications.language_for("email", email, org.id),
        claim_url=claim_url(org, contact, email) if contact is not None else None,
        sign_in_url=sign_in_url(),
    )


# --- opening the links ------------------------------------------------------------------------


def _open(purpose: str, token: str) -> tuple[Organization, tokens.LinkClaim]:
    claim = tokens.load(purpose, token)
    org = db.session.get(Organization, claim.organization_id)
    if org is None or claim.channel != "email":
        raise TokenError("bad", "This link is not valid.")
    return org, claim


def _extra_id(claim: tokens.LinkClaim, name: str) -> int:
    try:
        value = int(claim.extra.get(name))
    except (TypeError, ValueError, OverflowError):
        raise TokenError("bad", "This link is not valid.") from None
    if not 0 < value < 2**31:
        raise TokenError("bad", "This link is not valid.")
    return value


def _spent() -> TokenError:
    return TokenError("spent", "This link has already been used.")


@dataclass
class ClaimLink:
    org: Organization
    contact: Contact
    email: str


def open_claim(token: str) -> ClaimLink:
    """A claim link that can still be used; raise TokenError ("bad", "expired", "spent")."""
    org, claim = _open("claim", token)
    contact = db.session.get(Contact, _extra_id(claim, "c"))
    if contact is None or contact.family.organization_id != org.id:
        raise TokenError("bad", "This link is not valid.")
    if claim.address not in {e.address for e in contact.emails}:
        raise _spent()  # the email left the record since the link was sent
    if contact.user is not None or find_user(claim.address) is not None:
        raise _spent()
    return ClaimLink(org=org, contact=contact, email=claim.address)


def claim(link: ClaimLink, password: str) -> User:
    """Make the contact's account, with the email the link went to: that email is proven."""
    contact = link.contact
    user = User(
        organization_id=link.org.id,
        email=link.email,
        name=contact.name,
        role=Role.PARENT,
        contact=contact,
        email_verified_at=utcnow(),
    )
    user.set_password(password)
    db.session.add(user)
    _prove_contact_email(user)
    db.session.flush()
    return user


def open_reset(token: str) -> User:
    """The account a reset link is for, while its password is the one the link was sent for."""
    _org, claim = _open("reset", token)
    user = db.session.get(User, _extra_id(claim, "u"))
    if user is None or user.email != claim.address or not user.active:
        raise TokenError("bad", "This link is not valid.")
    if claim.extra.get("p") != password_fingerprint(user):
        raise _spent()
    return user


def reset(user: User, password: str) -> None:
    """A new password from a reset link: the link reached the email, so it is proven too."""
    set_password(user, password)
    if not user.email_verified:
        user.email_verified_at = utcnow()
        _prove_contact_email(user)


def open_verification(token: str) -> User:
    """The account a verification link is for, while its email is not verified yet."""
    _org, claim = _open("verify", token)
    user = db.session.get(User, _extra_id(claim, "u"))
    if user is None or user.email != claim.address or not user.active:
        raise TokenError("bad", "This link is not valid.")
    if user.email_verified:
        raise _spent()
    return user


def verify(user: User) -> None:
    """The person opened the link sent to the sign-in email: it is theirs."""
    user.email_verified_at = utcnow()
    clear_failures(user.email)
    _prove_contact_email(user)


def _prove_contact_email(user: User) -> None:
    """The account's own link reached its email: the same address on the person's record is
    proven theirs too (an address typed at enrollment starts unproven)."""
    from consent import verification

    if user.contact is None:
        return
    for row in user.contact.emails:
        if row.address == user.email and not verification.is_verified(row):
            verification.mark_verified(row, verification.Method.ACCOUNT_EMAIL)


def change_password(user: User, current: str, new: str) -> bool:
    """A signed-in person changes their password; False when `current` is wrong. Every other
    session ends (the caller signs this one in again)."""
    if not user.check_password(current):
        return False
    set_password(user, new)
    return True
