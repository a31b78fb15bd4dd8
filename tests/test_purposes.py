"""Message purposes: the defaults, the per-purpose choices through the ledger, and eligibility
for a purpose (state × purpose × channel), on each database; the API with a purpose."""

from __future__ import annotations

import pytest

from consent import eligibility, ledger, outbox, purposes
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, MessagePurpose, Source, Status
from tests.factories import make_org
from tests.helpers import events_of

KEY = {"Authorization": "Bearer test-api-key"}
URL = "/api/v1/eligibility"

PHONES = {
    "none": "+12025550140",
    "in": "+12025550141",
    "out": "+12025550142",
    "stop": "+12025550143",  # STOP reply: carrier block
    "bounced": "+12025550144",
    "general_off": "+12025550145",  # opted in, General turned off in the portal
}
EMAILS = {
    "none": "none@example.org",
    "in": "in@example.org",
    "out": "out@example.org",
    "bounced": "bounced@example.org",
    "general_off": "gen@example.org",
}


@pytest.fixture
def org(app):
    org = make_org()
    parent = Actor.recipient()
    for channel, book in ((Channel.TEXT, PHONES), (Channel.EMAIL, EMAILS)):
        ledger.opt_in(org, channel, book["in"], source=Source.PORTAL, actor=parent)
        ledger.opt_out(org, channel, book["out"], source=Source.PORTAL, actor=parent)
        ledger.mark_bounced(org, channel, book["bounced"])
        ledger.opt_in(org, channel, book["general_off"], source=Source.PORTAL, actor=parent)
        general = purposes.by_key(org, "general")
        outcome = ledger.change_purpose(
            org, channel, book["general_off"], general, Status.OPTED_OUT,
            source=Source.PORTAL, actor=parent,
        )  # fmt: skip
        assert outcome.changed
    ledger.opt_out(org, Channel.TEXT, PHONES["stop"], source=Source.SMS_KEYWORD,
                   actor=parent, carrier_block=True)  # fmt: skip
    db.session.commit()
    outbox.deliver_pending()
    return org


def test_new_organizations_get_the_default_purposes(app):
    org = make_org()
    found = purposes.of(org)
    assert [p.key for p in found] == ["emergency", "attendance", "general"]
    emergency, attendance, general = found
    assert emergency.name_es == "Emergencias"
    assert emergency.reaches_opted_out and not attendance.reaches_opted_out
    assert emergency.may_turn_off("text")
    assert not emergency.may_turn_off("voice") and not emergency.may_turn_off("email")
    assert general.is_general and purposes.general(org) is general


# state -> {purpose: reason}, texts (the organization requires consent for texts).
TEXT_RULES = {
    "none": {None: "no_consent", "emergency": "ok", "attendance": "no_consent",
             "general": "no_consent"},
    "in": {None: "ok", "emergency": "ok", "attendance": "ok", "general": "ok"},
    "out": {None: "opted_out", "emergency": "ok", "attendance": "opted_out",
            "general": "opted_out"},
    "stop": {None: "opted_out", "emergency": "opted_out", "attendance": "opted_out",
             "general": "opted_out"},
    "bounced": {None: "bounced", "emergency": "bounced", "attendance": "bounced",
                "general": "bounced"},
    "general_off": {None: "ok", "emergency": "ok", "attendance": "ok", "general": "opted_out"},
}  # fmt: skip
EMAIL_RULES = {
    "none": {None: "ok", "emergency": "ok", "attendance": "ok", "general": "ok"},
    "in": {None: "ok", "emergency": "ok", "attendance": "ok", "general": "ok"},
    "out": {None: "opted_out", "emergency": "ok", "attendance": "opted_out",
            "general": "opted_out"},
    "bounced": {None: "bounced", "emergency": "bounced", "attendance": "bounced",
                "general": "bounced"},
    "general_off": {None: "ok", "emergency": "ok", "attendance": "ok", "general": "opted_out"},
}  # fmt: skip
CASES = [
    (Channel.TEXT, PHONES[state], key, reason)
    for state, row in TEXT_RULES.items()
    for key, reason in row.items()
] + [
    (Channel.EMAIL, EMAILS[state], key, reason)
    for state, row in EMAIL_RULES.items()
    for key, reason in row.items()
]


@pytest.mark.parametrize(("channel", "address", "key", "reason"), CASES)
def test_eligibility_per_state_purpose_and_channel(org, channel, address, key, reason):
    purpose = purposes.by_key(org, key) if key else None
    answer = eligibility.check_one(org, channel, address, purpose)
    assert answer.reason == reason
    assert answer.allowed == (reason == "ok")
    # The bulk path answers the same.
    rows = eligibility.check_rows(org, channel, [address, address], purpose)
    assert [r[3] for r in rows] == [reason, reason]


