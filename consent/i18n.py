"""Languages: which one a page is in, the catalogs compiled at start, and a parent's choice
remembered on their contact."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlencode

import flask_babel
from flask import Flask, g, has_request_context, request, session
from flask_babel import Babel
from jinja2 import pass_eval_context
from markupsafe import Markup

LANGUAGES = ("en", "es")
babel = Babel()


def init_app(app: Flask, translations: Path) -> None:
    """Compile the catalogs if needed and bind Babel (the request hook is `remember_language`)."""
    compile_translations(translations, app.logger)
    babel.init_app(
        app,
        locale_selector=select_language,
        default_translation_directories=str(translations),
    )
    # Templates translate through `catalog()` too (Flask-Babel installs callables that
    # look the catalog up again on every call).
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: catalog().ugettext(s),
        ngettext=lambda s, p, n: catalog().ungettext(s, p, n),
        pgettext=lambda c, s: catalog().upgettext(c, s),
        npgettext=lambda c, s, p, n: catalog().unpgettext(c, s, p, n),
        newstyle=True,
    )
    app.jinja_env.globals["_"] = _template_gettext


@pass_eval_context
def _template_gettext(eval_context, string: str, **variables) -> str:
    """`_()` in templates: what Jinja's newstyle gettext does (the translation taken as a
    format string, made Markup where the template escapes, so that the variables are escaped
    and the words are not), in one call instead of three. Jinja's own `_` resolves `gettext`
    and calls it through two more context calls: about 3.9 µs a string where this takes 1.6, and
    a portal page translates some 50 strings. `{% trans %}` blocks keep Jinja's `gettext`."""
    text = catalog().ugettext(string)
    if eval_context.autoescape:
        text = Markup(text)
    if variables or "%" in text:  # else `text % {}` would answer `text`
        text = text % variables
    return text


def catalog():
    """flask_babel.get_translations(), remembered in the app context beside the locale it was
    for. Flask-Babel finds the domain, the locale and its cache entry again on every call
    (about 40 µs, through half a dozen context lookups), and a portal page translates some 70
    strings. A new locale (flask_babel.refresh, force_locale, the next request's selection) is
    a new Locale object in Flask-Babel's context, so the remembered catalog is used only while
    that object is the one in use."""
    try:
        store = g._get_current_object()
    except RuntimeError:  # no app context: Flask-Babel's own answer (no translation)
        return flask_babel.get_translations()
    babel_context = store.__dict__.get("_flask_babel")
    locale = getattr(babel_context, "babel_locale", None)
    remembered = store.__dict__.get("_consent_translations")
    if locale is not None and remembered is not None and remembered[0] is locale:
        return remembered[1]
    found = flask_babel.get_translations()
    store._consent_translations = (flask_babel.get_locale(), found)
    return found


def gettext(string: str, **variables) -> str:
    """flask_babel.gettext, through `catalog()`: the string in the request's language,
    with %(name)s filled from `variables`."""
    text = catalog().ugettext(string)
    return text % variables if variables else text


def lazy_gettext(string: str, **variables) -> flask_babel.LazyString:
    """flask_babel.lazy_gettext through `gettext`: translated when it is shown."""
    return flask_babel.LazyString(gettext, string, **variables)


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


def remember_language() -> None:
    """Before each request: a signed-in parent's contact language is the default. ?lang=
    changes only this session's pages; the saved language changes by a POST."""
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
