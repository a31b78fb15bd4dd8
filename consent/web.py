"""What every request shares: the signed-in user, the write lock for posts, the language hook,
template globals, security headers, and outbox delivery after the response."""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa
from flask import Flask, current_app, request
from flask.globals import _cv_request
from jinja2.utils import urlize
from markupsafe import Markup

from consent import i18n, outbox, tenant
from consent.database import begin_write_on_first_use
from consent.extensions import db, login_manager
from consent.ledger import Origin
from consent.models import Contact, Organization, User
from consent.tenant import current_organization
from consent.words import org_words

# Pages whose URL carries a signed token or a parent's data: never cached.
NO_STORE_PREFIXES = ("/confirm/", "/preferences/", "/unsubscribe/", "/account", "/admin")


def init_app(app: Flask) -> None:
    """Register the request hooks, in the order they run."""
    login_manager.user_loader(load_user)
    app.before_request(_write_lock_for_posts)
    app.before_request(i18n.remember_language)
    app.jinja_env.filters["org_words"] = org_words
    app.jinja_env.filters["linked"] = linked
    app.context_processor(_template_globals)
    app.jinja_env.globals["url_for"] = template_url_for
    app.after_request(_security_headers)
    app.after_request(_deliver_outbox)


@lru_cache(maxsize=256)
def linked(text: str) -> Markup:
    """`text|urlize(rel="noopener")` for plain text (escaped, its addresses made links),
    remembered: the same few sentences (a district's texting disclosure) are on every portal
    page, and urlize reads them character by character (about half a millisecond)."""
    return Markup(urlize(text, rel="noopener"))


def load_user(session_id: str):
    """The signed-in user, with a parent's contact and family (every portal page needs them),
    and the deployment's organization in the same statement (every page needs that too: one
    round trip, not two; consent.tenant keeps it for the request).

    The session names "<id>:<auth_version>" (User.get_id): a session from before a sign-out or
    a new password names an older version, and is signed in no more."""
    user_id, _sep, version = str(session_id).partition(":")
    try:
        user_id, version = int(user_id), int(version)
    except (TypeError, ValueError):
        return None
    if not (0 < user_id < 2**31):
        return None
    row = db.session.execute(_USER_AND_ORGANIZATION, {"user_id": user_id}).first()
    if row is None:
        return None
    user, organization = row
    tenant.remember_organization(organization)
    if (user.auth_version or 0) != version or not user.active:
        return None
    return user


# Built once: the user by id with contact and family joined, and the deployment's
# organization (the first one; NULL when there is none) beside it.
_USER_AND_ORGANIZATION = (
    sa.select(User, Organization)
    .outerjoin(Organization, Organization.id == tenant.FIRST_ORGANIZATION_ID)
    .where(User.id == sa.bindparam("user_id", type_=sa.Integer))
    .options(sa.orm.joinedload(User.contact).joinedload(Contact.family))
)


def _write_lock_for_posts():
    # SQLite: a form post is a write unit, so its transaction is BEGIN IMMEDIATE.
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and not getattr(
        view, "read_only", False
    ):
        begin_write_on_first_use()


# Relative URLs built in templates, kept per app by (script root, endpoint, values): a portal
# page builds about 15 and werkzeug's MapAdapter.build takes about 5 µs each. Emptied when full.
_URLS_KEPT = 4096


def template_url_for(endpoint: str, **values) -> str:
    """`url_for` in templates: the same URL, remembered when it is a relative one (built in a
    request, no `_external`, `_anchor` or other option, an absolute endpoint, values of
    str or int) and the app has no `url_defaults` to change it."""
    ctx = _cv_request.get(None)
    app = current_app._get_current_object()
    if (
        ctx is None
        or endpoint[:1] == "."
        or any(name[:1] == "_" or type(value) not in (str, int) for name, value in values.items())
        or any(app.url_default_functions.values())
    ):
        return app.url_for(endpoint, **values)
    urls = app.extensions.setdefault("consent_urls", {})
    key = (ctx.request.script_root, endpoint, *values.items())
    url = urls.get(key)
    if url is None:
        url = app.url_for(endpoint, **values)
        if len(urls) >= _URLS_KEPT:
            urls.clear()
        urls[key] = url
    return url


def _template_globals():
    from flask_babel import get_locale

    org = current_organization()
    return {
        "get_locale": get_locale,
        "org_name": org.name if org else None,
        "switch_language_url": i18n.switch_language_url,
    }


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
    if current_app.config.get("PRODUCTION"):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if request.path.startswith(NO_STORE_PREFIXES):
        headers.setdefault("Cache-Control", "no-store")
    return response


def _deliver_outbox(response):
    outbox.deliver_pending()
    return response


def request_origin() -> Origin:
    """Where this request came from (address and browser), kept on the event as evidence:
    the one place a view turns the request into the ledger's Origin."""
    return Origin(ip=request.remote_addr, user_agent=request.user_agent.string or None)
