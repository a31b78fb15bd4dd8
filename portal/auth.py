"""Sign-in and sign-out for parents and admins."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from consent import accounts
from consent.extensions import db, limiter
from consent.i18n import gettext as _
from consent.models import User
from consent.tenant import current_organization
from portal.auth_forms import LoginForm

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str | None:
    """`target` when it is a path on this site, else None (no open redirects)."""
    if not target:
        return None
    target = target.strip()
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return None
    return target


def _fresh_session() -> None:
    """Forget everything in the session, and the CSRF token cached for this request with it."""
    session.clear()
    g.pop("csrf_token", None)


def home_for(user: User) -> str:
    return "/admin/" if user.is_admin else url_for("account.settings")


def start_session(user: User) -> None:
    """Sign `user` in on a fresh session (nothing of the one before survives)."""
    language = session.get("lang")
    _fresh_session()
    if language:
        session["lang"] = language
    login_user(user)


def _attempted_email() -> str:
    return (request.form.get("email") or "").strip().lower()[:320]


def _ip_and_email() -> str:
    """The limiter's key for one connection guessing at one account."""
    return f"login:{request.remote_addr}:{_attempted_email()}"


def _wait_words(seconds: int) -> str:
    if seconds <= 1:
        return _("1 second")
    if seconds < 120:
        return _("%(n)d seconds", n=seconds)
    return _("%(n)d minutes", n=(seconds + 59) // 60)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10 per minute; 100 per hour", methods=["POST"])
# One connection at one account; the growing wait per account (consent/accounts.py) stops
# guesses from many connections, and never locks the owner out for long.
@limiter.limit("5 per minute; 30 per hour", methods=["POST"], key_func=_ip_and_email)
def login():
    """Show the sign-in form; sign a parent or an admin in."""
    form = LoginForm(next=request.args.get("next", ""))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(safe_next(form.next.data) or home_for(current_user))
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        attempt = accounts.sign_in(current_organization(), email, form.password.data)
        if attempt.user is not None:
            destination = safe_next(form.next.data) or home_for(attempt.user)
            start_session(attempt.user)
            db.session.commit()
            return redirect(destination)
        db.session.commit()  # the failure counts (and a verification link may be queued)
        if attempt.wait:
            flash(
                _(
                    "Too many failed sign-ins with this email. Wait %(wait)s and try again, "
                    "or choose a new password with “Forgot your password?”.",
                    wait=_wait_words(attempt.wait),
                ),
                "error",
            )
            return render_template("portal/login.html", form=form), 429
        flash(_("That email and password do not match an account."), "error")
    return render_template("portal/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    """Sign out: this session ends here and on the server (a copy of its cookie stops working)."""
    accounts.end_sessions(current_user)
    db.session.commit()
    logout_user()
    _fresh_session()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))
