"""The parent's account pages: their own settings, the family's contacts and students, each
address with its toggles. Parents reach only their own family; anything else is a 404."""

from __future__ import annotations

from functools import wraps

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import get_locale, refresh
from flask_login import current_user, login_required

from consent import choices, profile, verification
from consent.addresses import format_phone
from consent.database import reads_on_get
from consent.extensions import db, limiter
from consent.i18n import gettext as _
from consent.models import Student
from consent.tenant import current_organization
from consent.tokens import TokenError
from consent.web import request_origin
from portal.account_forms import (
    ButtonForm,
    CodeForm,
    EmailForm,
    LanguageForm,
    PhoneForm,
    PurposeToggleForm,
    ToggleForm,
)

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
        _keep_or_undo(result)
        return redirect(request.path)
    return render_template(
        template,
        person=person,
        person_kind="students" if isinstance(person, Student) else "contacts",
        rows=choices.rows_for(org, person),
        disclosure=choices.text_disclosure(org),
        blocked_words=choices.carrier_block_words(org),
        **context,
    )


@bp.route("/settings", methods=["GET", "POST"])
@reads_on_get
@parent_only
def settings():
    """The parent's own details and the toggles of their own addresses."""
    return _person_page(current_user.contact, "portal/account_settings.html")


@bp.get("/contacts")
@reads_on_get
@parent_only
def contacts():
    """The family's other contacts, each with their addresses and statuses."""
    org = current_organization()
    others = [c for c in g.family.contacts if c.id != current_user.contact_id]
    people = [(c, choices.rows_for(org, c)) for c in others]
    return render_template("portal/account_contacts.html", people=people)


@bp.route("/contacts/<int:contact_id>", methods=["GET", "POST"])
@reads_on_get
@parent_only
def contact(contact_id: int):
    """One contact of the family: details and toggles."""
    person = choices.find_person(g.family, "contact", contact_id)
    if person is None:
        abort(404)
    return _person_page(person, "portal/account_person.html", kind=_("Contact"), is_student=False)


@bp.get("/students")
@reads_on_get
@parent_only
def students():
    """The family's students, each with their addresses and statuses."""
    org = current_organization()
    people = [(s, choices.rows_for(org, s)) for s in g.family.students]
    return render_template("portal/account_students.html", people=people)


@bp.route("/students/<int:student_id>", methods=["GET", "POST"])
@reads_on_get
@parent_only
def student(student_id: int):
    """One student of the family: school, grade and the toggles of the student's addresses."""
    person = choices.find_person(g.family, "student", student_id)
    if person is None:
        abort(404)
    return _person_page(person, "portal/account_person.html", kind=_("Student"), is_student=True)


@bp.post("/<person_kind>/<int:person_id>/purposes")
@parent_only
def set_purpose(person_kind: str, person_id: int):
    """One cell of a purposes table: turn a message purpose on or off for one channel of one
    of the family's addresses (the channel-wide choice stays as it is)."""
    person = _person_or_404(person_kind, person_id)
    form = PurposeToggleForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        result = choices.set_purpose(
            current_organization(),
            current_user,
            person,
            form.target.data,
            form.channel.data,
            int(form.purpose.data),
            form.allow.data == "on",
            request_origin(),
        )
    except choices.NotFound:
        abort(404)
    _keep_or_undo(result)
    return redirect(person_url(person) + "#purposes-" + form.target.data)


def _keep_or_undo(result: choices.Result) -> None:
    """Commit a change that was made, roll back one refused; say which on the next page."""
    if result.ok:
        db.session.commit()
        flash(result.message, "success")
    else:
        db.session.rollback()
        flash(result.message, "error")


# --- editing the record: phones, emails, language ---------------------------------------------

CODE_LIMIT = "10 per minute; 40 per hour"
SEND_LIMIT = "5 per minute; 20 per hour"
PERSON_KINDS = {"contacts": "contact", "students": "student"}


def _person_or_404(person_kind: str, person_id: int):
    kind = PERSON_KINDS.get(person_kind)
    person = choices.find_person(g.family, kind, person_id) if kind else None
    if person is None:
        abort(404)
    return person


