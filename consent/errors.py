"""Error answers: a plain page in the site's style for people, JSON for machines (/api/, /sms/,
/healthz).

A database that cannot be reached (or stays busy) is a 503 with a page that says to try again
shortly, never a traceback; the transaction is rolled back, so nothing is half-written.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

import sqlalchemy as sa
from flask import Flask, g, jsonify, make_response, render_template, request
from flask_babel import get_locale
from flask_login import current_user
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import IntegerConverter

from consent import database
from consent.extensions import db
from consent.i18n import lazy_gettext as _l

log = logging.getLogger(__name__)

MACHINE_PREFIXES = ("/api/", "/sms/", "/voice/", "/feedback/", "/healthz")

# (title, sentence) per status; the page says what happened and what to do next.
MESSAGES = {
    400: (
        _l("Something was wrong with that request"),
        _l("Please go back, reload the page and try again."),
    ),
    401: (_l("Please sign in"), _l("You need to sign in to see that page.")),
    403: (_l("Not allowed"), _l("Your account may not see that page.")),
    404: (
        _l("Page not found"),
        _l("There is no page at this address. Check the link, or start again from the home page."),
    ),
    405: (_l("Not allowed"), _l("That page cannot be used this way.")),
    410: (_l("This page is gone"), _l("What you were looking for is no longer available.")),
    413: (
        _l("Too large"),
        _l("What you sent is larger than we accept. Send a smaller file or less text."),
    ),
    429: (
        _l("Too many requests"),
        _l(
            "This page was asked for too often from your connection. Please wait a few minutes and try again."
        ),
    ),
    500: (
        _l("Something went wrong on our side"),
        _l("Nothing was changed. Please try again in a moment."),
    ),
    503: (
        _l("Temporarily unavailable"),
        _l(
            "We cannot reach our records right now. Nothing was changed. Please try again in a minute."
        ),
    ),
}


def wants_json() -> bool:
    """Machines (the API and the SMS webhooks) get JSON; people get a page."""
    return request.path.startswith(MACHINE_PREFIXES)


def error_response(code: int, description: str | None = None):
    """The answer for an error status: JSON for machines, the plain page for people."""
    title, sentence = MESSAGES.get(code, MESSAGES[500] if code >= 500 else MESSAGES[400])
    if wants_json():
        return make_response(jsonify(error=str(description or title)), code)
    if code == 429 and not current_user.is_authenticated:
        page = _too_many_page(str(get_locale()), request.path, _district_name())
        return make_response(page, code)
    page = render_template("errors/error.html", code=code, title=title, sentence=sentence)
    return make_response(page, code)


_DISTRICT_NAME_SECONDS = 60


def _district_name() -> str | None:
    """The district's name for the 429 page, read from the database at most once a minute per
    process (a flood of refused requests must not become a flood of queries)."""
    from flask import current_app

    now = time.monotonic()
    cached = current_app.extensions.get("consent_desk.district_name")
    if cached is not None and now - cached[0] < _DISTRICT_NAME_SECONDS:
        return cached[1]
    from consent.database import PENDING_WRITE
    from consent.models import Organization

    g.pop(PENDING_WRITE, None)  # a refused request writes nothing: a read, not the write lock
    try:
        name = db.session.scalar(sa.select(Organization.name).order_by(Organization.id).limit(1))
    except sa.exc.SQLAlchemyError:
        _roll_back()
        name = cached[1] if cached else None
    current_app.extensions["consent_desk.district_name"] = (now, name)
    return name


@lru_cache(maxsize=256)
def _too_many_page(_language: str, _path: str, district: str | None) -> str:
    """The 429 page for signed-out visitors, rendered once per language, path and district
    name: a flood of refused requests (10,000 password guesses) costs almost nothing."""
    title, sentence = MESSAGES[429]
    g.setdefault("organization", None)
    return render_template(
        "errors/error.html",
        code=429,
        title=title,
        sentence=sentence,
        org_name=district or str(_l("Consent Desk")),
    )


def _roll_back() -> None:
    """Undo whatever the request wrote; nothing half-written survives an error."""
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection may be gone; the pool will replace it
        log.debug("rollback after an error failed", exc_info=True)


def _forget_database_work() -> None:
    """Roll back and let go of the connection; the error page asks the database nothing
    (no organization name, the visitor shown as signed out)."""
    _roll_back()
    try:
        db.session.close()
    except Exception:  # noqa: BLE001
        log.debug("close after a database error failed", exc_info=True)
    from consent.extensions import login_manager

    g.organization = None
    g._login_user = login_manager.anonymous_user()


class IdConverter(IntegerConverter):
    """`<int:…>` in routes: ids our tables can hold (32-bit), so a longer number is a 404."""

    def __init__(self, map, *args, **kwargs):  # noqa: A002 - werkzeug's signature
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def register_converters(app: Flask) -> None:
    """Before any route is added."""
    app.url_map.converters["int"] = IdConverter


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        if error.response is not None:  # an answer built by the code that raised it
            return error.response
        description = error.description if wants_json() else None
        if error.code == 413 and wants_json():
            description = "The request body is too large."
        response = error_response(error.code, description)
        for name, value in error.get_headers():  # Allow on a 405, WWW-Authenticate on a 401
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(sa.exc.OperationalError)
    @app.errorhandler(sa.exc.InterfaceError)
    def _database_unavailable(error):
        if database.page_read_in_progress() and database.lost_connection(error):
            _roll_back()
            raise database.LostConnection from error  # run once more, pinged
        log.warning("database unavailable: %s", str(error).splitlines()[0])
        _forget_database_work()
        if request.path == "/healthz":  # failed before the check itself (loading the user)
            response = make_response(jsonify(status="unavailable", database="unreachable"), 503)
        else:
            response = error_response(503, "The database is unavailable; try again shortly.")
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(OverflowError)
    @app.errorhandler(sa.exc.DataError)
    def _value_out_of_range(error):
        # A number too big for the database, a negative page, a value too long for its column:
        # the request was wrong, and nothing of it is kept.
        log.warning("request value refused by the database: %s", str(error).splitlines()[0])
        _roll_back()
        return error_response(400, "A value in the request is out of range.")

    @app.errorhandler(InternalServerError)
    def _internal_error(error):
        _roll_back()
        return error_response(500)
