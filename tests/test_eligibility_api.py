"""The eligibility API (POST many, GET one), its keys, its errors, its OpenAPI document, and the
fast E.164 check behind it."""

from __future__ import annotations

import json
import math

import phonenumbers
import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from consent import e164, eligibility, ledger, outbox
from consent.extensions import db
from consent.ledger import Actor, BulkRow
from consent.models import Channel, Source
from tests.factories import make_org
from tests.helpers import statements_sent

KEY = {"Authorization": "Bearer test-api-key"}
URL = "/api/v1/eligibility"


@pytest.fixture
def org(app):
    """An organization with a text opt-out, a bounce, an opt-in and an email opt-out."""
    org = make_org()
    ledger.opt_out(org, Channel.TEXT, "+12025550111", source=Source.SMS_KEYWORD,
                   actor=Actor.recipient(), carrier_block=True)  # fmt: skip
    ledger.mark_bounced(org, Channel.TEXT, "+12025550112")
    ledger.opt_in(org, Channel.TEXT, "+12025550113", source=Source.PORTAL, actor=Actor.recipient())
    ledger.opt_out(org, Channel.EMAIL, "out@example.org", source=Source.ONE_CLICK,
                   actor=Actor.recipient())  # fmt: skip
    db.session.commit()
    outbox.deliver_pending()
    return org


def post(client, body, headers=KEY, **kwargs):
    return client.post(URL, json=body, headers=headers, **kwargs)


def test_many_answers_each_address_in_the_order_given(org, client):
    """Results come back in the order given, each with its reason; only `ok` is allowed."""
    addresses = ["+12025550113", "(202) 555-0111", "202.555.0112", "+12025550114", "nonsense",
                 "", "+12025550113", "+1 202 555 0113"]  # fmt: skip
    response = post(client, {"channel": "text", "addresses": addresses})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    results = response.json["results"]
    assert [r["address"] for r in results] == addresses
    assert [r["reason"] for r in results] == [
        "ok", "opted_out", "bounced", "no_consent", "invalid", "invalid", "ok", "ok"
    ]  # fmt: skip
    assert [r["normalized"] for r in results][:5] == [
        "+12025550113", "+12025550111", "+12025550112", "+12025550114", None
    ]  # fmt: skip
    assert [r["allowed"] for r in results] == [r["reason"] == "ok" for r in results]


def test_many_emails_and_voice(org, client):
    """Email addresses are compared lower-cased; voice ignores text opt-outs."""
    emails = post(client, {"channel": "email", "addresses": ["Out@Example.org", "in@example.org",
                                                            "no-at-sign"]}).json["results"]  # fmt: skip
    assert [(r["normalized"], r["reason"]) for r in emails] == [
        ("out@example.org", "opted_out"), ("in@example.org", "ok"), (None, "invalid")
    ]  # fmt: skip
    voice = post(client, {"channel": "voice", "addresses": ["+12025550111"]}).json["results"]
    assert voice[0]["reason"] == "ok"


def test_escaped_json_round_trips(org, client):
    """Addresses with quotes, backslashes and non-ASCII come back exactly as given."""
    odd = ['"quoted"', "back\\slash", "ünïcode", "tab\there", "\u2028"]
    results = post(client, {"channel": "text", "addresses": odd}).json["results"]
    assert [r["address"] for r in results] == odd
    assert {r["reason"] for r in results} == {"invalid"}


def test_empty_list_answers_empty_results(org, client):
    """No addresses: no results, no error."""
    assert post(client, {"channel": "text", "addresses": []}).json == {"results": []}


