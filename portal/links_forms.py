"""Forms of the signed-link pages and the public opt-back-in page."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, SelectChoice, StringField, SubmitField
from wtforms.validators import (
    AnyOf,
    DataRequired,
    InputRequired,
    Length,
    Optional,
    Regexp,
    ValidationError,
)

from consent.addresses import AddressError, is_email_like, normalize
from consent.i18n import lazy_gettext as _l

CHANNEL_CHOICES = [
    SelectChoice("text", _l("Text messages")),
    SelectChoice("voice", _l("Calls")),
    SelectChoice("email", _l("Email")),
]


class OptBackInForm(FlaskForm):
    """An email address or a phone number, and the channel to get again."""

    channel = RadioField(
        _l("What do you want to receive again?"),
        choices=CHANNEL_CHOICES,
        validators=[InputRequired(message=_l("Choose text messages, calls or email."))],
    )
    address = StringField(
        _l("Your email address or phone number"),
        validators=[
            DataRequired(message=_l("Enter your email address or phone number.")),
            Length(max=320),
        ],
    )
    submit = SubmitField(_l("Send me a confirmation"))

    normalized: str | None = None

    def __init__(self, *args, region: str = "US", **kwargs):
        super().__init__(*args, **kwargs)
        self.region = region

    def validate_address(self, field):
        channel = self.channel.data
        value = (field.data or "").strip()
        if channel == "email" and not is_email_like(value):
            raise ValidationError(_l("For email, enter an email address."))
        if channel in ("text", "voice") and is_email_like(value):
            raise ValidationError(_l("For text messages or calls, enter a phone number."))
        if channel not in ("text", "voice", "email"):
            return  # the channel's own error says what to do
        try:
            self.normalized = normalize(channel, value, self.region)
        except AddressError as error:
            if channel == "email":
                message = _l("Enter a complete email address, like name@example.org.")
            else:
                message = _l("Enter a phone number with its area code, like 202-555-0123.")
            raise ValidationError(message) from error


class ButtonForm(FlaskForm):
    """A single button (the CSRF token is all it carries)."""


class PreferencesForm(FlaskForm):
    """The two answers of the preferences page."""

    yes = SubmitField(_l("Yes, send me text messages"))
    no = SubmitField(_l("No, do not send me text messages"))


class PurposeChoiceForm(FlaskForm):
    """One kind of message on or off for the link's email address, or (channel text or voice,
    address the number) for a cell number the link covers."""

    purpose = HiddenField(validators=[DataRequired(), Regexp(r"^[0-9]{1,9}$")])
    allow = HiddenField(validators=[AnyOf(["on", "off"])])
    channel = HiddenField(validators=[Optional(), AnyOf(["email", "text", "voice"])])
    address = HiddenField(validators=[Optional(), Length(max=320)])
