"""`url_for` in templates (consent.web.template_url_for): the URL Flask builds, remembered only
where nothing but the endpoint and its values can change it."""

from __future__ import annotations

import pytest
from flask import render_template_string, url_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import web

ENDPOINTS = [
    ("account.settings", {}),
    ("account.edit_phone", {"phone_id": 7}),
    ("account.add_email", {"person_kind": "contacts", "person_id": 3}),
    ("static", {"filename": "css/site.css"}),
    ("auth.login", {"next": "/account/settings?x=1&y=é"}),
]


@pytest.mark.parametrize(("endpoint", "values"), ENDPOINTS)
@pytest.mark.parametrize("script_root", ["", "/district"])
def test_the_url_is_flasks_twice_and_under_a_script_root(app, endpoint, values, script_root):
    """The first and the remembered answer are Flask's own, and an app mounted under a prefix
    (SCRIPT_NAME) gets its own URLs, not those remembered for another prefix."""
    for _ in range(2):
        with app.test_request_context("/", base_url="http://localhost" + script_root):
            assert web.template_url_for(endpoint, **values) == url_for(endpoint, **values)
            assert web.template_url_for(endpoint, **values).startswith(script_root + "/")


@given(
    phone_id=st.integers(min_value=0, max_value=2**40),
    next_page=st.text(max_size=30),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_values_give_flasks_url(app, phone_id, next_page):
    """Any id and any text in the query string: the same URL as Flask's, remembered or not."""
    with app.test_request_context("/"):
        for _ in range(2):
            assert web.template_url_for("account.edit_phone", phone_id=phone_id) == url_for(
                "account.edit_phone", phone_id=phone_id
            )
            assert web.template_url_for("auth.login", next=next_page) == url_for(
                "auth.login", next=next_page
            )


def test_a_value_equal_to_another_of_another_type_keeps_its_own_url(app):
    """`True == 1` in Python; their URLs differ ("True" and "1"), and so do the answers."""
    with app.test_request_context("/"):
        one = web.template_url_for("auth.login", next=1)
        true = web.template_url_for("auth.login", next=True)
    assert (one, true) == ("/login?next=1", "/login?next=True")


def test_options_and_links_outside_a_request_are_flasks(app):
    """`_external`, `_anchor` and a link built with no request (an email) are not remembered:
    each is Flask's answer."""
    with app.test_request_context("/", base_url="https://school.example.org"):
        external = web.template_url_for("account.settings", _external=True)
        anchored = web.template_url_for("account.settings", _anchor="purposes-1")
    assert external == "https://school.example.org/account/settings"
    assert anchored == "/account/settings#purposes-1"
    app.config["SERVER_NAME"] = "district.example.org"
    try:
        with app.app_context():
            assert web.template_url_for("account.settings") == url_for("account.settings")
            assert "district.example.org" in web.template_url_for("account.settings")
    finally:
        app.config["SERVER_NAME"] = None


def test_templates_use_it(app):
    """A template's `url_for` is this one, and what it writes is Flask's URL."""
    with app.test_request_context("/"):
        assert app.jinja_env.globals["url_for"] is web.template_url_for
        page = render_template_string("{{ url_for('account.edit_phone', phone_id=5) }}")
    assert page == "/account/phones/5"


@pytest.mark.own_app
def test_an_app_with_url_defaults_is_not_remembered(app):
    """A `url_defaults` function can change a URL from one request to the next: with one, each
    URL is built again."""
    from flask import g

    @app.url_defaults
    def add_lang(endpoint, values):
        if endpoint == "auth.login" and "lang" in g:
            values.setdefault("lang", g.lang)

    shown = []
    for lang in ("en", "es"):
        with app.test_request_context("/"):
            g.lang = lang
            shown.append(web.template_url_for("auth.login"))
    assert shown == ["/login?lang=en", "/login?lang=es"]