def person_url(person) -> str:
    """The page that shows this person's addresses."""
    if isinstance(person, Student):
        return url_for("account.student", student_id=person.id)
    if person.id == current_user.contact_id:
        return url_for("account.settings")
    return url_for("account.contact", contact_id=person.id)


def _language() -> str:
    return str(get_locale() or "en")


def _edit_page(template: str, person, form, status: int = 200, **context):
    page = render_template(
        template, person=person, form=form, back=person_url(person), button=ButtonForm(), **context
    )
    return page, status


def _saved(message: str, to: str):
    db.session.commit()
    flash(message, "success")
    return redirect(to)


@bp.route("/<person_kind>/<int:person_id>/phones/new", methods=["GET", "POST"])
@parent_only
def add_phone(person_kind: str, person_id: int):
    """Add a phone (with its type) to a contact or student of the family."""
    person = _person_or_404(person_kind, person_id)
    form = PhoneForm()
    if form.validate_on_submit():
        try:
            phone = profile.add_phone(
                current_organization(), current_user, person, form.number.data, form.kind.data
            )
        except profile.ProfileError as error:
            db.session.rollback()
            form.number.errors = [str(error)]
        else:
            return _saved(
                _(
                    "Added %(number)s. Confirm it to change its choices.",
                    number=format_phone(phone.number),
                ),  # fmt: skip
                person_url(person),
            )
    return _edit_page(
        "portal/account_phone.html", person, form, 400 if form.errors else 200, phone=None
    )


@bp.route("/phones/<int:phone_id>", methods=["GET", "POST"])
@parent_only
def edit_phone(phone_id: int):
    """Correct a phone's number or type (a new number must be confirmed again)."""
    phone = profile.find_phone(g.family, phone_id)
    if phone is None:
        abort(404)
    person = phone.owner
    form = PhoneForm(number=format_phone(phone.number), kind=phone.kind.value)
    if form.validate_on_submit():
        try:
            profile.change_phone(
                current_organization(), current_user, phone, form.number.data, form.kind.data
            )
        except profile.ProfileError as error:
            db.session.rollback()
            form.number.errors = [str(error)]
        else:
            return _saved(_("Saved."), person_url(person))
    return _edit_page(
        "portal/account_phone.html",
        person,
        form,
        400 if form.errors else 200,
        phone=phone,
        shown=format_phone(phone.number),
    )


@bp.post("/phones/<int:phone_id>/remove")
@parent_only
def remove_phone(phone_id: int):
    """Take a phone off the record; its consent stays on record with the address."""
    phone = profile.find_phone(g.family, phone_id)
    if phone is None:
        abort(404)
    if not ButtonForm().validate_on_submit():
        abort(400)
    person, shown = phone.owner, format_phone(phone.number)
    profile.remove_phone(current_user, phone)
    return _saved(_("Removed %(address)s.", address=shown), person_url(person))


@bp.route("/<person_kind>/<int:person_id>/emails/new", methods=["GET", "POST"])
@parent_only
def add_email(person_kind: str, person_id: int):
    """Add an email address to a contact or student of the family."""
    person = _person_or_404(person_kind, person_id)
    form = EmailForm()
    if form.validate_on_submit():
        try:
            email = profile.add_email(current_user, person, form.address.data)
        except profile.ProfileError as error:
            db.session.rollback()
            form.address.errors = [str(error)]
        else:
            return _saved(
                _("Added %(address)s. Confirm it to change its choices.", address=email.address),
                person_url(person),
            )
    return _edit_page(
        "portal/account_email.html", person, form, 400 if form.errors else 200, email=None
    )


@bp.route("/emails/<int:email_id>", methods=["GET", "POST"])
@parent_only
def edit_email(email_id: int):
    """Correct an email address (the new one must be confirmed again)."""
    email = profile.find_email(g.family, email_id)
    if email is None:
        abort(404)
    person = email.owner
    form = EmailForm(address=email.address)
    if form.validate_on_submit():
        try:
            profile.change_email(current_user, email, form.address.data)
        except profile.ProfileError as error:
            db.session.rollback()
            form.address.errors = [str(error)]
        else:
            return _saved(_("Saved."), person_url(person))
    return _edit_page(
        "portal/account_email.html", person, form, 400 if form.errors else 200, email=email
    )


