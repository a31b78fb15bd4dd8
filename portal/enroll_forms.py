"""The enrollment form: the family, up to four guardians with their phones, one or more
students, and a portal password. `collect` checks it all and turns it into an Enrollment,
or puts each error at its field."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    EmailField,
    FieldList,
    Form,
    FormField,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TelField,
)
from wtforms.validators import Length, Optional

from consent.addresses import AddressError, normalize_email, normalize_phone
from consent.enrollment import Enrollment, GuardianEntry, PhoneEntry, StudentEntry
from consent.i18n import gettext as _
from consent.i18n import lazy_gettext as _l
from consent.models import Organization

GUARDIANS = 4
PHONES_PER_GUARDIAN = 2
STUDENTS = 4
MIN_PASSWORD = 10
GRADES = ["PK", "K", *[str(n) for n in range(1, 13)]]
YES, NO = "yes", "no"


def _grade_words(grade: str) -> str:
    return {"PK": _l("Pre-kindergarten"), "K": _l("Kindergarten")}.get(grade, grade)


class PhoneForm(Form):
    number = TelField(_l("Phone number"), validators=[Optional(), Length(max=40)])
    kind = SelectField(
        _l("Type"),
        choices=[
            SelectChoice("", _l("Choose a type")),
            SelectChoice("cell", _l("Cell")),
            SelectChoice("home", _l("Home")),
            SelectChoice("work", _l("Work")),
        ],
        validate_choice=False,
        default="",
    )
    texts = RadioField(
        _l("Text messages to this number"),
        choices=[
            SelectChoice(YES, _l("Yes, send me text messages")),
            SelectChoice(NO, _l("No, do not send me text messages")),
        ],
        validate_choice=False,
    )


class GuardianForm(Form):
    first_name = StringField(_l("First name"), validators=[Length(max=100)])
    last_name = StringField(_l("Last name"), validators=[Length(max=100)])
    relationship = StringField(_l("Relationship to the students"), validators=[Length(max=50)])
    email = EmailField(_l("Email"), validators=[Length(max=320)])
    phones = FieldList(
        FormField(PhoneForm), min_entries=PHONES_PER_GUARDIAN, max_entries=PHONES_PER_GUARDIAN
    )


class StudentForm(Form):
    first_name = StringField(_l("First name"), validators=[Length(max=100)])
    last_name = StringField(_l("Last name"), validators=[Length(max=100)])
    site = SelectField(_l("School"), validate_choice=False, default="")
    grade = SelectField(
        _l("Grade"),
        choices=[SelectChoice("", _l("Choose a grade"))]
        + [SelectChoice(g, _grade_words(g)) for g in GRADES],
        validate_choice=False,
        default="",
    )


class EnrollForm(FlaskForm):
    family_name = StringField(_l("Family name"), validators=[Length(max=200)])
    guardians = FieldList(FormField(GuardianForm), min_entries=GUARDIANS, max_entries=GUARDIANS)
    students = FieldList(FormField(StudentForm), min_entries=STUDENTS, max_entries=STUDENTS)
    password = PasswordField(_l("Portal password"), validators=[Length(max=200)])
    confirm = PasswordField(_l("Password again"), validators=[Length(max=200)])

    def set_sites(self, org: Organization) -> None:
        """The schools to choose from: the organization's sites."""
        choices = [SelectChoice("", _("Choose a school"))] + [
            SelectChoice(str(s.id), s.name) for s in org.sites
        ]
        for entry in self.students:
            entry.form.site.choices = choices


def _text(field) -> str:
    return (field.data or "").strip()


def _blank(subform, names) -> bool:
    return not any(_text(subform[name]) for name in names)