def test_a_stop_is_one_channel_wide_event_every_purpose_reads(org):
    events = events_of(PHONES["stop"], org=org)
    assert len(events) == 1 and events[0].purpose_id is None
    for purpose in purposes.of(org):
        assert not eligibility.check_one(org, "text", PHONES["stop"], purpose).allowed


def test_a_purpose_choice_is_an_event_naming_the_purpose(org):
    general = purposes.by_key(org, "general")
    events = [e for e in events_of(PHONES["general_off"], org=org) if e.purpose_id]
    assert [(e.purpose_id, e.to_status, e.evidence["purpose"]) for e in events] == [
        (general.id, Status.OPTED_OUT, "general")
    ]
    # Back on: the fold of the events; the channel-wide state never moved.
    outcome = ledger.change_purpose(org, "text", PHONES["general_off"], general, Status.OPTED_IN,
                                    source=Source.PORTAL, actor=Actor.recipient())  # fmt: skip
    assert outcome.changed
    assert eligibility.check_one(org, "text", PHONES["general_off"], general).allowed
    assert ledger.current(org, "text", PHONES["general_off"]).version == 1


def test_a_purpose_yes_never_lifts_a_channel_no(org):
    general = purposes.by_key(org, "general")
    ledger.change_purpose(org, "text", PHONES["out"], general, Status.OPTED_IN,
                          source=Source.PORTAL, actor=Actor.recipient())  # fmt: skip
    assert eligibility.check_one(org, "text", PHONES["out"], general).reason == "opted_out"


@pytest.mark.parametrize("source", [Source.PORTAL, Source.ADMIN, Source.EMAIL_LINK])
@pytest.mark.parametrize("channel", [Channel.VOICE, Channel.EMAIL])
def test_always_sent_purposes_cannot_be_turned_off(org, source, channel):
    emergency = purposes.by_key(org, "emergency")
    address = PHONES["in"] if channel == Channel.VOICE else EMAILS["in"]
    outcome = ledger.change_purpose(org, channel, address, emergency, Status.OPTED_OUT,
                                    source=source, actor=Actor.recipient())  # fmt: skip
    assert outcome.refused and outcome.code == "always_sent"


@pytest.mark.parametrize(
    ("source", "to_status", "code"),
    [
        (Source.ADMIN, Status.OPTED_IN, "admin_cannot_opt_in"),
        (Source.IMPORT, Status.OPTED_OUT, "bad_source"),
        (Source.SMS_KEYWORD, Status.OPTED_IN, "bad_source"),
        (Source.SMS_KEYWORD, Status.OPTED_OUT, "bad_source"),
        (Source.SMS_REPLY, Status.OPTED_IN, "bad_source"),
        (Source.PORTAL, Status.BOUNCED, "bad_target"),
    ],
)
def test_purpose_choice_source_rules(org, source, to_status, code):
    attendance = purposes.by_key(org, "attendance")
    outcome = ledger.change_purpose(org, "text", PHONES["in"], attendance, to_status,
                                    source=source, actor=Actor.recipient())  # fmt: skip
    assert outcome.refused and outcome.code == code


def test_a_text_reply_turns_a_purpose_off_never_on(org):
    general = purposes.general(org)
    outcome = ledger.change_purpose(org, "text", PHONES["in"], general, Status.OPTED_OUT,
                                    source=Source.SMS_REPLY, actor=Actor.recipient())  # fmt: skip
    assert outcome.changed
    assert eligibility.check_one(org, "text", PHONES["in"], general).reason == "opted_out"
    emergency = purposes.by_key(org, "emergency")
    outcome = ledger.change_purpose(org, "voice", PHONES["in"], emergency, Status.OPTED_OUT,
                                    source=Source.SMS_REPLY, actor=Actor.recipient())  # fmt: skip
    assert outcome.code == "always_sent"


def test_a_stop_that_blocks_calls_leaves_emergency_calls_reaching(org):
    """The carrier block of a STOP that also blocked calls (stop_blocks_voice) is ours, not a
    carrier's: an emergency call reaches; an emergency text to a STOPped number does not."""
    number = "+12025550149"
    for channel in (Channel.TEXT, Channel.VOICE):
        ledger.opt_out(org, channel, number, source=Source.SMS_KEYWORD, actor=Actor.recipient(),
                       carrier_block=True)  # fmt: skip
    emergency = purposes.by_key(org, "emergency")
    assert eligibility.check_one(org, "voice", number, emergency).reason == "ok"
    assert eligibility.check_one(org, "text", number, emergency).reason == "opted_out"
    assert eligibility.check_one(org, "voice", number, purposes.general(org)).reason == "opted_out"


