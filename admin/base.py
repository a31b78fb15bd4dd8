"""What every admin view shares: who may see it (by role) and CSRF on every form."""

from __future__ import annotations

from flask import abort, redirect, request, url_for
from flask_admin import BaseView
from flask_admin.contrib.sqla import ModelView
from flask_login import current_user

from consent.models import Role

ORG = (Role.ORG,)
ORG_AND_SITE = (Role.ORG, Role.SITE)
ALL_ADMINS = (Role.ORG, Role.SITE, Role.STAFF)


class RoleAccess:
    """Visible and usable only by the roles listed in `roles`; others get 403 and no menu item."""

    roles: tuple[Role, ...] = ORG

    def is_accessible(self) -> bool:
        return (
            current_user.is_authenticated
            and current_user.is_admin
            and current_user.role in self.roles
        )

    def is_visible(self) -> bool:
        return self.is_accessible()

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403)


class SecureView(RoleAccess, BaseView):
    """A custom admin page (forms are Flask-WTF forms with CSRF)."""


class SecureModelView(RoleAccess, ModelView):
    """A model list: read-only unless a view says otherwise; nothing is ever deleted here."""

    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    page_size = 50
