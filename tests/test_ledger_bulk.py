"""ledger.opt_out_many (the import's database part) and the national digits it stores."""

import threading
import time

import phonenumbers
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from consent import eligibility, ledger
from consent.addresses import phone_digits
from consent.extensions import db
from consent.models import Channel, ConsentEvent, ConsentState, Organization, Role, Source, Status
from tests import factories
from tests.helpers import settled


def test_opt_out_many_writes_one_event_per_changed_address(app):
    """New and opted-in addresses are opted out (version + 1, one event each, evidence kept);
    an opted-out one is "already" and gets no event; a carrier block stays."""
    org = factories.make_org()
    system = ledger.Actor.system()
    ledger.opt_in(org, "text", "+12025550101", source=Source.PORTAL, actor=system)
    ledger.opt_out(org, "text", "+12025550102", source=Source.ADMIN, actor=system)
    ledger.opt_out(
        org, "text", "+12025550103", source=Source.SMS_KEYWORD, actor=system, carrier_block=True
    )
    ledger.opt_in(org, "text", "+12025550103", source=Source.SMS_KEYWORD, actor=system)
    db.session.commit()
    before = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    rows = [
        ledger.BulkRow(address, {"file": "f.csv", "row": n}, note="bulk")
        for n, address in enumerate(
            ["+12025550100", "+12025550101", "+12025550102", "+12025550103", "+12025550100"]
        )
    ]
    result = ledger.opt_out_many(org, "text", rows, source=Source.IMPORT, actor=system)
    db.session.commit()
    assert result == {
        "+12025550100": "imported",
        "+12025550101": "imported",
        "+12025550102": "already",
        "+12025550103": "imported",
    }
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == before + 3
    db.session.expire_all()
    new = ledger.current(org, "text", "+12025550100")
    assert (new.status, new.version, new.source, new.note, new.digits) == (
        Status.OPTED_OUT,
        1,
        Source.IMPORT,
        "bulk",
        "2025550100",
    )
    event = db.session.get(ConsentEvent, new.last_event_id)
    assert (event.from_status, event.to_status, event.state_version) == (None, Status.OPTED_OUT, 1)
    assert event.evidence == {
        "file": "f.csv",
        "row": 4,
    }  # of duplicates in one call, the last counts
    was_in = ledger.current(org, "text", "+12025550101")
    assert (was_in.status, was_in.version) == (Status.OPTED_OUT, 2)
    assert db.session.get(ConsentEvent, was_in.last_event_id).from_status == Status.OPTED_IN


@pytest.mark.parametrize("region", ["US", "GB", "IT", "DE", "MX", "IN", "BR", "AU", "JP", "FR"])
def test_phone_digits_are_the_national_number(region):
    """The fast national digits equal phonenumbers' national significant number."""
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
        example = phonenumbers.example_number_for_type(region, kind)
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        assert phone_digits(e164) == phonenumbers.national_significant_number(example)


def test_created_state_and_event_match_a_single_opt_out(app):
    """A state that opt_out_many creates, and its event, hold what `ledger.change` would have
    written for the same opt-out: who, when, how, the evidence; version 1, linked both ways."""
    org = factories.make_org()
    user = factories.make_user(org, "office@example.org", Role.ORG)
    db.session.commit()
    actor = ledger.Actor.for_user(user)
    origin = ledger.Origin(ip="203.0.113.9", user_agent="Import test")
    rows = [
        ledger.BulkRow("+12025550140", {"file": "a.csv", "row": 2, "batch": 7}, "from the office"),
        ledger.BulkRow("rivera@example.org", {"file": "a.csv", "row": 3, "batch": 7}),
    ]
    ledger.opt_out_many(org, "text", rows[:1], source=Source.IMPORT, actor=actor, origin=origin)
    ledger.opt_out_many(org, "email", rows[1:], source=Source.IMPORT, actor=actor, origin=origin)
    ledger.opt_out(
        org, "voice", "+12025550140", source=Source.IMPORT, actor=actor, origin=origin,
        note="from the office",
    )  # fmt: skip
    db.session.commit()
    db.session.expire_all()

    bulk = ledger.current(org, "text", "+12025550140")
    single = ledger.current(org, "voice", "+12025550140")
    for name in ("status", "carrier_block", "source", "changed_by", "changed_by_user_id", "note",
                 "version", "sort_key", "digits"):  # fmt: skip
        assert getattr(bulk, name) == getattr(single, name), name
    event = db.session.get(ConsentEvent, bulk.last_event_id)
    single_event = db.session.get(ConsentEvent, single.last_event_id)
    for name in ("kind", "from_status", "to_status", "carrier_block", "source", "actor",
                 "actor_user_id", "actor_label", "ip", "user_agent", "note", "state_version"):  # fmt: skip
        assert getattr(event, name) == getattr(single_event, name), name
    assert (event.address, event.channel, event.evidence) == (
        "+12025550140",
        Channel.TEXT,
        {"file": "a.csv", "row": 2, "batch": 7},
    )
    assert event.occurred_at == bulk.changed_at
    assert bulk.changed_by_user_id == user.id and event.actor == f"user:{user.id}"

    email = ledger.current(org, "email", "rivera@example.org")
    assert (email.status, email.version, email.sort_key, email.digits) == (
        Status.OPTED_OUT,
        1,
        "rivera@example.org",
        None,
    )
    assert db.session.get(ConsentEvent, email.last_event_id).address == "rivera@example.org"


