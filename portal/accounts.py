"""Account pages: claim an account from the roster, reset a password, verify a self-enrolled
account's email, change the password and the saved language.

Asking for a link answers the same page whatever is on record; the link's GET shows a form or
a button and only its POST changes anything. The work is in consent/accounts.py.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from consent import accounts
from consent.extensions import db, limiter
from consent.i18n import gettext as _
from consent.tenant import current_organization
from consent.tokens import TokenError
from portal.accounts_forms import (
    ButtonForm,
    ChangePasswordForm,
    EmailForm,
    NewPasswordForm,
)
from portal.auth import home_for, start_session

bp = Blueprint("accounts", __name__, url_prefix="/account")

ASK_LIMIT = "5 per minute; 30 per hour"
LINK_LIMIT = "30 per minute; 300 per hour"


def _org():
    org = current_organization()
    if org is None:
        abort(404)
    return org


def _bad_link(error: TokenError, purpose: str):
    page = render_template(
        "portal/account_bad_link.html", kind=error.kind, purpose=purpose, org=current_organization()
    )
    return page, error.status_code


def _ask(purpose: str, ask, title: str, intro: str, button: str):
    """The page that asks for an email and sends a link: the same answer for any email."""
    org = _org()
    form = EmailForm()
    if form.validate_on_submit():
        ask(org, form.normalized)
        db.session.commit()
        return render_template(
            "portal/account_link_sent.html", purpose=purpose, entered=form.normalized, org=org
        )
    return render_template(
        "portal/account_ask.html", form=form, title=title, intro=intro, button=button
    )


def _password_problem(form) -> bool:
    """Put the reason a new password is refused at its field; True when there is one."""
    if not form.validate_on_submit():
        return True
    problem = accounts.password_problem(form.password.data, form.confirm.data or "")
    if problem:
        field = form.confirm if problem == _("The two passwords differ.") else form.password
        field.errors = [*list(field.errors or []), problem]
        return True
    return False


# --- claim an account --------------------------------------------------------------------------


@bp.route("/claim", methods=["GET", "POST"])
@limiter.limit(ASK_LIMIT, methods=["POST"])
def claim_request():
    """First time here: the email on record gets a link to set a password."""
    return _ask(
        "claim",
        accounts.request_claim,
        _("First time here?"),
        _(
            "If the school has your email address on record, we send you a link to set "
            "your password and make your account."
        ),
        _("Send me a link"),
    )


@bp.route("/claim/<token>", methods=["GET", "POST"])
@limiter.limit(LINK_LIMIT)
def claim(token: str):
    """Set a password for the account the school's records hold for this email."""
    try:
        link = accounts.open_claim(token)
    except TokenError as error:
        return _bad_link(error, "claim")
    form = NewPasswordForm()
    if request.method == "POST" and not _password_problem(form):
        user = accounts.claim(link, form.password.data)
        db.session.commit()
        start_session(user)
        flash(_("Your account is ready. You are signed in."), "success")
        return redirect(url_for("account.settings"))
    return render_template(
        "portal/account_set_password.html",
        form=form,
        title=_("Make your account"),
        intro=_(
            "Choose a password for %(name)s. You sign in with %(email)s.",
            name=link.contact.name,
            email=link.email,
        ),
        email=link.email,
        button=_("Make my account"),
    ), (422 if form.errors else 200)


# --- reset a password --------------------------------------------------------------------------


@bp.route("/reset", methods=["GET", "POST"])
@limiter.limit(ASK_LIMIT, methods=["POST"])
def reset_request():
    """Forgot your password: the account's email gets a link to choose a new one."""
    return _ask(
        "reset",
        accounts.request_reset,
        _("Forgot your password?"),
        _("Enter the email you sign in with. We send it a link to choose a new password."),
        _("Send me a link"),
    )


@bp.route("/reset/<token>", methods=["GET", "POST"])
@limiter.limit(LINK_LIMIT)
def reset(token: str):
    """Choose a new password; every session of the account ends, and this one starts."""
    try:
        user = accounts.open_reset(token)
    except TokenError as error:
        return _bad_link(error, "reset")
    form = NewPasswordForm()
    if request.method == "POST" and not _password_problem(form):
        accounts.reset(user, form.password.data)
        db.session.commit()
        start_session(user)
        flash(_("Your password is changed. You are signed in."), "success")
        return redirect(home_for(user))
    return render_template(
        "portal/account_set_password.html",
        form=form,
        title=_("Choose a new password"),
        intro=_("Choose a new password for %(email)s.", email=user.email),
        email=user.email,
        button=_("Save the new password"),
    ), (422 if form.errors else 200)


# --- verify a self-enrolled account ------------------------------------------------------------


@bp.route("/verify", methods=["GET", "POST"])
@limiter.limit(ASK_LIMIT, methods=["POST"])
def verify_request():
    """Send the link that confirms a new account's email again."""
    return _ask(
        "verify",
        accounts.request_verification,
        _("Confirm your account"),
        _(
            "Enrolled, but did not get the email to confirm your account? Enter the email "
            "you enrolled with and we send the link again."
        ),
        _("Send the link again"),
    )


@bp.route("/verify/<token>", methods=["GET", "POST"])
@limiter.limit(LINK_LIMIT)
def verify(token: str):
    """GET: a button; POST: the email is confirmed and the person is signed in."""
    try:
        user = accounts.open_verification(token)
    except TokenError as error:
        return _bad_link(error, "verify")
    form = ButtonForm()
    if form.validate_on_submit():
        accounts.verify(user)
        db.session.commit()
        start_session(user)
        flash(_("Your email is confirmed and you are signed in."), "success")
        return redirect(home_for(user))
    return render_template("portal/account_verify.html", form=form, email=user.email)


# --- signed in: password and language ----------------------------------------------------------


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password():
    """Change the password (the current one first); every other session ends."""
    form = ChangePasswordForm()
    if request.method == "POST" and not _password_problem(form):
        if accounts.change_password(current_user, form.current.data, form.password.data):
            user = current_user._get_current_object()
            db.session.commit()
            start_session(user)
            flash(_("Your password is changed. You were signed out everywhere else."), "success")
            return redirect(home_for(user))
        form.current.errors = [*list(form.current.errors or []), _("That is not your password.")]
    return render_template("portal/account_password.html", form=form), (422 if form.errors else 200)
