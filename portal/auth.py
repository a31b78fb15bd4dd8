"""Sign-in and sign-out for parents and admins."""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.security import check_password_hash, generate_password_hash

from consent.extensions import db, limiter
from consent.models import User, utcnow
from consent.passwords import hash_method
from portal.forms import LoginForm

bp = Blueprint("auth", __name__)

_dummy_hashes: dict[str, str] = {}  # one throwaway hash per method


def _spend_equal_time(password: str) -> None:
    """Check a password against a throwaway hash of the configured method, so an unknown
    email takes as long as a known one."""
    method = hash_method()
    if method not in _dummy_hashes:
        _dummy_hashes[method] = generate_password_hash("not-a-real-password", method=method)
    check_password_hash(_dummy_hashes[method], password)


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


def _attempted_email() -> str:
    """The email a sign-in attempt names, as the limiter's key: one account, many addresses."""
    return "login:" + (request.form.get("email") or "").strip().lower()[:320]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10 per minute; 100 per hour", methods=["POST"])
# Per email too, whoever asks (known or not, so it tells nothing): many addresses guessing
# one account's password are stopped as well.
@limiter.limit("30 per hour", methods=["POST"], key_func=_attempted_email)
def login():
    """Show the sign-in form; sign a parent or an admin in."""
    form = LoginForm(next=request.args.get("next", ""))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(safe_next(form.next.data) or home_for(current_user))
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.scalars(sa.select(User).where(User.email == email)).first()
        if user is None:
            _spend_equal_time(form.password.data)
        # The password is checked before `active`, so an inactive account answers as slowly.
        if user is not None and user.check_password(form.password.data) and user.active:
            destination = safe_next(form.next.data) or home_for(user)
            _fresh_session()
            login_user(user)
            user.last_login_at = utcnow()
            db.session.commit()
            return redirect(destination)
        flash(_("That email and password do not match an account."), "error")
    return render_template("portal/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    """Sign out and forget the session."""
    logout_user()
    _fresh_session()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))