def test_created_rows_get_their_events_in_row_order(app):
    """A thousand new numbers: one event each, ids ascending in file order, each state pointing
    at its own event; the eligibility answer is opted_out for every one."""
    org = factories.make_org()
    db.session.commit()
    numbers = [f"+1202555{n:04d}" for n in range(1000, 2000)]
    rows = [ledger.BulkRow(number, {"row": i}) for i, number in enumerate(numbers)]
    result = ledger.opt_out_many(
        org, "text", rows, source=Source.IMPORT, actor=ledger.Actor.system()
    )
    db.session.commit()
    assert set(result.values()) == {"imported"}
    events = db.session.execute(
        sa.select(ConsentEvent.id, ConsentEvent.address, ConsentEvent.evidence)
        .where(ConsentEvent.organization_id == org.id)
        .order_by(ConsentEvent.id)
    ).all()
    assert [e.address for e in events] == numbers
    assert [e.evidence["row"] for e in events] == list(range(1000))
    links = dict(
        db.session.execute(
            sa.select(ConsentState.address, ConsentState.last_event_id).where(
                ConsentState.organization_id == org.id
            )
        ).all()
    )
    assert links == {e.address: e.id for e in events}
    answers = eligibility.check_many(org, "text", numbers)
    assert {answer.reason for answer in answers} == {"opted_out"}


def test_two_imports_of_the_same_new_numbers_at_once(app):
    """Two imports race for the same new numbers: the second waits for the first, then finds
    them opted out ("already"): one state and one event per number, never two."""
    org = factories.make_org()
    db.session.commit()
    org_id = org.id
    numbers = [f"+1202555{n:04d}" for n in range(3000, 3200)]
    first_wrote = threading.Event()
    results: dict[str, dict] = {}
    errors: list[BaseException] = []

    def importer(name: str, hold: float) -> None:
        try:
            with app.app_context():
                organization = db.session.get(Organization, org_id)
                rows = [ledger.BulkRow(number, {"importer": name}) for number in numbers]
                results[name] = ledger.opt_out_many(
                    organization, "text", rows, source=Source.IMPORT, actor=ledger.Actor.system()
                )
                first_wrote.set()
                time.sleep(hold)  # the other importer is at its insert meanwhile
                db.session.commit()
                db.session.remove()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
            first_wrote.set()

    first = threading.Thread(target=importer, args=("first", 0.5))
    first.start()
    assert first_wrote.wait(10)
    second = threading.Thread(target=importer, args=("second", 0))
    second.start()
    first.join(20)
    second.join(20)
    assert not errors, errors
    assert set(results["first"].values()) == {"imported"}
    assert set(results["second"].values()) == {"already"}
    db.session.rollback()  # a fresh snapshot, after both imports
    counts = db.session.execute(
        sa.select(ConsentEvent.address, sa.func.count())
        .where(ConsentEvent.organization_id == org_id)
        .group_by(ConsentEvent.address)
    ).all()
    assert dict(counts) == dict.fromkeys(numbers, 1)
    states = db.session.scalars(
        sa.select(ConsentState).where(ConsentState.organization_id == org_id)
    ).all()
    assert len(states) == len(numbers)
    assert {(s.status, s.version) for s in states} == {(Status.OPTED_OUT, 1)}