def collect(form: EnrollForm, org: Organization, language: str = "en") -> Enrollment | None:
    """Check the whole form; an Enrollment when it is right, else None with errors at fields."""
    ok = form.validate()
    region = org.default_region or "US"
    site_ids = {s.id for s in org.sites}

    guardians: list[GuardianEntry] = []
    seen_choices: dict[str, tuple[str, str]] = {}
    for index, entry in enumerate(form.guardians):
        g = entry.form
        phone_forms = [p.form for p in g.phones]
        empty_phones = all(_blank(p, ["number"]) for p in phone_forms)
        if (
            index > 0
            and _blank(g, ["first_name", "last_name", "email", "relationship"])
            and empty_phones
        ):
            continue  # an optional guardian left empty
        first, last = _text(g.first_name), _text(g.last_name)
        if not first:
            ok = _error(g.first_name, _("Enter the first name."))
        if not last:
            ok = _error(g.last_name, _("Enter the last name."))
        email = None
        if _text(g.email):
            try:
                email = normalize_email(_text(g.email))
            except AddressError as exc:
                ok = _error(g.email, _("Enter a valid email address (%(why)s).", why=exc.why))
        elif index == 0:
            ok = _error(g.email, _("Enter an email address: it is your sign-in."))
        phones = []
        for p in phone_forms:
            phone = _phone(p, region, seen_choices)
            if phone is False:
                ok = False
            elif phone is not None:
                phones.append(phone)
        guardians.append(
            GuardianEntry(
                position=index + 1,
                first_name=first,
                last_name=last,
                relationship=_text(g.relationship) or "Parent",
                email=email,
                phones=phones,
                email_field=g.email.id,
            )
        )

    students: list[StudentEntry] = []
    for index, entry in enumerate(form.students):
        s = entry.form
        if _blank(s, ["first_name", "last_name", "site", "grade"]):
            continue
        first, last = _text(s.first_name), _text(s.last_name)
        if not first:
            ok = _error(s.first_name, _("Enter the student's first name."))
        if not last:
            ok = _error(s.last_name, _("Enter the student's last name."))
        site_id = int(s.site.data) if (s.site.data or "").isdigit() else None
        if site_id not in site_ids:
            ok = _error(s.site, _("Choose the student's school."))
        if s.grade.data not in GRADES:
            ok = _error(s.grade, _("Choose the student's grade."))
        students.append(StudentEntry(first, last, site_id or 0, s.grade.data or "", index))
    if not students:
        ok = _error(form.students[0].form.first_name, _("Add at least one student."))

    password = form.password.data or ""
    if len(password) < MIN_PASSWORD:
        ok = _error(
            form.password, _("Use at least %(n)d characters for the password.", n=MIN_PASSWORD)
        )
    elif password != (form.confirm.data or ""):
        ok = _error(form.confirm, _("The two passwords differ."))
    family_name = _text(form.family_name) or (guardians[0].last_name if guardians else "")
    if not ok or not guardians:
        return None
    return Enrollment(
        family_name=family_name,
        guardians=guardians,
        students=students,
        password=password,
        login_email=guardians[0].email,
        language=language,
    )


def _phone(p: PhoneForm, region: str, seen: dict) -> PhoneEntry | None | bool:
    """One phone row: None when empty, False when wrong (errors set), else a PhoneEntry."""
    raw, kind, texts = _text(p.number), p.kind.data or "", p.texts.data
    if not raw:
        if kind == "cell" and texts:
            return _error(p.number, _("Enter the cell number, or clear its text-message choice."))
        return None
    ok = True
    number = None
    try:
        number = normalize_phone(raw, region)
    except AddressError as exc:
        ok = _error(p.number, _("Enter a valid phone number (%(why)s).", why=exc.why))
    if kind not in ("cell", "home", "work"):
        ok = _error(p.kind, _("Choose Cell, Home or Work."))
    if kind == "cell":
        if texts not in (YES, NO):
            ok = _error(
                p.texts,
                _("Choose whether this cell number may get text messages: Yes or No."),
            )
        elif number is not None:
            earlier = seen.get(number)
            if earlier is not None and earlier[0] != texts:
                ok = _error(
                    p.texts,
                    _(
                        "This number appears twice with different choices. Choose the same for both."
                    ),
                )
            seen[number] = (texts, p.texts.id)
    if not ok:
        return False
    return PhoneEntry(
        number=number,
        kind=kind,
        texts=texts if kind == "cell" else None,
        field=p.texts.id if kind == "cell" else p.number.id,
    )


def _error(field, message: str) -> bool:
    """Put an error at a field; False, so callers can write `ok = _error(...)`."""
    field.errors = [*list(field.errors or []), message]
    return False