def test_admin_records_a_purpose_opt_out_only_when_the_rule_allows(org):
    attendance = purposes.by_key(org, "attendance")
    org.admin_may_record_opt_out = False
    outcome = ledger.change_purpose(org, "text", PHONES["in"], attendance, Status.OPTED_OUT,
                                    source=Source.ADMIN, actor=Actor.system())  # fmt: skip
    assert outcome.code == "admin_opt_out_off"
    org.admin_may_record_opt_out = True
    outcome = ledger.change_purpose(org, "text", PHONES["in"], attendance, Status.OPTED_OUT,
                                    source=Source.ADMIN, actor=Actor.system())  # fmt: skip
    assert outcome.changed
    assert eligibility.check_one(org, "text", PHONES["in"], attendance).reason == "opted_out"


def test_another_organizations_purpose_is_refused(org):
    other = make_org(texting_number="+12025550199")
    theirs = purposes.by_key(other, "general")
    outcome = ledger.change_purpose(org, "text", PHONES["in"], theirs, Status.OPTED_OUT,
                                    source=Source.PORTAL, actor=Actor.recipient())  # fmt: skip
    assert outcome.code == "bad_purpose"
    with pytest.raises(purposes.UnknownPurpose):
        purposes.by_key(org, "lunch")
    assert db.session.query(MessagePurpose).filter_by(organization_id=org.id).count() == 3


# --- the API --------------------------------------------------------------------------------


def test_api_single_and_bulk_with_a_purpose(org, client):
    answer = client.get(URL, query_string={"channel": "text", "address": PHONES["out"],
                                           "purpose": "emergency"}, headers=KEY)  # fmt: skip
    assert answer.status_code == 200 and answer.json["reason"] == "ok"
    without = client.get(URL, query_string={"channel": "text", "address": PHONES["out"]},
                         headers=KEY)  # fmt: skip
    assert without.json["reason"] == "opted_out"
    addresses = [PHONES[s] for s in TEXT_RULES]
    for key in (None, "emergency", "attendance", "general"):
        body = {"channel": "text", "addresses": addresses}
        if key:
            body["purpose"] = key
        response = client.post(URL, json=body, headers=KEY)
        assert response.status_code == 200
        assert [r["reason"] for r in response.json["results"]] == [
            TEXT_RULES[s][key] for s in TEXT_RULES
        ]


@pytest.mark.parametrize("purpose", ["lunch", "", 7, ["general"]])
def test_api_unknown_purpose_is_400_naming_the_field(org, client, purpose):
    response = client.post(URL, json={"channel": "text", "addresses": [PHONES["in"]],
                                      "purpose": purpose}, headers=KEY)  # fmt: skip
    assert response.status_code == 400 and "purpose" in response.json["error"]
    if isinstance(purpose, str):
        one = client.get(URL, query_string={"channel": "text", "address": PHONES["in"],
                                            "purpose": purpose}, headers=KEY)  # fmt: skip
        assert one.status_code == 400 and "purpose" in one.json["error"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_api_with_purpose_needs_a_key(org, client, headers):
    assert client.get(URL, query_string={"channel": "text", "address": PHONES["in"],
                                         "purpose": "general"}, headers=headers).status_code == 401  # fmt: skip
    body = {"channel": "text", "addresses": [PHONES["in"]], "purpose": "general"}
    assert client.post(URL, json=body, headers=headers).status_code == 401
    assert client.get("/api/v1/purposes", headers=headers).status_code == 401


def test_api_lists_the_purposes(org, client):
    response = client.get("/api/v1/purposes", headers=KEY)
    keys = [p["key"] for p in response.json["purposes"]]
    assert "emergency" in keys and "general" in keys


def test_openapi_documents_the_purpose(client):
    document = client.get("/api/v1/openapi.json").json
    one = document["paths"]["/api/v1/eligibility"]["get"]["parameters"]
    assert any(p["name"] == "purpose" for p in one)
    assert "purpose" in document["components"]["schemas"]["ManyRequest"]["properties"]


def test_the_tour_shows_the_demo_parents_purpose_choices(demo):
    from consent.models import Organization

    org = db.session.query(Organization).first()
    general = purposes.general(org)
    emergency = purposes.by_key(org, "emergency")
    mail = "parent@example.org"
    assert eligibility.check_one(org, "email", mail, general).reason == "opted_out"
    assert eligibility.check_one(org, "email", mail, emergency).allowed
    attendance = purposes.by_key(org, "attendance")
    assert not eligibility.check_one(org, "voice", "+12025550124", attendance).allowed


def test_demo_data_has_per_purpose_choices(demo):
    from consent.models import PurposeState

    states = db.session.query(PurposeState).all()
    assert states and all(s.status == Status.OPTED_OUT for s in states)
    events = [e for s in states for e in events_of(s.address) if e.purpose_id == s.purpose_id]
    assert len(events) == len(states)
