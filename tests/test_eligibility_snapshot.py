"""The eligibility snapshot (consent/snapshot.py): the same answers as the database path on
random ledgers, and never staler than the last committed change (another connection's)."""

from __future__ import annotations

import threading
from urllib.parse import quote

import pytest
from flask import g
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import eligibility, ledger, outbox, purposes, snapshot
from consent.extensions import db
from consent.ledger import Actor, BulkRow
from consent.models import Channel, Organization, Source, Status
from tests.api_helpers import ENV_KEY
from tests.factories import make_org

PARENT = Actor.recipient()
ADMIN = Actor("user", None, "admin")
NUMBERS = [f"+1202555{n:04d}" for n in range(120, 132)]
# What callers send besides E.164: national formats, numbers phonenumbers rewrites, garbage.
ODD_INPUTS = ["(202) 555-0121", "202-555-0122", "+1 202 555 0123", "not a number", "", "+999",
              "+12025550000", "+1202555012", "+4420794601", "+442079460123", "+39 06 1234 5678",
              "+١٢٠٢٥٥٥٠١٢٠"]  # fmt: skip


def _commit():
    db.session.commit()
    outbox.deliver_pending()


def _op(org, op, channel, number, purpose):
    if op == "stop":
        ledger.opt_out(org, channel, number, source=Source.SMS_KEYWORD, actor=PARENT,
                       carrier_block=True)  # fmt: skip
    elif op == "out":
        ledger.opt_out(org, channel, number, source=Source.ADMIN, actor=ADMIN)
    elif op == "in":
        ledger.opt_in(org, channel, number, source=Source.PORTAL, actor=PARENT)
    elif op == "start":
        ledger.opt_in(org, channel, number, source=Source.SMS_KEYWORD, actor=PARENT)
    elif op == "bounce":
        ledger.mark_bounced(org, channel, number)
    elif op == "unbounce":
        ledger.clear_bounce(org, channel, number, actor=ADMIN)
    elif op == "bulk":
        ledger.opt_out_many(org, channel, [BulkRow(number, {"test": True})],
                            source=Source.IMPORT, actor=Actor.system())  # fmt: skip
    elif op in ("purpose_out", "purpose_in"):
        status = Status.OPTED_OUT if op == "purpose_out" else Status.OPTED_IN
        ledger.change_purpose(org, channel, number, purpose, status, source=Source.PORTAL,
                              actor=PARENT)  # fmt: skip
    elif op == "revert":
        state = ledger.current(org, channel, number)
        if state is not None and state.last_event_id:
            ledger.revert(org, state.last_event_id, actor=ADMIN, note="test")


OPS = st.sampled_from(
    ["stop", "out", "in", "start", "bounce", "unbounce", "bulk", "purpose_out", "purpose_in",
     "revert"]
)  # fmt: skip


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(
            OPS, st.sampled_from(["text", "voice"]), st.sampled_from(NUMBERS), st.integers(0, 2)
        ),
        max_size=25,
    ),  # fmt: skip
    asked=st.lists(st.sampled_from(NUMBERS + ODD_INPUTS), min_size=1, max_size=30),
    rebuild=st.booleans(),
    consent_rule=st.booleans(),
)
def test_snapshot_answers_as_the_database_does(app, steps, asked, rebuild, consent_rule):
    """Random changes (STOP with its carrier block, opt-outs, opt-ins, bounces and their
    clearing, imports, per-purpose choices, undos), committed in several steps; then the
    snapshot (refreshed, or built again) and the database agree on every address, for every
    purpose and none. The ledger accumulates over the examples: the snapshot keeps up."""
    org = db.session.scalars(db.select(Organization)).first() or make_org()
    org.text_requires_consent = consent_rule
    _commit()
    org_purposes = purposes.of(org)
    for position, (op, channel, number, which) in enumerate(steps):
        _op(org, op, channel, number, org_purposes[which % len(org_purposes)])
        if position % 4 == 3:
            _commit()
            if rebuild:
                snapshot.forget()
    _commit()
    for channel in ("text", "voice"):
        for purpose in [None, *org_purposes]:
            fast = eligibility.check_packed(org, channel, asked, purpose).rows()
            slow = eligibility.check_rows(org, channel, asked, purpose)
            assert fast == slow, (channel, purpose and purpose.key)
            only_e164 = [a for a in asked if a.startswith("+") and a[1:].isdigit()]
            fast = eligibility.check_packed(org, channel, only_e164, purpose).rows()
            assert fast == eligibility.check_rows(org, channel, only_e164, purpose)
    db.session.rollback()


