"""POST /api/v1/links: one-click unsubscribe and preferences links for an outside sender's
emails, that work like our own; and our own emails' plain List-Unsubscribe headers."""

from __future__ import annotations

import re
import time

import itsdangerous
import pytest

from consent import ledger, outbox
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, Source, Status
from tests.api_helpers import ENV_KEY, key_for, two_orgs, wrong_callers
from tests.factories import make_org

URL = "/api/v1/links"


@pytest.fixture
def org(app):
    org = make_org()
    db.session.commit()
    return org


def test_one_address_gets_its_links_and_headers(org, client):
    response = client.post(URL, json={"channel": "email", "address": "Ana@Example.org"},
                           headers=ENV_KEY)  # fmt: skip
    assert response.status_code == 200
    answer = response.json
    assert answer["normalized"] == "ana@example.org"
    assert answer["unsubscribe_url"].startswith("https://consent.example.org/unsubscribe/")
    assert answer["preferences_url"].startswith("https://consent.example.org/preferences/")
    assert answer["headers"] == {
        "List-Unsubscribe": f"<{answer['unsubscribe_url']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_the_one_click_link_unsubscribes_like_our_own(org, client):
    url = client.post(URL, json={"channel": "email", "address": "ana@example.org"},
                      headers=ENV_KEY).json["unsubscribe_url"]  # fmt: skip
    path = url.removeprefix("https://consent.example.org")
    posted = client.post(path, data="List-Unsubscribe=One-Click",
                         content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert posted.status_code == 200
    state = ledger.current(org, Channel.EMAIL, "ana@example.org")
    assert state.status == Status.OPTED_OUT and state.source == Source.ONE_CLICK


def test_one_click_links_never_expire(org, client, monkeypatch):
    url = client.post(URL, json={"channel": "email", "address": "ana@example.org"},
                      headers=ENV_KEY).json["unsubscribe_url"]  # fmt: skip
    later = time.time() + 5 * 365 * 86400
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: later)
    path = url.removeprefix("https://consent.example.org")
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert ledger.current(org, Channel.EMAIL, "ana@example.org").status == Status.OPTED_OUT


def test_many_addresses_answer_in_order_with_the_invalid_ones_named(org, client):
    ledger.opt_out(org, Channel.EMAIL, "b@example.org", source=Source.PORTAL,
                   actor=Actor.recipient())  # fmt: skip
    db.session.commit()
    addresses = ["a@example.org", "not an email", "b@example.org"]
    response = client.post(URL, json={"channel": "email", "addresses": addresses}, headers=ENV_KEY)
    results = response.json["results"]
    assert [r["address"] for r in results] == addresses
    assert results[1]["normalized"] is None and results[1]["error"]
    assert "unsubscribe_url" in results[0] and "unsubscribe_url" in results[2]


def test_ten_thousand_addresses_in_one_request(org, client):
    addresses = [f"p{n}@example.org" for n in range(10_000)]
    response = client.post(URL, json={"channel": "email", "addresses": addresses}, headers=ENV_KEY)
    assert response.status_code == 200 and len(response.json["results"]) == 10_000
    too_many = client.post(URL, json={"channel": "email", "addresses": addresses + ["x@y.org"]},
                           headers=ENV_KEY)  # fmt: skip
    assert too_many.status_code == 413 and too_many.json["error"]


def test_texts_get_links_without_email_headers(org, client):
    answer = client.post(URL, json={"channel": "text", "address": "(202) 555-0123"},
                         headers=ENV_KEY).json  # fmt: skip
    assert answer["normalized"] == "+12025550123" and "headers" not in answer


@pytest.mark.parametrize(
    ("body", "field"),
    [({"address": "a@example.org"}, "channel"), ({"channel": "fax", "address": "a@b.org"}, "channel"),
     ({"channel": "email"}, "address"), ({"channel": "email", "address": 7}, "address"),
     ({"channel": "email", "address": "nope"}, "address"),
     ({"channel": "email", "addresses": "a@b.org"}, "addresses"),
     ({"channel": "email", "addresses": ["a@b.org", None]}, "addresses")],
)  # fmt: skip
def test_bad_bodies_get_400_naming_the_field(org, client, body, field):
    response = client.post(URL, json=body, headers=ENV_KEY)
    assert response.status_code == 400 and response.json["field"] == field


@pytest.mark.parametrize("who", ["no key", "unknown key", "revoked key", "wrong scope"])
def test_links_refuse_the_wrong_callers(org, client, who):
    headers, status = wrong_callers(org, "links:write")[who]
    response = client.post(URL, json={"channel": "email", "address": "a@b.org"}, headers=headers)
    assert response.status_code == status and "unsubscribe_url" not in response.json


def test_another_organizations_links_act_in_that_organization(app, client):
    ours, theirs = two_orgs()
    url = client.post(URL, json={"channel": "email", "address": "ana@example.org"},
                      headers=key_for(theirs, "links:write")).json["unsubscribe_url"]  # fmt: skip
    client.post(url.removeprefix("https://consent.example.org"),
                data={"List-Unsubscribe": "One-Click"})  # fmt: skip
    assert ledger.current(theirs, Channel.EMAIL, "ana@example.org").status == Status.OPTED_OUT
    assert ledger.current(ours, Channel.EMAIL, "ana@example.org") is None


# --- our own emails ---------------------------------------------------------------------------


@pytest.fixture
def raw_mailbox(app):
    """An SMTP server that keeps the bytes as they arrived (the headers as written)."""
    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    class Keep:
        def __init__(self):
            self.raw = []

        async def handle_DATA(self, server, session, envelope):
            self.raw.append(envelope.original_content)
            return "250 OK"

    handler = Keep()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    state = app.extensions["mail"]
    old_port, state.port = state.port, controller.port
    yield handler.raw
    state.port = old_port
    controller.stop()


def test_our_emails_carry_plain_unfolded_headers_and_the_district_as_sender(org, raw_mailbox):
    ledger.opt_out(org, Channel.EMAIL, "ana@example.org", source=Source.PORTAL,
                   actor=Actor.recipient())  # fmt: skip
    db.session.commit()
    outbox.deliver_pending()
    (raw,) = [r.decode() for r in raw_mailbox if b"\r\nTo: ana@example.org" in r]
    line = next(h for h in raw.split("\r\n") if h.startswith("List-Unsubscribe:"))
    assert "=?" not in line  # not RFC 2047-encoded
    assert re.fullmatch(r"List-Unsubscribe: <https://consent\.example\.org/unsubscribe/\S+>", line)
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    assert "\r\nFrom: Maple Valley School District <no-reply@example.org>\r\n" in raw
