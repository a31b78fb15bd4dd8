"""Users (organization team): the admin logins, their roles and sites. Create with a password,
change role or site, deactivate. Password hashes are never shown; every change is audited."""

from __future__ import annotations

import sqlalchemy as sa
from flask_admin.contrib.sqla.fields import QuerySelectField
from flask_login import current_user
from wtforms import BooleanField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from admin.base import ORG, AdminForm, SecureModelView
from consent import audit
from consent.addresses import AddressError, normalize_email
from consent.extensions import db
from consent.i18n import gettext as _
from consent.i18n import lazy_gettext as _l
from consent.models import Role, Site, User, utcnow
from consent.tenant import current_organization

ADMIN_ROLES = (Role.ORG, Role.SITE, Role.STAFF)
ROLE_WORDS = {
    Role.ORG: _l("Organization team"),
    Role.SITE: _l("Site team"),
    Role.STAFF: _l("Staff (read-only)"),
}
MIN_PASSWORD = 12
AUDITED = ("email", "name", "role", "site_id", "active")


def _sites():
    org = current_organization()
    return db.session.scalars(
        sa.select(Site).where(Site.organization_id == org.id).order_by(Site.name)
    )


class UserForm(AdminForm):
    """An admin login: email, name, role, site (for a site team or staff), active."""

    email = StringField(_l("Email"), validators=[DataRequired(), Length(max=320)])
    name = StringField(_l("Name"), validators=[Optional(), Length(max=200)])
    role = SelectField(
        _l("Role"),
        choices=[SelectChoice(r.value, ROLE_WORDS[r]) for r in ADMIN_ROLES],
        validators=[DataRequired()],
    )
    site = QuerySelectField(
        _l("Site"),
        query_factory=_sites,
        allow_blank=True,
        blank_text=_l("(none: organization team)"),
        description=_l("A site team or staff member sees only this site's contacts and students."),
    )
    active = BooleanField(_l("Active (may sign in)"), default=True)
    password = PasswordField(
        _l("New password"),
        validators=[Optional(), Length(min=MIN_PASSWORD, max=200)],
        description=_l("At least 12 characters. Leave empty to keep the current password."),
    )

    def populate_obj(self, obj):
        """Copy the fields to the user, all but the password (hashed in on_model_change)."""
        for name, field in self._fields.items():
            if name not in ("password", "csrf_token"):
                field.populate_obj(obj, name)

    def validate_email(self, field):
        try:
            field.data = normalize_email(field.data)
        except AddressError as error:
            raise ValidationError(
                _("This is not an email address: %(why)s.", why=error.why)
            ) from None

    def validate_site(self, field):
        if self.role.data in (Role.SITE.value, Role.STAFF.value) and field.data is None:
            raise ValidationError(_("A site team or staff member needs a site."))


class NewUserForm(UserForm):
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(), Length(min=MIN_PASSWORD, max=200)],
        description=_l("At least 12 characters."),
    )


def _role_words(view, context, model, name):
    return ROLE_WORDS.get(model.role, model.role)


class UsersView(SecureModelView):
    """The organization's admin users."""

    roles = ORG
    can_create = True
    can_edit = True
    can_delete = False
    can_view_details = False
    column_list = ("email", "name", "role", "site", "active", "last_login_at")
    column_labels = {"site": _l("Site"), "last_login_at": _l("Last sign-in (UTC)")}
    column_formatters = {"role": _role_words}
    column_searchable_list = ("email", "name")
    column_filters = ("role", "active")
    column_default_sort = "email"
    form = UserForm

    def get_create_form(self):
        return NewUserForm

    def get_edit_form(self):
        return UserForm

    def get_query(self):
        org = current_organization()
        return (
            super().get_query().filter(User.organization_id == org.id, User.role.in_(ADMIN_ROLES))
        )

    def get_count_query(self):
        org = current_organization()
        return (
            super()
            .get_count_query()
            .filter(User.organization_id == org.id, User.role.in_(ADMIN_ROLES))
        )

    def get_one(self, id):
        user = db.session.get(User, id)
        org = current_organization()
        if user is None or user.organization_id != org.id or user.role not in ADMIN_ROLES:
            return None
        return user

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if obj is not None and not form.is_submitted():
            form.role.data = Role(obj.role).value
        return form

    def on_model_change(self, form, model, is_created):
        before = {} if is_created else self._before(model)
        model.role = Role(form.role.data)
        if model.role == Role.ORG:
            model.site = None
        if is_created:
            model.organization_id = current_organization().id
            model.email_verified_at = utcnow()  # staff vouch for the accounts they make
        if form.password.data:
            model.set_password(form.password.data)
            model.auth_version = (model.auth_version or 0) + 1  # its sessions end
        if model.id == current_user.id and (not model.active or model.role != Role.ORG):
            raise ValidationError(_("You cannot deactivate yourself or change your own role."))
        with db.session.no_autoflush:  # a new user must not find itself
            clash = db.session.scalars(
                sa.select(User.id).where(User.email == model.email, User.id != (model.id or 0))
            ).first()
        if clash is not None:
            raise ValidationError(_("That email already has an account."))
        db.session.flush()
        after = self._values(model)
        changes = {
            name: (before.get(name), after[name])
            for name in AUDITED
            if before.get(name) != after[name]
        }
        if form.password.data:
            changes["password"] = (audit.SECRET, audit.SECRET)
        what = f"admin user {model.email}" + (" (created)" if is_created else "")
        if changes:
            audit.record(current_user, what, changes)

    @staticmethod
    def _values(model) -> dict:
        return {
            "email": model.email,
            "name": model.name,
            "role": Role(model.role).value,
            "site_id": model.site.id if model.site else None,
            "active": bool(model.active),
        }

    def _before(self, model) -> dict:
        """The values as stored, before this form's changes."""
        history = sa.inspect(model).attrs
        values = {}
        for name in ("email", "name", "role", "active"):
            hist = history[name].history
            values[name] = hist.deleted[0] if hist.deleted else getattr(model, name)
        site_hist = history["site"].history
        old_site = site_hist.deleted[0] if site_hist.deleted else model.site
        values["site_id"] = old_site.id if old_site is not None else None
        values["role"] = Role(values["role"]).value
        values["active"] = bool(values["active"])
        return values


def register(admin) -> None:
    admin.add_view(UsersView(User, db, name=_l("Users"), endpoint="users", url="/admin/users"))
