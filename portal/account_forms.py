"""The forms of the account pages: the toggle behind every switch, and the profile edits
(a phone with its type, an email, a confirmation code, the saved language)."""

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, SelectChoice, SelectField, StringField, TelField
from wtforms.validators import AnyOf, DataRequired, Length, Regexp

from consent.i18n import lazy_gettext as _l


class ToggleForm(FlaskForm):
    target = HiddenField(validators=[DataRequired(), Length(max=40)])
    channel = HiddenField(validators=[AnyOf(["text", "voice", "email"])])
    allow = HiddenField(validators=[AnyOf(["on", "off"])])


class PurposeToggleForm(FlaskForm):
    """One message purpose on one channel of one address (the purposes table)."""

    target = HiddenField(validators=[DataRequired(), Length(max=40)])
    channel = HiddenField(validators=[AnyOf(["text", "voice", "email"])])
    purpose = HiddenField(validators=[DataRequired(), Regexp(r"^[0-9]{1,9}$")])
    allow = HiddenField(validators=[AnyOf(["on", "off"])])


class PhoneForm(FlaskForm):
    """A phone number and its type."""

    number = TelField(
        _l("Phone number"),
        validators=[DataRequired(message=_l("Enter the phone number.")), Length(max=40)],
    )
    kind = SelectField(
        _l("Type"),
        choices=[
            SelectChoice("cell", _l("Cell")),
            SelectChoice("home", _l("Home")),
            SelectChoice("work", _l("Work")),
        ],
        validators=[AnyOf(["cell", "home", "work"], message=_l("Choose cell, home or work."))],
        validate_choice=False,
    )


class EmailForm(FlaskForm):
    """An email address."""

    address = EmailField(
        _l("Email address"),
        validators=[DataRequired(message=_l("Enter the email address.")), Length(max=320)],
    )


class CodeForm(FlaskForm):
    """The six-digit code sent to a phone."""

    code = StringField(
        _l("Code"),
        validators=[DataRequired(message=_l("Enter the code.")), Length(max=20)],
        render_kw={"inputmode": "numeric", "autocomplete": "one-time-code"},
    )


class LanguageForm(FlaskForm):
    """The language the parent reads."""

    language = SelectField(
        _l("Language"),
        choices=[SelectChoice("en", "English"), SelectChoice("es", "Español")],
        validators=[AnyOf(["en", "es"])],
        validate_choice=False,
    )


class ButtonForm(FlaskForm):
    """A button that posts nothing but its CSRF token (send a code, remove an address)."""
