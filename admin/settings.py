"""Settings (organization team): the texting number, the notification address, and each rule
of docs/rules.md with a line of help. Every change is audited (who, what, from, to)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_login import current_user
from wtforms import BooleanField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from admin.base import ORG, AdminPageForm, SecureView
from consent import purpose_settings, purposes, settings, words
from consent.addresses import AddressError, format_phone, normalize_email, normalize_phone
from consent.extensions import db
from consent.i18n import gettext as _
from consent.i18n import lazy_gettext as _l
from consent.models import Organization
from consent.tenant import current_organization

RULE_LABELS = {
    "text_requires_consent": _l("Text needs consent"),
    "stop_blocks_voice": _l("STOP also blocks calls"),
    "start_opts_in": _l("START opts back in"),
    "admin_may_record_opt_out": _l("Admins may record an opt-out"),
    "staff_cell_starts_opted_in": _l("Staff-entered cell numbers start opted in"),
    "revoke_all": _l("Revoke-all: a STOP stops texts and calls"),
}


class SettingsForm(AdminPageForm):
    """The organization's settings."""

    texting_number = StringField(
        _l("Texting number"),
        validators=[DataRequired(), Length(max=40)],
        description=_l("The number our texts come from; people reply STOP or START to it."),
    )
    notification_email = StringField(
        _l("Notification address"),
        validators=[DataRequired(), Length(max=320)],
        description=_l("Where we send notices of opt-outs."),
    )
    help_contact = StringField(
        _l("Help contact"),
        validators=[Length(max=200)],
        description=_l("Given in the answer to a HELP text."),
    )
    texts_about = StringField(
        _l("What our texts are about"), validators=[DataRequired(), Length(max=300)]
    )
    message_frequency = StringField(
        _l("How often we text"), validators=[DataRequired(), Length(max=100)]
    )
    terms_url = StringField(
        _l("Texting terms (web address)"),
        validators=[Length(max=500)],
        description=_l("Linked from the texting disclosure, as carriers ask. https://..."),
    )
    privacy_url = StringField(
        _l("Privacy policy (web address)"),
        validators=[Length(max=500)],
        description=_l("Linked from the texting disclosure. https://..."),
    )
    postal_address = StringField(
        _l("Postal address"),
        validators=[Length(max=300)],
        description=_l("Printed in the footer of every email (CAN-SPAM)."),
    )

    def validate_terms_url(self, field):
        field.data = _web_address(field.data)

    def validate_privacy_url(self, field):
        field.data = _web_address(field.data)

    def validate_postal_address(self, field):
        field.data = " ".join((field.data or "").split())

    voice_optout_key = SelectField(
        _l("Opt-out key during calls"),
        choices=[(str(d), str(d)) for d in range(10)],
        default="9",
        description=_l("The key a person presses during our calls to stop them (/voice/keypress)."),
    )

    time_zone = StringField(
        _l("Time zone"),
        validators=[Optional(), Length(max=64)],
        default="America/New_York",
        description=_l(
            "Admin pages show times in this zone, such as America/New_York or "
            "America/Los_Angeles; UTC shows on hover and in exports."
        ),
    )

    def validate_time_zone(self, field):
        field.data = (field.data or "").strip()
        if not words.valid_time_zone(field.data):
            raise ValidationError(_("This is not a time zone name, such as America/New_York."))

    def validate_texting_number(self, field):
        try:
            field.data = normalize_phone(field.data)
        except AddressError as error:
            raise ValidationError(
                _("This is not a phone number: %(why)s.", why=error.why)
            ) from None

    def validate_notification_email(self, field):
        try:
            field.data = normalize_email(field.data)
        except AddressError as error:
            raise ValidationError(
                _("This is not an email address: %(why)s.", why=error.why)
            ) from None


def _web_address(value: str | None) -> str:
    """An http(s) address with a host, or "" (never javascript: or data: on parents' pages)."""
    value = (value or "").strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("https", "http") or not parts.netloc or " " in value:
        raise ValidationError(_("Give a web address that starts with https://."))
    return value


for _name, _help in Organization.RULES.items():
    setattr(SettingsForm, _name, BooleanField(RULE_LABELS[_name], description=_help))


