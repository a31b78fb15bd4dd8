"""The application factory."""

from __future__ import annotations

import gc
import os
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import consent.database  # engine event listeners, and the page reads' dispatch
from consent import config as config_module
from consent import errors, i18n, web
from consent.extensions import csrf, db, limiter, login_manager, mail, migrate
from consent.i18n import gettext

ROOT = Path(__file__).resolve().parent.parent


class ConsentDesk(Flask):
    """Flask, with pages that only read dispatched as page reads (consent.database)."""

    def full_dispatch_request(self):
        return consent.database.dispatch_page_read(self, super().full_dispatch_request)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: settings from the environment (or `test_config`), extensions bound here."""
    app = ConsentDesk(
        __name__,
        instance_path=str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    errors.register_converters(app)
    app.config.from_mapping(config_module.from_environment(app.instance_path))
    if test_config:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)

    pinging = consent.database.take_pre_ping(app.config)
    db.init_app(app)
    if pinging:
        with app.app_context():
            for engine in db.engines.values():
                consent.database.ping_on_checkout(engine)
    migrate.init_app(
        app,
        db,
        directory=str(ROOT / "migrations"),
        render_as_batch=True,
        compare_server_default=False,
    )
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = i18n.N_("Please sign in to see that page.")
    login_manager.localize_callback = gettext  # the message in the visitor's language
    csrf.init_app(app)
    mail.init_app(app)
    limiter.init_app(app)
    i18n.init_app(app, ROOT / "translations")
    if app.config.get("PROXY_FIX"):
        hops = app.config["PROXY_FIX"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    _register_blueprints(app)
    web.init_app(app)
    errors.register(app)

    from consent import cli

    cli.register(app)
    return app


def freeze_startup_objects() -> int:
    """Leave what a process built at startup (the app, its modules, SQLAlchemy's mappers: some
    160,000 objects) out of the garbage collector's full scans from now on; how many were
    frozen. Called once by each server and worker process (run.py), after the app is built.

    Those objects live as long as the process, yet each full collection walked them all, 0.1 s
    a time on the development machine: a 100,000-row import ran eight such collections (1.1 s
    of its 8 s). Garbage made later is collected as before; `gc.collect()` first, so nothing
    already garbage is kept for good."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _register_blueprints(app: Flask) -> None:
    # The one place the core names the packages built on it (see docs/architecture.md).
    from admin import init_admin
    from api import register as register_api
    from consent.health import bp as health_bp
    from portal import register as register_portal

    app.register_blueprint(health_bp)
    register_portal(app)
    register_api(app)
    init_admin(app)
