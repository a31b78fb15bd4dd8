"""The forms of a contact's or student's record: a phone with its type and seed 001's
"Text Opt-In" checkbox, an email, and the remove buttons. Each form on the page has its own
prefix, so one page holds many of them."""

from __future__ import annotations

from wtforms import BooleanField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from admin.base import AdminPageForm
from consent.addresses import format_phone
from consent.i18n import lazy_gettext as _l
from consent.models import Phone, PhoneKind, Status

KIND_CHOICES = [
    SelectChoice(PhoneKind.CELL.value, _l("Cell")),
    SelectChoice(PhoneKind.HOME.value, _l("Home")),
    SelectChoice(PhoneKind.WORK.value, _l("Work")),
]


class PhoneForm(AdminPageForm):
    """Add or correct a phone."""

    number = StringField(
        _l("Phone number"),
        validators=[DataRequired(message=_l("Enter the phone number.")), Length(max=40)],
    )
    kind = SelectField(_l("Type"), choices=KIND_CHOICES, default=PhoneKind.CELL.value)
    text_opt_in = BooleanField(_l("Text Opt-In"))
    note = StringField(
        _l("Note, when you untick Text Opt-In (who asked, and how)"),
        validators=[Optional(), Length(max=1000)],
    )


class EmailForm(AdminPageForm):
    """Add or correct an email address."""

    address = StringField(
        _l("Email address"),
        validators=[DataRequired(message=_l("Enter the email address.")), Length(max=320)],
    )


class RemoveForm(AdminPageForm):
    """A remove button (the CSRF token is all it carries)."""


def new_phone_form(formdata=None) -> PhoneForm:
    return PhoneForm(formdata=formdata, prefix="new-phone", text_opt_in=True)


def phone_form(phone: Phone, text_status: str | None, formdata=None) -> PhoneForm:
    """The form of one phone, its box ticked when the number is opted in to texts."""
    return PhoneForm(
        formdata=formdata,
        prefix=f"phone-{phone.id}",
        number=format_phone(phone.number),
        kind=phone.kind.value,
        text_opt_in=text_status == Status.OPTED_IN,
    )


def new_email_form(formdata=None) -> EmailForm:
    return EmailForm(formdata=formdata, prefix="new-email")


def email_form(email, formdata=None) -> EmailForm:
    return EmailForm(formdata=formdata, prefix=f"email-{email.id}", address=email.address)
