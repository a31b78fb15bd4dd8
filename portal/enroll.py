"""The public enrollment form: a family, its guardians and students, an explicit Yes/No text
choice for every cell number, and the parent's portal login."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import get_locale

from consent import choices
from consent.addresses import format_phone
from consent.enrollment import EnrollmentRefused
from consent.enrollment import enroll as enroll_family
from consent.extensions import db, limiter
from consent.i18n import gettext as _
from consent.tenant import current_organization
from consent.web import request_origin
from portal.enroll_forms import NO, YES, EnrollForm, collect

bp = Blueprint("enroll", __name__)


@bp.route("/enroll", methods=["GET", "POST"])
@limiter.limit("60 per hour", methods=["POST"])
def enroll():
    """Show the enrollment form; enroll the family when everything on it is right."""
    org = current_organization()
    if org is None:
        abort(404)
    form = EnrollForm()
    form.set_sites(org)
    disclosure = choices.text_disclosure(org)
    if request.method == "POST":
        enrollment = collect(form, org, language=str(get_locale() or "en"))
        if enrollment is not None:
            try:
                enroll_family(
                    org,
                    enrollment,
                    disclosure=disclosure,
                    choice_words={
                        YES: _("Yes, send me text messages"),
                        NO: _("No, do not send me text messages"),
                    },
                    origin=request_origin(),
                )
            except EnrollmentRefused as refusal:
                db.session.rollback()
                _field_by_id(form, refusal.field).errors.append(refusal.message)
            else:
                # The same answer whether the family was saved or the email was on record
                # already (then its owner is told, and nothing is saved).
                db.session.commit()
                flash(_("Thank you. Your enrollment is received."), "success")
                if _said_yes(enrollment):
                    flash(_stop_words(org), "info")
                session["enrolled_email"] = enrollment.login_email
                return redirect(url_for("enroll.check_email"))
        flash(_("Please correct the fields marked below. Nothing was saved."), "error")
        return render_template("portal/enroll.html", form=form, disclosure=disclosure, org=org), 422
    return render_template("portal/enroll.html", form=form, disclosure=disclosure, org=org)


@bp.get("/enroll/sent")
def check_email():
    """After enrolling: the link to open before signing in."""
    email = session.get("enrolled_email")
    if not email:
        return redirect(url_for("enroll.enroll"))
    return render_template("portal/enroll_check_email.html", email=email)


def _field_by_id(form, field_id: str):
    """The field of the (nested) form whose id is `field_id`."""
    stack = list(form)
    while stack:
        field = stack.pop()
        if field.id == field_id:
            if field.errors is None or isinstance(field.errors, tuple):
                field.errors = list(field.errors or [])
            return field
        if hasattr(field, "entries"):
            stack.extend(field.entries)
        elif hasattr(field, "form"):
            stack.extend(field.form)
    raise LookupError(field_id)


def _said_yes(enrollment) -> bool:
    return any(p.texts == YES for g in enrollment.guardians for p in g.phones)


def _stop_words(org) -> str:
    """Said after every "Yes", whatever is on record for the number (the page tells no one
    whether it replied STOP)."""
    return _(
        "Text messages: a number that replied STOP to our texts before gets them again only "
        "after it texts START to %(number)s.",
        number=format_phone(org.texting_number),
    )