@bp.post("/emails/<int:email_id>/remove")
@parent_only
def remove_email(email_id: int):
    """Take an email off the record; its consent stays on record with the address."""
    email = profile.find_email(g.family, email_id)
    if email is None:
        abort(404)
    if not ButtonForm().validate_on_submit():
        abort(400)
    person, shown = email.owner, email.address
    profile.remove_email(current_user, email)
    return _saved(_("Removed %(address)s.", address=shown), person_url(person))


@bp.post("/language")
@parent_only
def language():
    """Save the language the parent reads: pages, and the emails and texts sent to them."""
    form = LanguageForm()
    if not form.validate_on_submit():
        abort(400)
    profile.set_language(current_user, form.language.data)
    db.session.commit()
    session["lang"] = form.language.data  # this session reads it too, at once
    refresh()  # the words below are in the language just saved
    flash(_("Your language is saved."), "success")
    return redirect(url_for("account.settings"))


# --- confirming a new address ---------------------------------------------------------------


@bp.post("/verify-phone/<int:phone_id>/send")
@limiter.limit(SEND_LIMIT)
@parent_only
def send_phone_code(phone_id: int):
    """Send a code to the phone itself (a text, or a call for a landline), then ask for it."""
    phone = profile.find_phone(g.family, phone_id)
    if phone is None:
        abort(404)
    if not ButtonForm().validate_on_submit():
        abort(400)
    result = verification.send_phone_code(
        current_organization(), current_user, phone, language=_language()
    )
    if not result.ok:
        db.session.rollback()
        flash(result.message, "error")
        if verification.is_verified(phone):
            return redirect(person_url(phone.owner))
        return redirect(url_for("account.verify_phone", phone_id=phone.id))
    return _saved(result.message, url_for("account.verify_phone", phone_id=phone.id))


@bp.route("/verify-phone/<int:phone_id>", methods=["GET", "POST"])
@limiter.limit(CODE_LIMIT, methods=["POST"])
@parent_only
def verify_phone(phone_id: int):
    """Enter the code sent to the phone; a right code confirms it."""
    phone = profile.find_phone(g.family, phone_id)
    if phone is None:
        abort(404)
    if verification.is_verified(phone):
        return redirect(person_url(phone.owner))
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        result = verification.check_phone_code(phone, form.code.data)
        db.session.commit()  # a wrong code counts as an attempt
        if result.ok:
            flash(result.message, "success")
            return redirect(person_url(phone.owner))
        form.code.errors = [result.message]
    if form.errors:
        status = 400
    waiting = verification.open_code(phone)
    page = render_template(
        "portal/account_verify_phone.html",
        phone=phone,
        person=phone.owner,
        shown=format_phone(phone.number),
        form=form,
        button=ButtonForm(),
        waiting=waiting,
        back=person_url(phone.owner),
    )
    return page, status


@bp.post("/emails/<int:email_id>/send-link")
@limiter.limit(SEND_LIMIT)
@parent_only
def send_email_link(email_id: int):
    """Send a link to the email address itself; opening it confirms the address."""
    email = profile.find_email(g.family, email_id)
    if email is None:
        abort(404)
    if not ButtonForm().validate_on_submit():
        abort(400)
    result = verification.send_email_link(
        current_organization(), current_user, email, language=_language()
    )
    if not result.ok:
        db.session.rollback()
        flash(result.message, "error")
        return redirect(person_url(email.owner))
    return _saved(result.message, person_url(email.owner))


@bp.route("/verify-email/<token>", methods=["GET", "POST"])
@limiter.limit("30 per minute; 300 per hour")
def verify_email(token: str):
    """From the link in the email: GET shows a button, POST confirms the address (no sign-in
    needed: the link itself is the proof that the mailbox is the owner's)."""
    try:
        link = verification.open_email_link(token)
    except TokenError as error:
        page = render_template(
            "portal/links/bad_link.html",
            kind=error.kind,
            purpose="verify_email",
            org=current_organization(),
        )
        return page, error.status_code
    form = ButtonForm()
    if form.validate_on_submit():
        result = verification.use_email_link(link)
        db.session.commit()
        return render_template("portal/account_email_confirmed.html", message=result.message)
    page = render_template(
        "portal/account_verify_email.html", email=link.email, form=form, org=current_organization()
    )
    return page, 400 if form.errors else 200