def test_one_address_by_get(org, client):
    """GET ?channel=&address= answers one result object."""
    response = client.get(f"{URL}?channel=text&address=%28202%29+555-0111", headers=KEY)
    assert response.status_code == 200
    assert response.json == {"address": "(202) 555-0111", "normalized": "+12025550111",
                             "allowed": False, "reason": "opted_out"}  # fmt: skip
    invalid = client.get(f"{URL}?channel=email&address=nobody@", headers=KEY).json
    assert invalid == {"address": "nobody@", "normalized": None, "allowed": False,
                       "reason": "invalid"}  # fmt: skip


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic dGVzdC1hcGkta2V5"},
     {"Authorization": "Bearer"}, {"Authorization": "test-api-key"},
     {"Authorization": "Bearer test-api-key-and-more"}],
    ids=["none", "wrong", "basic", "empty", "no-scheme", "longer"],
)  # fmt: skip
def test_missing_or_wrong_key_gets_401_json(org, client, headers):
    """Without a valid key, both routes answer 401 with a JSON error and nothing else."""
    many = post(client, {"channel": "text", "addresses": ["+12025550111"]}, headers=headers)
    one = client.get(f"{URL}?channel=text&address=%2B12025550111", headers=headers)
    for response in (many, one):
        assert response.status_code == 401
        assert set(response.json) == {"error"}
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_any_configured_key_is_accepted(app, org, client):
    """Every key in API_KEYS works (rotation: old and new at once)."""
    app.config["API_KEYS"] = ["old-key", "new-key"]
    for key in ("old-key", "new-key"):
        response = post(client, {"channel": "text", "addresses": []},
                        headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("not json", "JSON object"),
        ('["+12025550111"]', "JSON object"),
        ('{"addresses": []}', "channel"),
        ('{"channel": "fax", "addresses": []}', "channel"),
        ('{"channel": "text"}', "addresses"),
        ('{"channel": "text", "addresses": "+12025550111"}', "addresses"),
        ('{"channel": "text", "addresses": ["+12025550111", 7]}', "addresses[1]"),
        ('{"channel": ["text"], "addresses": []}', "channel"),
    ],
)
def test_malformed_body_gets_400_with_the_reason(org, client, body, words):
    """A body that is not {"channel", "addresses": [strings]} gets 400 saying what is wrong."""
    response = client.post(URL, data=body, content_type="application/json", headers=KEY)
    assert response.status_code == 400
    assert words in response.json["error"]


@pytest.mark.parametrize("query", ["", "?channel=text", "?address=x", "?channel=sms&address=x"])
def test_get_without_a_valid_channel_and_address_gets_400(org, client, query):
    """GET needs a channel of text, voice or email, and an address."""
    response = client.get(URL + query, headers=KEY)
    assert response.status_code == 400 and "error" in response.json


def test_more_than_100000_addresses_gets_413(org, client):
    """Over 100,000 addresses: 413 with a JSON error; exactly 100,000 is answered."""
    too_many = post(client, {"channel": "email", "addresses": ["a"] * 100_001})
    assert too_many.status_code == 413
    assert "100,000" in too_many.json["error"]
    exactly = post(client, {"channel": "email", "addresses": ["a"] * 100_000})
    assert exactly.status_code == 200 and len(exactly.json["results"]) == 100_000


def test_body_over_the_size_limit_gets_413_json(app, org, client):
    """A body over MAX_CONTENT_LENGTH is refused as JSON too."""
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = post(client, {"channel": "text", "addresses": ["+12025550111"] * 200})
    assert response.status_code == 413 and "error" in response.json


def _count_queries(app, call):
    return statements_sent(call)


def _before_and_after_1500_opt_outs(app, org, client, body):
    """The bulk POST's answer and statements, before and after 1,500 opt-outs are committed
    (500 of them among the 5,000 numbers asked)."""
    first = _count_queries(app, lambda: post(client, body))
    numbers = body["addresses"]
    rows = [BulkRow(number, {"bench": True}) for number in numbers[::10]]
    ledger.opt_out_many(org, Channel.TEXT, rows + [BulkRow(f"+1415555{n:04d}", {}) for n in
                        range(1000)], source=Source.IMPORT, actor=Actor.system())  # fmt: skip
    db.session.commit()
    outbox.deliver_pending()
    second = _count_queries(app, lambda: post(client, body))
    assert sum(r["reason"] == "opted_out" for r in first[0].json["results"]) == 0
    assert sum(r["reason"] == "opted_out" for r in second[0].json["results"]) == 500
    return first, second


