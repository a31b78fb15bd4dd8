"""The Spanish catalog: every message in the source has a Spanish translation with the same
placeholders, and the catalog is compiled when the app starts without `make`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from babel.support import Translations
from flask import render_template_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from consent.i18n import compile_translations

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "translations" / "es" / "LC_MESSAGES" / "messages.po"
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdifr]")


def source_messages() -> dict[str, list[str]]:
    """Every msgid in the source (as babel.cfg maps it), with where it is used."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        # A plural (ngettext) is one catalog entry, found by its singular msgid.
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            found.setdefault(msgid, []).append(f"{filename}:{lineno}")
    return found


@pytest.fixture(scope="module")
def catalog():
    """The Spanish catalog as committed."""
    with PO.open("rb") as po:
        return read_po(po, locale="es")


@pytest.fixture(scope="module")
def messages():
    """The messages extracted from the source now."""
    return source_messages()


def test_source_has_messages_to_translate(messages):
    """The extraction finds the pages', emails' and texts' words (a sanity check of babel.cfg)."""
    assert "Enroll your family" in messages  # a page
    assert "You are unsubscribed from %(org)s email" in messages  # an email
    assert any(msgid.startswith("%(org)s: You are subscribed") for msgid in messages)  # a text
    assert "Sign in" in messages  # a form label (lazy_gettext)


def test_every_message_has_a_spanish_translation(catalog, messages):
    """Each msgid in the source has a Spanish msgstr that is not empty and not fuzzy."""
    untranslated = []
    for msgid, where in sorted(messages.items()):
        entry = catalog.get(msgid)
        strings = entry.string if entry is not None else None
        strings = strings if isinstance(strings, tuple) else (strings,)
        if entry is None or entry.fuzzy or not all(s and s.strip() for s in strings):
            untranslated.append(f"{msgid!r} ({where[0]})")
    assert not untranslated, "No Spanish translation for:\n" + "\n".join(untranslated)


def test_translations_keep_the_placeholders(catalog):
    """Each translation uses exactly the placeholders of its msgid (%(org)s stays %(org)s)."""
    wrong = []
    for entry in catalog:
        if not entry.id:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        expected = set().union(*(PLACEHOLDER.findall(i) for i in ids))
        for string in strings:
            if string and set(PLACEHOLDER.findall(string)) != expected:
                wrong.append(f"{ids[0]!r} -> {string!r}")
    assert not wrong, "Placeholders differ:\n" + "\n".join(wrong)


def test_catalog_has_no_errors(catalog):
    """Babel's own checks (python-format and the like) pass for every message."""
    problems = [f"{msg.id!r}: {errors}" for msg, errors in catalog.check()]
    assert not problems, "\n".join(problems)


def test_missing_or_stale_mo_is_compiled_at_start(tmp_path):
    """A .po without a .mo (an install without `make`) is compiled; an up-to-date one is kept."""
    target = tmp_path / "es" / "LC_MESSAGES"
    target.mkdir(parents=True)
    shutil.copy(PO, target / "messages.po")
    compile_translations(tmp_path)
    mo = target / "messages.mo"
    assert mo.exists()
    translations = Translations.load(str(tmp_path), ["es"])
    assert translations.gettext("Enroll your family") == "Inscriba a su familia"

    stamp = mo.stat().st_mtime_ns
    compile_translations(tmp_path)
    assert mo.stat().st_mtime_ns == stamp  # newer than its .po: left alone


# --- `_()` in templates (consent.i18n._template_gettext) ----------------------------------------

