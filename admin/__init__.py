"""The Flask-Admin panel, built per app inside the factory."""

from flask import Flask
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.theme import Bootstrap4Theme
from flask_login import current_user
from werkzeug.routing import BuildError

from admin.base import ALL_ADMINS, RoleAccess
from consent.models import Role


class HomeView(RoleAccess, AdminIndexView):
    """The admin dashboard: any admin role; the counts and links its role may use."""

    roles = ALL_ADMINS

    @expose("/")
    def index(self):
        from consent import reports
        from consent.tenant import current_organization

        org = current_organization()
        counts = reports.dashboard_counts(org.id) if current_user.role != Role.STAFF else None
        return self.render("admin/home.html", counts=counts, links=self._links(), org=org)

    def _links(self) -> list[tuple[str, str]]:
        """(name, url) of every other view this admin may use, in menu order."""
        from flask import url_for

        links = []
        for view in self.admin._views:
            if view is self or not view.is_accessible():
                continue
            endpoint = (
                f"{view.endpoint}.index_view"
                if isinstance(view, ModelView)
                else f"{view.endpoint}.index"
            )
            try:
                links.append((str(view.name), url_for(endpoint)))
            except BuildError:
                links.append((str(view.name), view.url + "/"))
        return links


def init_admin(app: Flask) -> Admin:
    """A fresh Admin for this app (Flask-Admin keeps state per instance, so one per app)."""
    admin = Admin(
        app,
        name="Consent Desk",
        theme=Bootstrap4Theme(swatch="default", base_template="admin/base_page.html"),
        index_view=HomeView(url="/admin", endpoint="admin"),
    )
    # Each area adds its views, in menu order: the list staff use most first, the set-up last.
    from admin import (
        activity,
        imports,
        integrations,
        invitations,
        optouts,
        outbox,
        people,
        reports,
        roster,
        settings,
        users,
    )

    for area in (
        optouts,
        imports,
        people,
        roster,
        invitations,
        reports,
        activity,
        outbox,
        integrations,
        settings,
        users,
    ):
        area.register(admin)
    return admin