@pytest.mark.parametrize("chunk", [1000, eligibility.CHUNK, eligibility.PG_CHUNK])
def test_bulk_queries_are_one_per_chunk_whatever_the_rows(app, org, client, monkeypatch, chunk):
    """The database path (no snapshot; the email channel's): 5,000 addresses cost the same few
    queries with 4 or 1,504 opt-outs on record: one per chunk of addresses plus a constant,
    never one per address."""
    app.config["ELIGIBILITY_SNAPSHOT"] = False
    monkeypatch.setattr(eligibility, "CHUNK", chunk)
    monkeypatch.setattr(eligibility, "PG_CHUNK", chunk)
    numbers = [f"+1202555{n:04d}" for n in range(2000, 7000)]
    body = {"channel": "text", "addresses": numbers}
    (first, before), (second, after) = _before_and_after_1500_opt_outs(app, org, client, body)
    lookups = [s for s in after if "consent_states" in s]
    assert len(lookups) == math.ceil(5000 / chunk)
    assert len(after) == len(before) <= len(lookups) + 6


def test_bulk_from_the_snapshot_is_one_query_whatever_the_rows(app, org, client):
    """The snapshot path (phones): once built, a POST of 5,000 numbers reads no state at all,
    only the changes since the last answer (one query on consent_events), with no opt-out
    on record or 1,500 committed in between; and it answers as the database path does."""
    numbers = [f"+1202555{n:04d}" for n in range(2000, 7000)]
    body = {"channel": "text", "addresses": numbers}
    post(client, body)  # builds the organization's text snapshot
    db.session.rollback()
    (first, before), (second, after) = _before_and_after_1500_opt_outs(app, org, client, body)
    assert not [s for s in after if "consent_states" in s]
    assert len([s for s in after if "consent_events" in s]) == 1
    assert len(after) == len(before)
    app.config["ELIGIBILITY_SNAPSHOT"] = False
    assert post(client, body).json == second.json


# --- the OpenAPI document ---------------------------------------------------------------------


def test_openapi_document_is_public_openapi_31_with_bearer_auth(client):
    """GET /api/v1/openapi.json needs no key and describes both routes with bearer auth."""
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "One of the keys in the API_KEYS setting."
    }  # fmt: skip
    assert set(doc["paths"]["/api/v1/eligibility"]) == {"get", "post"}
    assert doc["security"] == [{"bearerAuth": []}]


