"""The application factory."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, g, has_request_context, request, session
from flask_babel import Babel, gettext
from werkzeug.middleware.proxy_fix import ProxyFix

from consent import config as config_module
from consent.extensions import csrf, db, limiter, login_manager, mail, migrate

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("en", "es")
babel = Babel()


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: settings from the environment (or `test_config`), extensions bound here."""
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    from consent import errors

    errors.register_converters(app)
    app.config.from_mapping(config_module.from_environment(app.instance_path))
    if test_config:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)

    import consent.database  # noqa: F401  (engine event listeners)

    db.init_app(app)
    migrate.init_app(
        app,
        db,
        directory=str(ROOT / "migrations"),
        render_as_batch=True,
        compare_server_default=False,
    )
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = N_("Please sign in to see that page.")
    login_manager.localize_callback = gettext  # the message in the visitor's language
    csrf.init_app(app)
    mail.init_app(app)
    limiter.init_app(app)
    compile_translations(ROOT / "translations", app.logger)
    babel.init_app(
        app,
        locale_selector=select_language,
        default_translation_directories=str(ROOT / "translations"),
    )
    if app.config.get("PROXY_FIX"):
        hops = app.config["PROXY_FIX"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    _register_blueprints(app)
    _register_hooks(app)
    errors.register(app)

    from consent import cli

    cli.register(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from admin import init_admin
    from api import register as register_api
    from consent.health import bp as health_bp
    from portal import register as register_portal

    app.register_blueprint(health_bp)
    register_portal(app)
    register_api(app)
    init_admin(app)


def compile_translations(directory: Path, logger=None) -> None:
    """Compile each .po into its .mo when the .mo is missing or older (an install without
    `make`), so no deployment serves untranslated pages."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po_path in directory.glob("*/LC_MESSAGES/*.po"):
        mo_path = po_path.with_suffix(".mo")
        try:
            if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
                continue
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file, locale=po_path.parent.parent.name)
            partial = mo_path.with_name(f"{mo_path.name}.{os.getpid()}.tmp")
            with partial.open("wb") as mo_file:
                write_mo(mo_file, catalog)
            os.replace(partial, mo_path)
        except OSError as error:  # a read-only install: say so, serve what there is
            if logger is not None:
                logger.warning("Could not compile %s: %s", po_path, error)


def N_(message: str) -> str:
    """Mark a message for the catalog; it is translated where it is shown."""
    return message


def switch_language_url(language: str) -> str:
    """This page (path and query) in `language`."""
    from urllib.parse import urlencode

    query = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    return request.path + "?" + urlencode([*query, ("lang", language)])


def select_language() -> str:
    """The language: ?lang=, then the one chosen this session, then the person's, then the
    browser's Accept-Language. Outside a request (CLI, workers): English."""
    if not has_request_context():
        return "en"
    chosen = request.args.get("lang")
    if chosen in LANGUAGES:
        session["lang"] = chosen
        return chosen
    if session.get("lang") in LANGUAGES:
        return session["lang"]
    person_language = getattr(g, "person_language", None)
    if person_language in LANGUAGES:
        return person_language
    return request.accept_languages.best_match(LANGUAGES) or "en"


def _register_hooks(app: Flask) -> None:
    import sqlalchemy as sa

    from consent import outbox
    from consent.database import begin_write_on_first_use
    from consent.models import Contact, User

    @login_manager.user_loader
    def load_user(session_id: str):
        # "<id>:<auth_version>" (User.get_id): a session from before a sign-out or a new
        # password names an older version, and is signed in no more.
        user_id, _sep, version = str(session_id).partition(":")
        try:
            user_id, version = int(user_id), int(version)
        except (TypeError, ValueError):
            return None
        if not (0 < user_id < 2**31):
            return None
        # One query for the user, a parent's contact and family (every portal page needs them).
        user = db.session.get(
            User, user_id, options=[sa.orm.joinedload(User.contact).joinedload(Contact.family)]
        )
        if user is None or (user.auth_version or 0) != version:
            return None
        return user

    @app.before_request
    def _write_lock_for_posts():
        # SQLite: a form post is a write unit, so its transaction is BEGIN IMMEDIATE.
        view = app.view_functions.get(request.endpoint) if request.endpoint else None
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and not getattr(
            view, "read_only", False
        ):
            begin_write_on_first_use()

    @app.before_request
    def _person_language():
        # A signed-in parent: their contact's language is the default. ?lang= changes only
        # this session's pages; the saved language changes by a POST (/account/language).
        from flask_babel import refresh
        from flask_login import current_user

        refresh()  # a language cached by an earlier request in the same app context: gone
        g.pop("person_language", None)
        if request.endpoint in (None, "static") or not current_user.is_authenticated:
            return
        contact = current_user.contact if current_user.contact_id else None
        if contact is None:
            return
        g.person_language = contact.language

    from consent.notifications import org_words

    app.jinja_env.filters["org_words"] = org_words

    @app.context_processor
    def _template_globals():
        from flask_babel import get_locale

        org = current_organization()
        return {
            "get_locale": get_locale,
            "org_name": org.name if org else None,
            "switch_language_url": switch_language_url,
        }

    @app.after_request
    def _security_headers(response):
        headers = response.headers
        script = "'self' 'unsafe-inline'" if request.path.startswith("/admin") else "'self'"
        headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; script-src {script}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'self'; object-src 'none'",
        )
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if app.config.get("PRODUCTION"):
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.path.startswith(("/confirm/", "/preferences/", "/unsubscribe/", "/account")):
            headers.setdefault("Cache-Control", "no-store")
        return response

    @app.after_request
    def _deliver_outbox(response):
        outbox.deliver_pending()
        return response


def read_only(view):
    """Mark a POST view that only reads (no write lock needed on SQLite)."""
    view.read_only = True
    return view


def current_organization():
    """The organization this deployment serves (the first one), cached per request."""
    import sqlalchemy as sa

    from consent.models import Organization

    if "organization" not in g:
        g.organization = db.session.scalars(
            sa.select(Organization).order_by(Organization.id)
        ).first()
    return g.organization
