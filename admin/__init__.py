"""The Flask-Admin panel, built per app inside the factory (issue 6 builds out the views)."""

from flask import Flask, abort, redirect, request, url_for
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.theme import Bootstrap4Theme
from flask_login import current_user


class HomeView(AdminIndexView):
    """The admin dashboard: any admin role."""

    def is_accessible(self):
        return current_user.is_authenticated and current_user.is_admin

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403)

    @expose("/")
    def index(self):
        return self.render("admin/home.html")


def init_admin(app: Flask) -> Admin:
    """A fresh Admin for this app (Flask-Admin keeps state per instance)."""
    admin = Admin(
        app,
        name="Consent Desk",
        theme=Bootstrap4Theme(swatch="default"),
        index_view=HomeView(url="/admin", endpoint="admin"),
    )
    return admin