@pytest.mark.parametrize(
    ("source", "code"), [(Source.ADMIN, "admin_opt_out_off"), (Source.BOUNCE, "bad_source")]
)
def test_opt_out_many_returns_a_refusal_like_a_single_change(app, source, code):
    """A refused bulk opt-out says why, as `change` does, and writes nothing."""
    org = factories.make_org(admin_may_record_opt_out=False)
    db.session.commit()
    rows = [ledger.BulkRow("+12025550170", {"row": 2})]
    single = ledger.opt_out(org, "text", "+12025550170", source=source, actor=ledger.Actor.system())
    result = ledger.opt_out_many(org, "text", rows, source=source, actor=ledger.Actor.system())
    assert result.refused and not single.ok
    assert (result.code, result.reason) == (single.code, single.reason)
    assert result == {}
    assert ledger.current(org, "text", "+12025550170") is None


def test_a_known_address_in_a_chunk_sends_the_whole_chunk_through_the_rules(app):
    """A chunk with one known address among new ones (PostgreSQL: the straight COPY is refused
    by the unique index and undone) and the next chunk of the same transaction, all new: each
    new address gets its state and its one event, the opted-out one is "already" with no new
    event, a carrier block stays; the feed and a subscribed webhook get every new event."""
    from consent import feed, webhooks
    from consent.models import WebhookDelivery

    org = factories.make_org()
    webhooks.create_endpoint(org, "https://hooks.example.org/in", ["consent.opted_out"])
    system = ledger.Actor.system()
    ledger.opt_out(org, "text", "+12025550150", source=Source.ADMIN, actor=system)
    ledger.opt_out(
        org, "text", "+12025550151", source=Source.SMS_KEYWORD, actor=system, carrier_block=True
    )
    ledger.opt_in(org, "text", "+12025550152", source=Source.PORTAL, actor=system)
    db.session.commit()
    events_before = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    deliveries_before = db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery))
    known = ["+12025550150", "+12025550151", "+12025550152"]
    first = [f"+1202555{n:04d}" for n in range(2000, 2010)] + known
    second = [f"+1202555{n:04d}" for n in range(2100, 2110)]
    results = {}
    for chunk in (first, second):
        rows = [ledger.BulkRow(a, {"file": "f.csv", "row": i}) for i, a in enumerate(chunk)]
        results |= ledger.opt_out_many(org, "text", rows, source=Source.IMPORT, actor=system)
    db.session.commit()
    assert [results[a] for a in known] == ["already", "already", "imported"]
    assert {results[a] for a in first[:10] + second} == {"imported"}
    new_events = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    assert new_events == events_before + 21
    blocked = ledger.current(org, "text", "+12025550151")
    assert (blocked.status, blocked.carrier_block, blocked.version) == (Status.OPTED_OUT, True, 1)
    was_in = ledger.current(org, "text", "+12025550152")
    assert (was_in.status, was_in.version) == (Status.OPTED_OUT, 2)
    for address in first[:10] + second:
        state = ledger.current(org, "text", address)
        event = db.session.get(ConsentEvent, state.last_event_id)
        assert (state.version, event.address, event.evidence["file"]) == (1, address, "f.csv")
    deliveries = db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery))
    assert deliveries == deliveries_before + 21
    # The feed waits for the server's older open transactions (tests.helpers.settled).
    changes, _cursor = settled(
        lambda: feed.page(org.id, feed.Cursor()),
        lambda page: {c["address"] for c in page[0]} >= set(first + second),
    )
    assert {c["address"] for c in changes} >= set(first + second)


@given(
    evidence=st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=20)),
        max_size=5,
    )
)
def test_evidence_json_reads_back_as_json_dumps_does(evidence):
    """The bulk writers' JSON (msgspec) holds the same evidence as json.dumps wrote, any text."""
    import json

    from consent.ledger_bulk import evidence_json

    assert json.loads(evidence_json(evidence)) == json.loads(json.dumps(evidence)) == evidence
