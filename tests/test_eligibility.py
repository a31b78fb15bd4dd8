"""Eligibility: may we send on this channel to this address?"""

import pytest
import sqlalchemy as sa

from consent import eligibility, ledger
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, Source
from tests.factories import make_org

ADMIN = Actor("user", None, "admin")


@pytest.fixture
def org(app):
    """An organization with opt-outs, a bounce, an opt-in and a STOP."""
    org = make_org()
    ledger.opt_out(org, Channel.TEXT, "+12025550111", source=Source.ADMIN, actor=ADMIN)
    ledger.mark_bounced(org, Channel.TEXT, "+12025550112")
    ledger.opt_in(org, Channel.TEXT, "+12025550113", source=Source.PORTAL, actor=ADMIN)
    ledger.opt_out(
        org, Channel.EMAIL, "out@example.org", source=Source.ONE_CLICK, actor=Actor.recipient()
    )
    db.session.commit()
    return org


@pytest.mark.parametrize(
    ("channel", "address", "normalized", "reason"),
    [
        ("text", "(202) 555-0111", "+12025550111", "opted_out"),
        ("text", "202-555-0112", "+12025550112", "bounced"),
        ("text", "+12025550113", "+12025550113", "ok"),
        ("text", "+12025550114", "+12025550114", "no_consent"),
        ("voice", "+12025550114", "+12025550114", "ok"),
        ("voice", "+12025550111", "+12025550111", "ok"),
        ("email", "Out@Example.org", "out@example.org", "opted_out"),
        ("email", "new@example.org", "new@example.org", "ok"),
        ("text", "not a number", None, "invalid"),
        ("email", "nobody@", None, "invalid"),
    ],
)
def test_reason_for_each_kind_of_address(org, channel, address, normalized, reason):
    """Each address gets the reason its state calls for, and only `ok` is allowed."""
    result = eligibility.check_one(org, channel, address)
    assert (result.address, result.normalized, result.reason) == (address, normalized, reason)
    assert result.allowed is (reason == "ok")


def test_unknown_text_is_eligible_when_consent_rule_is_off(org):
    """With 'text needs consent' off, an unknown number may be texted."""
    org.text_requires_consent = False
    assert eligibility.check_one(org, "text", "+12025550114").reason == "ok"


def test_many_keeps_order_and_costs_one_query_per_chunk(org, app, monkeypatch):
    """5,000 addresses are answered in order with one query per chunk of 1,000."""
    monkeypatch.setattr(eligibility, "CHUNK", 1000)
    monkeypatch.setattr(eligibility, "PG_CHUNK", 1000)
    numbers = [f"+1202555{n:04d}" for n in range(5000)]
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        results = eligibility.check_many(org, "text", numbers)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert [r.address for r in results] == numbers
    assert results[111].reason == "opted_out" and results[113].reason == "ok"
    assert len([s for s in statements if "consent_states" in s]) == 5


def test_addresses_with_array_and_list_characters_are_found(org, app):
    """An opted-out email with braces, a comma-free oddity and an apostrophe is found in a bulk
    check among thousands (the list travels as one literal on PostgreSQL, JSON on SQLite)."""
    odd = ["o'brien@example.org", "a{b}c@example.org", "x|y~z@example.org"]
    for address in odd:
        ledger.opt_out(org, Channel.EMAIL, address, source=Source.ADMIN, actor=ADMIN)
    db.session.commit()
    many = [f"parent{n}@example.org" for n in range(3000)] + odd
    results = eligibility.check_many(org, "email", many)
    assert [r.reason for r in results[-3:]] == ["opted_out"] * 3
    assert {r.reason for r in results[:-3]} == {"ok"}
