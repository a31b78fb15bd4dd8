"""What every admin view shares: who may see it (by role) and CSRF on every form.

Roles (docs/identity.md "Staff roles"): the organization team (ORG) sees and does everything; a site team (SITE) sees
the opt-out list and its own site's contacts and students; staff (STAFF) see the status of their
site's contacts and students, read-only. A view lists its roles in `roles`; any other role gets no
menu item and a 403.

CSRF: the app's global CSRFProtect checks every POST's `csrf_token` against Flask-WTF's session
token, Flask-Admin's own posts (list actions, deletes, create/edit forms) included. So every
Flask-Admin form is built on `AdminForm` (Flask-WTF's FlaskForm + Flask-Admin's BaseForm), which
renders that token; custom pages use Flask-WTF forms (`AdminPageForm`).
"""

from __future__ import annotations

from flask import abort, redirect, request, url_for
from flask_admin import BaseView
from flask_admin.contrib.sqla import ModelView
from flask_admin.form import BaseForm as FlaskAdminBaseForm
from flask_login import current_user
from flask_wtf import FlaskForm

from consent.ledger import Actor, Origin
from consent.models import Role
from consent.web import request_origin

ORG = (Role.ORG,)
ORG_AND_SITE = (Role.ORG, Role.SITE)
ALL_ADMINS = (Role.ORG, Role.SITE, Role.STAFF)


class AdminForm(FlaskForm, FlaskAdminBaseForm):
    """Flask-Admin's form base with Flask-WTF's CSRF token (the one CSRFProtect checks)."""


class AdminPageForm(FlaskForm):
    """Base for the forms of custom admin pages (CSRF from Flask-WTF)."""


def has_role(*roles: Role) -> bool:
    """True when the signed-in user is an admin with one of `roles`."""
    return bool(
        current_user.is_authenticated
        and current_user.is_admin
        and current_user.active
        and current_user.role in roles
    )


def require_role(*roles: Role) -> None:
    """Abort with 403 unless the signed-in admin has one of `roles` (for actions inside a view)."""
    if not has_role(*roles):
        abort(403)


def may_clear_bounce(user) -> bool:
    """Only the organization team clears a bounce: on the contact page, the Opt-Out List's
    action and its row page alike."""
    return bool(user.is_authenticated and user.role == Role.ORG)


def site_scope() -> int | None:
    """The site id a site team or staff member is limited to; None for the organization team."""
    if current_user.role in (Role.SITE, Role.STAFF):
        return current_user.site_id
    return None


def admin_actor() -> Actor:
    """The signed-in admin as the ledger's actor."""
    return Actor.for_user(current_user)


def admin_origin() -> Origin:
    """The request's address and browser, kept as evidence on the event."""
    return request_origin()


class RoleAccess:
    """Visible and usable only by the roles listed in `roles`; others get 403 and no menu item."""

    roles: tuple[Role, ...] = ORG

    def is_accessible(self) -> bool:
        return has_role(*self.roles)

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

    form_base_class = AdminForm
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    page_size = 50
    # Flask-Admin's list, its row checkboxes labelled in the HTML (no script needed).
    list_template = "admin/model_list.html"

    def filtered_query(self):
        """The list's query under the current search, filters and sort, every page (exports)."""
        view_args = self._get_list_extra_args()
        sort = self._get_column_by_idx(view_args.sort)
        _count, query = self.get_list(
            0,
            sort[0] if sort else None,
            view_args.sort_desc,
            view_args.search,
            view_args.filters,
            execute=False,
            page_size=0,
        )
        return query
