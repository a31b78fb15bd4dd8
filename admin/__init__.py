"""The Flask-Admin panel, built per app inside the factory."""

from flask import Flask
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.theme import Bootstrap4Theme

from admin.base import ALL_ADMINS, RoleAccess


class HomeView(RoleAccess, AdminIndexView):
    """The admin dashboard: any admin role."""

    roles = ALL_ADMINS

    @expose("/")
    def index(self):
        return self.render("admin/home.html")


def init_admin(app: Flask) -> Admin:
    """A fresh Admin for this app (Flask-Admin keeps state per instance, so one per app)."""
    admin = Admin(
        app,
        name="Consent Desk",
        theme=Bootstrap4Theme(swatch="default"),
        index_view=HomeView(url="/admin", endpoint="admin"),
    )
    # Each area adds its views; see admin/<area>.py.
    for module in _areas():
        module.register(admin)
    return admin


def _areas():
    import importlib
    import pkgutil

    import admin as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in ("base",) or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"admin.{info.name}")
        if hasattr(module, "register"):
            yield module
