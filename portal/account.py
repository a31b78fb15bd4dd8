"""The parent's account pages: their own settings, the family's contacts and students, each
address with its toggles. Parents reach only their own family; anything else is a 404."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, flash, g, redirect, render_template, request
from flask_babel import gettext as _
from flask_login import current_user, login_required

from consent.extensions import db
from consent.tenant import current_organization
from consent.web import request_origin
from portal import choices
from portal.account_forms import ToggleForm

bp = Blueprint("account", __name__, url_prefix="/account")


def parent_only(view):
    """Signed-in parents only: others signed in get a 404, the signed-out go to sign-in."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        family = choices.family_of(current_user)
        if family is None:
            abort(404)
        g.family = family
        return view(*args, **kwargs)

    return wrapped


def _person_page(person, template: str, **context):
    """Show a person's addresses and toggles; on POST, apply one toggle and come back."""
    org = current_organization()
    if request.method == "POST":
        form = ToggleForm()
        if not form.validate_on_submit():
            abort(400)
        try:
            result = choices.set_choice(
                org,
                current_user,
                person,
                form.target.data,
                form.channel.data,
                form.allow.data == "on",
                request_origin(),
            )
        except choices.NotFound:
            abort(404)
        if result.ok:
            db.session.commit()
            flash(result.message, "success")
        else:
            db.session.rollback()
            flash(result.message, "error")
        return redirect(request.path)
    return render_template(
        template,
        person=person,
        rows=choices.rows_for(org, person),
        disclosure=choices.text_disclosure(org),
        blocked_words=choices.carrier_block_words(org),
        **context,
    )


@bp.route("/settings", methods=["GET", "POST"])
@parent_only
def settings():
    """The parent's own details and the toggles of their own addresses."""
    return _person_page(current_user.contact, "portal/account_settings.html")


@bp.get("/contacts")
@parent_only
def contacts():
    """The family's other contacts, each with their addresses and statuses."""
    org = current_organization()
    others = [c for c in g.family.contacts if c.id != current_user.contact_id]
    people = [(c, choices.rows_for(org, c)) for c in others]
    return render_template("portal/account_contacts.html", people=people)


@bp.route("/contacts/<int:contact_id>", methods=["GET", "POST"])
@parent_only
def contact(contact_id: int):
    """One contact of the family: details and toggles."""
    person = choices.find_person(g.family, "contact", contact_id)
    if person is None:
        abort(404)
    return _person_page(person, "portal/account_person.html", kind=_("Contact"), is_student=False)


@bp.get("/students")
@parent_only
def students():
    """The family's students, each with their addresses and statuses."""
    org = current_organization()
    people = [(s, choices.rows_for(org, s)) for s in g.family.students]
    return render_template("portal/account_students.html", people=people)


@bp.route("/students/<int:student_id>", methods=["GET", "POST"])
@parent_only
def student(student_id: int):
    """One student of the family: school, grade and the toggles of the student's addresses."""
    person = choices.find_person(g.family, "student", student_id)
    if person is None:
        abort(404)
    return _person_page(person, "portal/account_person.html", kind=_("Student"), is_student=True)
