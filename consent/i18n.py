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
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
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
    app.jinja_env.globals[WORDS] = TranslatedWords()
    app.jinja_env.add_extension(ConstantWords)


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


# --- `_('words')` with nothing to fill in, in an HTML template: a lookup, not a call ---------

WORDS = "_consent_words"


class TranslatedWords:
    """`_consent_words['Turn on']`: the words in the request's language, as Markup (what `_()`
    answers in an HTML template), each kept per catalog after its first use."""

    def __getitem__(self, string: str) -> Markup:
        found = catalog()
        known = found.__dict__.get("_consent_markup")
        if known is None:
            known = found.__dict__["_consent_markup"] = {}
        words = known.get(string)
        if words is None:
            words = Markup(found.ugettext(string))
            if "%" in words:  # "%%" is written "%", as `_()` does
                words = words % {}
            known[string] = words
        return words


class ConstantWords(Extension):
    """Rewrites `_('words')` (one string, nothing to fill in) in an HTML template into
    `_consent_words['words']` when the template is compiled. Jinja runs every call of a
    template through `Context.call` (the callable inspected for what it is passed, the eval
    context handed over): about 3.7 µs a string, where the lookup takes well under one, and a
    portal page has some 40 such strings. Left as they are: `_()` with variables, text templates
    (emails and texts: not escaped, so not Markup) and `{% autoescape %}` blocks, which `_()`
    answers at run time. `pybabel extract` reads the source, so the catalog is unchanged."""

    def filter_stream(self, stream: TokenStream):
        autoescape = self.environment.autoescape
        if callable(autoescape):
            autoescape = autoescape(stream.name)
        if not autoescape:
            return stream
        tokens = list(stream)
        out: list[Token] = []
        blocks = 0  # {% autoescape %} blocks open
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token.type == "name" and out and out[-1].type == "block_begin":
                blocks += {"autoescape": 1, "endautoescape": -1}.get(token.value, 0)
            window = tokens[i : i + 4]
            if (
                not blocks
                and [t.type for t in window] == ["name", "lparen", "string", "rparen"]
                and token.value == "_"
                and not (out and out[-1].type == "dot")
            ):
                line = token.lineno
                out += [
                    Token(line, "name", WORDS),
                    Token(line, "lbracket", "["),
                    window[2],
                    Token(line, "rbracket", "]"),
                ]
                i += 4
                continue
            out.append(token)
            i += 1
        return iter(out)


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