class SettingsView(SecureView):
    """Change the organization's settings."""

    roles = ORG

    @expose("/", methods=("GET", "POST"))
    def index(self):
        """The settings form; a POST saves the changed fields and audits them."""
        org = current_organization()
        form = SettingsForm(obj=org) if request.method == "GET" else SettingsForm()
        if request.method == "GET":
            form.texting_number.data = format_phone(org.texting_number)
        if form.validate_on_submit():
            values = {name: form[name].data for name in settings.TEXT_FIELDS + settings.RULE_FIELDS}
            values["time_zone"] = (values.get("time_zone") or "").strip() or org.time_zone
            changes = settings.update(org, values, current_user)
            db.session.commit()
            if changes:
                flash(_("Settings saved: %(fields)s.", fields=", ".join(changes)), "success")
            else:
                flash(_("Nothing changed."), "info")
            return redirect(url_for(".index"))
        return self.render(
            "admin/settings.html",
            form=form,
            text_fields=settings.TEXT_FIELDS,
            rule_fields=settings.RULE_FIELDS,
        )

    # --- the message purposes (docs/purposes.md) ---------------------------------------------

    @expose("/purposes", methods=("GET", "POST"))
    def purposes_view(self):
        """Every purpose of the organization in one form: names, order, who may turn it off
        per channel, whether it reaches opted-out addresses, and the one general purpose."""
        org = current_organization()
        form = AdminPageForm()
        errors: dict[str, str] = {}
        entered = None
        if request.method == "POST":
            if not form.validate_on_submit():
                abort(400)
            try:
                changes = purpose_settings.save_all(
                    org, request.form.to_dict(), request.form.get("general"), current_user
                )
            except purpose_settings.PurposeError as error:
                db.session.rollback()
                errors[error.field] = error.message
                entered = request.form
                flash(_("Nothing was saved: see the form below."), "error")
            else:
                db.session.commit()
                if changes:
                    flash(_("Kinds of messages saved."), "success")
                else:
                    flash(_("Nothing changed."), "info")
                return redirect(url_for(".purposes_view"))
        return self._purposes_page(form, errors, entered, 422 if errors else 200)

    @expose("/purposes/new", methods=("POST",))
    def purposes_add(self):
        """Add a purpose (its key is what the API names and never changes)."""
        org = current_organization()
        form = AdminPageForm()
        if not form.validate_on_submit():
            abort(400)
        try:
            added = purpose_settings.add(
                org,
                request.form.get("key", ""),
                request.form.get("name_en", ""),
                request.form.get("name_es", ""),
                current_user,
            )
        except purpose_settings.PurposeError as error:
            db.session.rollback()
            flash(_("Nothing was added: see the form below."), "error")
            return self._purposes_page(
                form, {"new-" + error.field: error.message}, None, 422, new=request.form
            )
        db.session.commit()
        flash(_("Added %(name)s.", name=added.name_en), "success")
        return redirect(url_for(".purposes_view"))

    @expose("/purposes/<int:purpose_id>/delete", methods=("POST",))
    def purposes_delete(self, purpose_id: int):
        """Delete a purpose nobody has a choice for; one with choices on record stays."""
        org = current_organization()
        if not AdminPageForm().validate_on_submit():
            abort(400)
        purpose = purposes.by_id(org, purpose_id)
        if purpose is None:
            abort(404)
        name = purpose.name_en
        try:
            purpose_settings.delete(org, purpose, current_user)
        except purpose_settings.PurposeError as error:
            db.session.rollback()
            flash(error.message, "error")
        else:
            db.session.commit()
            flash(_("Deleted %(name)s.", name=name), "success")
        return redirect(url_for(".purposes_view"))

    def _purposes_page(self, form, errors, entered, status, new=None):
        org = current_organization()
        page = self.render(
            "admin/settings_purposes.html",
            form=form,
            org_purposes=purposes.of(org),
            errors=errors,
            entered=entered,
            new=new or {},
            field_name=purpose_settings.field_name,
            channels=[(c.value, words.channel_name(c)) for c in purpose_settings.channels()],
        )
        return page, status


def register(admin) -> None:
    admin.add_view(SettingsView(name=_l("Settings"), endpoint="settings", url="/admin/settings"))
