"""The form behind every toggle on the account pages: one address, one channel, on or off."""

from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import AnyOf, DataRequired, Length


class ToggleForm(FlaskForm):
    target = HiddenField(validators=[DataRequired(), Length(max=40)])
    channel = HiddenField(validators=[AnyOf(["text", "voice", "email"])])
    allow = HiddenField(validators=[AnyOf(["on", "off"])])