def test_api_answers_as_its_openapi_document_says(app, org):
    """Schemathesis: generated requests to every operation get the status codes, content types
    and bodies the document promises (and 401 without the key)."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path == URL]  # the others: test_api_schema.py
    assert len(operations) == 2
    for operation in operations:

        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(headers=KEY)

        check()


# --- the fast E.164 check ---------------------------------------------------------------------


def _phonenumbers_says(value: str) -> bool:
    try:
        parsed = phonenumbers.parse(value, "US")
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(parsed) and (
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == value
    )


def _examples() -> list[str]:
    values = []
    for country_code, regions in sorted(COUNTRY_CODE_TO_REGION_CODE.items()):
        for region in regions:
            number = (
                phonenumbers.example_number_for_non_geo_entity(country_code)
                if region == "001"
                else phonenumbers.example_number(region)
            )
            if number is not None:
                values.append(
                    phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                )
    return values


EXAMPLES = _examples()


def test_fast_check_agrees_with_phonenumbers_on_every_region_example():
    """For every region's example number and its neighbours, the fast check says what
    phonenumbers says (or defers to it)."""
    decided = 0
    for value in EXAMPLES:
        for variant in (value, value[:-1] + str((int(value[-1]) + 1) % 10), value + "1",
                        value[:-1], value[:3] + "0" + value[4:]):  # fmt: skip
            answer = e164.verdict(variant)
            if answer is not None:
                decided += 1
                assert answer == _phonenumbers_says(variant), variant
    assert decided > len(EXAMPLES) * 3


@settings(max_examples=300, deadline=None)
@given(
    country=st.sampled_from(sorted(COUNTRY_CODE_TO_REGION_CODE)),
    digits=st.text(alphabet="0123456789", min_size=1, max_size=14),
)
@example(country=1, digits="2025550123")
@example(country=1, digits="12025550123")
@example(country=39, digits="0612345678")
def test_fast_check_agrees_with_phonenumbers_on_any_number(country, digits):
    """Any "+<country><digits>": the fast check never contradicts phonenumbers."""
    value = f"+{country}{digits}"
    answer = e164.verdict(value)
    if answer is not None:
        assert answer == _phonenumbers_says(value)


@given(st.text(max_size=30))
def test_fast_check_of_any_text_never_contradicts_phonenumbers(value):
    """Any text at all: True only for a valid E.164 number, never an error."""
    if e164.verdict(value) is True:
        assert _phonenumbers_says(value)


def test_bulk_and_single_answers_agree(org):
    """check_many (bulk path) and check_one give the same answers for the same input."""
    addresses = ["+12025550111", "+12025550113", "(202) 555-0112", "+442071838750", "+39061234",
                 "+1202555011", "x", json.dumps({"a": 1})]  # fmt: skip
    bulk = eligibility.check_many(org, "text", addresses)
    assert bulk == [eligibility.check_one(org, "text", a) for a in addresses]


def test_e164_lookalike_that_normalizes_differently_is_still_looked_up(org, client, app):
    """ "+1 1 202…" (a national prefix after the country code) is the number +1 202…: found,
    with one more lookup only when that number was not asked for as well (the database path;
    the snapshot gives the same answers)."""
    snapshot_answer = post(client, {"channel": "text", "addresses": ["+112025550111"]}).json
    app.config["ELIGIBILITY_SNAPSHOT"] = False
    alone, statements = _count_queries(
        app, lambda: post(client, {"channel": "text", "addresses": ["+112025550111"]})
    )
    assert alone.json["results"] == [{"address": "+112025550111", "normalized": "+12025550111",
                                      "allowed": False, "reason": "opted_out"}]  # fmt: skip
    assert snapshot_answer == alone.json
    assert len([s for s in statements if "consent_states" in s]) == 2
    both = ["+112025550111", "+12025550111"]
    answer, statements = _count_queries(
        app, lambda: post(client, {"channel": "text", "addresses": both})
    )
    assert [r["reason"] for r in answer.json["results"]] == ["opted_out", "opted_out"]
    assert len([s for s in statements if "consent_states" in s]) == 1


def test_bulk_post_is_marked_read_only(app):
    """The bulk POST only reads, so it does not take SQLite's write lock."""
    assert app.view_functions["api.eligibility_many"].read_only is True
    assert not getattr(app.view_functions["sms.inbound"], "read_only", False)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_eligibility_reads_without_a_transaction(app, org, client, monkeypatch, method):
    """PostgreSQL: an eligibility check opens no transaction (no BEGIN, no ROLLBACK round
    trips); its answers are the same."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's autocommit (SQLite reads need no round trips)")
    import psycopg

    from api import eligibility as api_eligibility

    statuses = []
    name = "check_packed"  # the snapshot's path, both methods (text)
    real = getattr(api_eligibility, name)

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        driver = db.session.connection().connection.driver_connection
        statuses.append(driver.info.transaction_status)
        return result

    monkeypatch.setattr(api_eligibility, name, spy)
    db.session.remove()  # as a fresh request would find it
    if method == "GET":
        response = client.get(URL, query_string={"channel": "text", "address": "+12025550111"},
                              headers=KEY)  # fmt: skip
        reasons = [response.get_json()["reason"]]
    else:
        response = client.post(URL, json={"channel": "text", "addresses": ["+12025550111",
                               "+12025550113"]}, headers=KEY)  # fmt: skip
        reasons = [row["reason"] for row in response.get_json()["results"]]
    assert response.status_code == 200
    assert reasons == (["opted_out"] if method == "GET" else ["opted_out", "ok"])
    assert statuses == [psycopg.pq.TransactionStatus.IDLE]
