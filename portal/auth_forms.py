"""Forms for sign-in."""

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, SubmitField
from wtforms.validators import DataRequired, Length

from consent.i18n import lazy_gettext as _l


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])
    next = HiddenField()
    submit = SubmitField(_l("Sign in"))