def _in_another_connection(app, work, failures=None, wait=True):
    """Run `work()` in a thread of its own: its own app context, session and connection.
    With wait=False the thread is returned running; its failures land in `failures`."""
    failures = [] if failures is None else failures

    def run():
        try:
            with app.app_context():
                work()
                db.session.remove()
        except Exception as problem:  # noqa: BLE001 - reported by the test
            failures.append(problem)

    thread = threading.Thread(target=run)
    thread.start()
    if not wait:
        return thread
    thread.join(30)
    assert not failures, failures
    return thread


def _ask(client, key, address, purpose=None):
    # The test client's requests share this test's app context and session: end its read
    # transaction, as the end of a real request does.
    db.session.rollback()
    body = {"channel": "text", "addresses": [address, "+12025550199"]}
    if purpose:
        body["purpose"] = purpose
    bulk = client.post("/api/v1/eligibility", json=body, headers=key)
    tail = f"&purpose={purpose}" if purpose else ""
    one = client.get(f"/api/v1/eligibility?channel=text&address={quote(address)}{tail}",
                     headers=key)  # fmt: skip
    assert bulk.status_code == one.status_code == 200
    assert bulk.json["results"][0] == one.json
    return one.json["reason"]


@pytest.fixture
def api_key(app):
    return ENV_KEY


def test_the_next_answer_sees_an_opt_out_committed_in_another_connection(app, client, api_key):
    """The snapshot is built (first answer), an opt-out and then a purpose opt-out are committed
    in another connection: the very next answers (bulk and one) see each."""
    org = make_org()
    ledger.opt_in(org, Channel.TEXT, "+12025550150", source=Source.PORTAL, actor=PARENT)
    _commit()
    org_id = org.id
    assert _ask(client, api_key, "+12025550150") == "ok"
    assert _ask(client, api_key, "+12025550150", "general") == "ok"

    def stop():
        other = db.session.get(Organization, org_id)
        ledger.opt_out(other, Channel.TEXT, "+12025550150", source=Source.SMS_KEYWORD,
                       actor=PARENT, carrier_block=True)  # fmt: skip
        db.session.commit()

    _in_another_connection(app, stop)
    assert _ask(client, api_key, "+12025550150") == "opted_out"
    assert _ask(client, api_key, "+12025550150", "emergency") == "opted_out"  # carrier block

    def general_out():
        other = db.session.get(Organization, org_id)
        ledger.change_purpose(other, Channel.TEXT, "+12025550151", purposes.general(other),
                              Status.OPTED_OUT, source=Source.PORTAL, actor=PARENT)  # fmt: skip
        db.session.commit()

    assert _ask(client, api_key, "+12025550151", "general") == "no_consent"
    _in_another_connection(app, general_out)
    assert _ask(client, api_key, "+12025550151", "general") == "opted_out"


