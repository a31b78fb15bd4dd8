"""Forms of the account pages: ask for a link by email, set a password, change it, and the
one-button forms behind signed links (the saved language is portal.account_forms')."""

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length, ValidationError

from consent.addresses import AddressError, normalize_email
from consent.i18n import lazy_gettext as _l


class EmailForm(FlaskForm):
    """The email on record, to send a link to."""

    email = EmailField(
        _l("Email"),
        validators=[DataRequired(message=_l("Enter your email address.")), Length(max=320)],
    )

    normalized: str | None = None

    def validate_email(self, field):
        try:
            self.normalized = normalize_email((field.data or "").strip())
        except AddressError as exc:
            raise ValidationError(
                _l("Enter a valid email address (%(why)s).", why=exc.why)
            ) from None


class NewPasswordForm(FlaskForm):
    """A new password, twice (the checks are consent.accounts.password_problem)."""

    password = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=200)])
    confirm = PasswordField(_l("New password again"), validators=[Length(max=200)])


class ChangePasswordForm(NewPasswordForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired(), Length(max=200)])


class ButtonForm(FlaskForm):
    """A button with nothing but the CSRF token."""