TEMPLATE_MESSAGES = [
    "Turn on",
    "%(names)s has this too: a change here applies to both.",
    "Kinds of messages to %(address)s",
    "Waiting for confirmation since %(when)s",
]


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("autoescape", [True, False], ids=["html", "text"])
@given(value=st.text(max_size=20))
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_template_underscore_is_jinja_newstyle_gettext(app, language, autoescape, value):
    """`_()` answers what Jinja's own newstyle `gettext` answers: the words translated and left
    as they are, each variable escaped where the template escapes (HTML) and not in a text
    template (emails, texts), a "%%" written as "%"."""
    from flask_babel import force_locale

    flag = "true" if autoescape else "false"
    with app.test_request_context("/"), force_locale(language):
        for message in [*TEMPLATE_MESSAGES, "100%% sure"]:
            names = dict.fromkeys(PLACEHOLDER.findall(message), value)
            ours = render_template_string(
                f"{{% autoescape {flag} %}}{{{{ _(message, **names) }}}}{{% endautoescape %}}",
                message=message,
                names=names,
            )
            jinjas = render_template_string(
                f"{{% autoescape {flag} %}}{{{{ gettext(message, **names) }}}}"
                "{% endautoescape %}",
                message=message,
                names=names,
            )
            assert ours == jinjas


def test_template_underscore_translates_and_escapes_on_a_spanish_page(app):
    """On a page (HTML), a Spanish translation with a name in it: the words in Spanish, the
    name escaped."""
    from flask_babel import force_locale

    with app.test_request_context("/"), force_locale("es"):
        page = render_template_string(
            "{{ _('Kinds of messages to %(address)s', address=who) }}", who="<b>Ana</b>"
        )
    assert page == "Tipos de mensajes a &lt;b&gt;Ana&lt;/b&gt;"


# --- `_('words')` in an HTML template, compiled to a lookup (consent.i18n.ConstantWords) ----------


def template_words() -> list[str]:
    """Every `_('words')` with nothing to fill in, in the HTML templates."""
    found = set()
    for path in (ROOT / "templates").rglob("*.html"):
        for single, double in re.findall(
            r"""\b_\(\s*(?:'([^']*)'|"([^"]*)")\s*\)""", path.read_text()
        ):
            found.add(single or double)
    return sorted(found)


@pytest.mark.parametrize("language", ["en", "es"])
def test_every_constant_template_string_reads_as_underscore_would(app, language):
    """For each such string of the templates, in each language, the compiled lookup answers
    what `_()` answers at run time (the words translated, as Markup, a "%%" written "%")."""
    from flask_babel import force_locale
    from jinja2.nodes import EvalContext

    from consent.i18n import TranslatedWords, _template_gettext

    words = template_words()
    assert len(words) > 100  # the templates' strings were found
    html = EvalContext(app.jinja_env, "page.html")
    with app.test_request_context("/"), force_locale(language):
        for string in [*words, "100%% sure"]:
            ours = TranslatedWords()[string]
            assert ours == _template_gettext(html, string), string
            assert isinstance(ours, Markup)


def test_a_page_is_in_each_language_in_turn(app):
    """The lookup keeps its words per catalog: a Spanish request after an English one (the
    same process, the same compiled template) reads Spanish, then English again."""
    from flask_babel import force_locale

    page = "{{ _('Your settings') }} / {{ _('Turn on') }}"
    with app.test_request_context("/"):
        shown = []
        for language in ("en", "es", "en"):
            with force_locale(language):
                shown.append(render_template_string(page))
    assert shown == ["Your settings / Turn on", "Su configuración / Activar", shown[0]]


def test_only_constant_strings_of_escaped_templates_become_lookups(app):
    """Rewritten: `_('words')` in an HTML template. Left to `_()`: a string with variables, a
    text template (emails, texts: its words are not Markup), an `{% autoescape %}` block, and an
    attribute that happens to be called `_`."""
    env = app.jinja_env
    html = env.compile(
        "{{ _('Turn on') }}{{ _('To %(who)s', who=x) }}{{ obj._('Not this') }}"
        "{% autoescape false %}{{ _('Turn off') }}{% endautoescape %}{{ _(\"Save\") }}",
        name="page.html",
        raw=True,
    )
    lines = html.splitlines()

    def line_of(words: str) -> str:
        return next(line for line in lines if words in line)

    for rewritten in ("'Turn on'", "'Save'"):
        assert "_consent_words" in line_of(rewritten) and "context.call" not in line_of(rewritten)
    for kept in ("'To %(who)s'", "'Not this'", "'Turn off'"):
        assert "_consent_words" not in line_of(kept), line_of(kept)
    text = env.compile("{{ _('Turn on') }}", name="email/notice.txt", raw=True)
    assert "_consent_words" not in text