def test_an_older_open_transaction_does_not_hide_a_newer_commit(app, client, api_key, database):
    """PostgreSQL: a transaction that began writing first and is still open (it holds the
    snapshot's xmin back) does not hide an opt-out committed after it; once it commits, the next
    answer sees its opt-out too. (SQLite has one writer at a time: nothing to overlap.)"""
    if database.startswith("sqlite"):
        pytest.skip("one writer at a time on SQLite")
    org = make_org()
    _commit()
    org_id = org.id
    assert _ask(client, api_key, "+12025550160") == "no_consent"
    started, finish = threading.Event(), threading.Event()

    def slow():
        other = db.session.get(Organization, org_id)
        ledger.opt_out(other, Channel.TEXT, "+12025550161", source=Source.ADMIN, actor=ADMIN)
        db.session.flush()
        started.set()
        finish.wait(30)
        db.session.commit()

    def fast():
        other = db.session.get(Organization, org_id)
        ledger.opt_out(other, Channel.TEXT, "+12025550160", source=Source.ADMIN, actor=ADMIN)
        db.session.commit()

    failures = []
    holder = _in_another_connection(app, slow, failures, wait=False)
    try:
        assert started.wait(30)
        _in_another_connection(app, fast)
        assert _ask(client, api_key, "+12025550160") == "opted_out"
        assert _ask(client, api_key, "+12025550161") == "no_consent"
    finally:
        finish.set()
        holder.join(30)
    assert not failures, failures
    assert _ask(client, api_key, "+12025550161") == "opted_out"


def test_a_database_emptied_under_the_process_is_noticed(app, client, api_key):
    """The tables emptied and refilled (a restore): the snapshot is built again, it does not
    keep answering from the old rows."""
    org = make_org()
    ledger.opt_out(org, Channel.TEXT, "+12025550170", source=Source.ADMIN, actor=ADMIN)
    _commit()
    assert _ask(client, api_key, "+12025550170") == "opted_out"
    from tests.conftest import _empty_tables

    db.session.remove()
    _empty_tables()
    for name in list(g):  # what this test's requests cached about the old organization
        g.pop(name, None)
    org = make_org()
    ledger.opt_in(org, Channel.TEXT, "+12025550171", source=Source.PORTAL, actor=PARENT)
    _commit()
    assert _ask(client, api_key, "+12025550170") == "no_consent"
    assert _ask(client, api_key, "+12025550171") == "ok"


def _strict_json(raw: bytes):
    """What json_body answered before msgspec: the standard library's strict reading."""
    import json

    from api.auth import _no_constant, _too_deep

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not utf-8"
    if _too_deep(text):
        return "too deep"
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return "not json"
    return body if isinstance(body, dict) else "not an object"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
BODIES = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    JSON_VALUES.map(lambda v: __import__("json").dumps(v).encode()),
    st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3).map(
        lambda v: __import__("json").dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")
    ),
    st.sampled_from([b'{"a": NaN}', b'{"a": 1e400}', b'{"a": 123456789012345678901234567890}',
                     b'{"a": "\\ud800"}', b'{"a": 1, "a": 2}', b"[" * 40 + b"]" * 40,
                     b'{"a":' + b"[" * 33 + b"]" * 33 + b"}", b'\xef\xbb\xbf{"a": 1}']),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(raw=BODIES)
def test_json_body_reads_every_body_as_the_standard_library_did(raw):
    """msgspec reads the body first (api.auth.json_body); whatever the bytes, the answer is the
    standard library's strict one: the same object, or the same refusal."""
    from flask import Flask

    from api.auth import BadRequest, json_body

    app = Flask(__name__)
    with app.test_request_context("/", method="POST", data=raw):
        try:
            got = json_body()
        except BadRequest as refused:
            got = refused.message
    expected = _strict_json(raw)
    if isinstance(expected, dict):
        assert got == expected
    else:
        assert isinstance(got, str) and not isinstance(expected, dict)


E164_LIKE = st.one_of(
    st.from_regex(r"\+1[2-9][0-9]{2}[0-9]{7}", fullmatch=True),
    st.from_regex(r"\+1[0-9]{7,13}", fullmatch=True),
    st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True),
    st.sampled_from(["+12025550111", "+112025550111", "+18005550100", "+19005550100",
                     "+14165550100", "+18095550100", "+16715550100", "+442079460123"]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(values=st.lists(E164_LIKE, max_size=40))
def test_verdicts_of_many_numbers_are_each_ones_verdict(values):
    """consent.e164.verdicts (one regular-expression pass over the North American numbers)
    answers exactly as verdict() of each number."""
    from consent.e164 import verdict, verdicts

    assert verdicts(values) == [verdict(v) for v in values]
