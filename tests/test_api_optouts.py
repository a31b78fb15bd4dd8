"""POST /api/v1/optouts: opt-outs other systems saw, through the ledger (source api, the key as
actor); a STOP they saw carries the carrier block; and a Twilio 21610 answer when we text, and
Twilio's OptOutType on inbound texts."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from consent import ledger, outbox
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, ConsentEvent, OutboxMessage, Source, Status
from tests.api_helpers import ENV_KEY, key_for, two_orgs, wrong_callers
from tests.factories import make_org

URL = "/api/v1/optouts"


@pytest.fixture
def org(app):
    org = make_org()
    db.session.commit()
    return org


def last_event(address) -> ConsentEvent:
    return db.session.scalars(
        sa.select(ConsentEvent).where(ConsentEvent.address == address).order_by(ConsentEvent.id)
    ).all()[-1]


def test_a_reported_stop_opts_out_with_the_carrier_block_and_the_key_as_actor(org, client):
    headers = key_for(org, "optouts:write", name="SchoolMessenger")
    body = {"channel": "text", "address": "(202) 555-0123", "source": "SchoolMessenger",
            "reason": "stop", "note": "STOP on our short code", "occurred_at": "2026-11-20T08:30:00Z"}  # fmt: skip
    response = client.post(URL, json=body, headers=headers)
    assert response.status_code == 200
    assert response.json == {"address": "(202) 555-0123", "normalized": "+12025550123",
                             "result": "opted_out"}  # fmt: skip
    state = ledger.current(org, Channel.TEXT, "+12025550123")
    assert state.status == Status.OPTED_OUT and state.carrier_block
    assert state.source == Source.API
    event = last_event("+12025550123")
    assert event.actor.startswith("api_key:") and "SchoolMessenger" in event.actor_label
    assert event.evidence == {"reason": "stop", "reported_by": "SchoolMessenger",
                              "occurred_at": "2026-11-20T08:30:00"}  # fmt: skip
    assert event.note == "STOP on our short code"
    # the carrier block holds: an admin's opt-back-in request is refused
    assert ledger.check_opt_back_in(org, Channel.TEXT, "+12025550123").code == "carrier_block"


def test_other_reasons_opt_out_without_a_block_and_again_is_already(org, client):
    body = {"channel": "voice", "address": "+12025550124", "reason": "request"}
    assert client.post(URL, json=body, headers=ENV_KEY).json["result"] == "opted_out"
    assert client.post(URL, json=body, headers=ENV_KEY).json["result"] == "already"
    state = ledger.current(org, Channel.VOICE, "+12025550124")
    assert state.status == Status.OPTED_OUT and not state.carrier_block
    assert last_event("+12025550124").actor == "api_key:env"


def test_many_addresses_answer_in_order(org, client):
    body = {"channel": "email", "addresses": ["a@example.org", "nope", "A@example.org"]}
    results = client.post(URL, json=body, headers=ENV_KEY).json["results"]
    assert [r["result"] for r in results] == ["opted_out", "invalid", "already"]


def test_reported_opt_outs_send_the_person_nothing(org, client, mailbox):
    client.post(URL, json={"channel": "email", "address": "a@example.org"}, headers=ENV_KEY)
    assert mailbox.to("a@example.org") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"address": "+12025550123"}, "channel"),
     ({"channel": "text", "address": "+12025550123", "reason": "bored"}, "reason"),
     ({"channel": "text", "address": "+12025550123", "occurred_at": "yesterday"}, "occurred_at"),
     ({"channel": "text", "address": "+12025550123", "note": 5}, "note"),
     ({"channel": "text", "address": "not a number"}, "address"),
     ({"channel": "text"}, "address")],
)  # fmt: skip
def test_bad_bodies_get_400_naming_the_field_and_change_nothing(org, client, body, field):
    response = client.post(URL, json=body, headers=ENV_KEY)
    assert response.status_code == 400 and response.json["field"] == field
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 0


def test_too_many_addresses_is_413(org, client):
    body = {"channel": "email", "addresses": [f"p{n}@example.org" for n in range(1001)]}
    assert client.post(URL, json=body, headers=ENV_KEY).status_code == 413


@pytest.mark.parametrize("who", ["no key", "unknown key", "revoked key", "wrong scope"])
def test_optouts_refuse_the_wrong_callers(org, client, who):
    headers, status = wrong_callers(org, "optouts:write")[who]
    body = {"channel": "text", "address": "+12025550123", "reason": "stop"}
    assert client.post(URL, json=body, headers=headers).status_code == status
    assert ledger.current(org, Channel.TEXT, "+12025550123") is None


def test_another_organizations_key_opts_out_in_its_own_organization_only(app, client):
    ours, theirs = two_orgs()
    body = {"channel": "text", "address": "+12025550123", "reason": "stop"}
    client.post(URL, json=body, headers=key_for(theirs, "optouts:write"))
    assert ledger.current(theirs, Channel.TEXT, "+12025550123").status == Status.OPTED_OUT
    assert ledger.current(ours, Channel.TEXT, "+12025550123") is None


@pytest.mark.parametrize(
    "raw",
    [b'{"channel": "text", "address": "\xff\xfe"}', b"[" * 100_000 + b"]" * 100_000,
     b'{"a":' * 50 + b"1" + b"}" * 50, b'{"channel": NaN}', b"\x00\x01"],
)  # fmt: skip
def test_non_utf8_deep_or_odd_json_is_400_never_500(org, client, raw):
    response = client.post(URL, data=raw, content_type="application/json", headers=ENV_KEY)
    assert response.status_code == 400 and response.json["error"]


def test_a_wrong_method_is_405_with_allow(org, client):
    response = client.get(URL, headers=ENV_KEY)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"] and response.json["error"]


def test_a_body_over_the_limit_is_413_json(app, org, client):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    try:
        response = client.post(URL, data=b"{" + b" " * 2000 + b"}",
                               content_type="application/json", headers=ENV_KEY)  # fmt: skip
    finally:
        app.config["MAX_CONTENT_LENGTH"] = 25 * 1024 * 1024
    assert response.status_code == 413 and response.json["error"]


# --- our own texts: Twilio's answers ----------------------------------------------------------


def test_a_21610_answer_when_we_text_is_a_carrier_opt_out_not_retried(app, org, monkeypatch):
    from twilio.base.exceptions import TwilioRestException
    from twilio.rest.api.v2010.account.message import MessageList

    calls = []

    def refuse(self, **kwargs):
        calls.append(kwargs["to"])
        raise TwilioRestException(400, "https://api.twilio.com/x", "Attempt to send to unsubscribed recipient", code=21610)  # fmt: skip

    monkeypatch.setattr(MessageList, "create", refuse)
    app.config.update(TWILIO_ACCOUNT_SID="AC" + "1" * 32, TWILIO_AUTH_TOKEN="token")
    try:
        message = outbox.queue(organization_id=org.id, channel="text", purpose="reminder",
                               to="+12025550188", body="Bus late", key=uuid.uuid4().hex)  # fmt: skip
        ledger.opt_in(org, Channel.TEXT, "+12025550188", source=Source.PORTAL,
                      actor=Actor.recipient(), confirm=False)  # fmt: skip
        db.session.commit()
        outbox.deliver(ids=[message.id])
        outbox.deliver()
    finally:
        app.config.update(TWILIO_ACCOUNT_SID=None, TWILIO_AUTH_TOKEN=None)
    assert calls == ["+12025550188"]  # tried once, never again
    sent = db.session.get(OutboxMessage, message.id, populate_existing=True)
    assert sent.status == "suppressed" and "21610" in sent.last_error
    state = ledger.current(org, Channel.TEXT, "+12025550188")
    assert state.status == Status.OPTED_OUT and state.carrier_block
    assert state.source == Source.CARRIER


@pytest.mark.parametrize(
    ("opt_out_type", "status"), [("STOP", Status.OPTED_OUT), ("START", Status.OPTED_IN)]
)
def test_twilio_opt_out_type_on_inbound_texts_is_honoured(org, client, opt_out_type, status):
    """A custom opt-out keyword set up in Twilio ("SALIR"): Twilio says OptOutType=STOP."""
    if opt_out_type == "START":
        client.post("/sms/inbound", data={"From": "+12025550177", "To": "+12025550100",
                    "Body": "SALIR", "MessageSid": "SM" + uuid.uuid4().hex, "OptOutType": "STOP"})  # fmt: skip
    response = client.post("/sms/inbound", data={
        "From": "+12025550177", "To": "+12025550100", "Body": "SALIR AHORA" if opt_out_type == "STOP" else "VOLVER",
        "MessageSid": "SM" + uuid.uuid4().hex, "OptOutType": opt_out_type})  # fmt: skip
    assert response.status_code == 200
    state = ledger.current(org, Channel.TEXT, "+12025550177")
    assert state.status == status
    assert state.carrier_block == (status == Status.OPTED_OUT)
    assert last_event("+12025550177").evidence["opt_out_type"] == opt_out_type
