"""The change feed: GET /api/v1/events, oldest first, with a cursor that misses nothing and
returns nothing twice while changes commit concurrently (PostgreSQL's ids commit out of order)."""

from __future__ import annotations

import random
import threading
import time

import pytest
import sqlalchemy as sa

from consent import feed, ledger
from consent.extensions import db
from consent.ledger import Actor, BulkRow
from consent.models import Channel, ConsentEvent, Source
from tests.api_helpers import ENV_KEY, key_for, two_orgs, wrong_callers
from tests.factories import make_org
from tests.helpers import settled

URL = "/api/v1/events"


@pytest.fixture
def org(app):
    org = make_org()
    db.session.commit()
    return org


def opt_out(org, address, channel=Channel.TEXT, **kw):
    kw.setdefault("source", Source.PORTAL)
    kw.setdefault("actor", Actor.recipient())
    return ledger.opt_out(org, channel, address, **kw)


def test_changes_come_oldest_first_with_their_fields(org, client):
    opt_out(org, "+12025550111", carrier_block=True, source=Source.SMS_KEYWORD)
    ledger.opt_in(
        org, Channel.EMAIL, "a@example.org", source=Source.PORTAL, actor=Actor.recipient()
    )
    db.session.commit()
    response = settled(
        lambda: client.get(URL, headers=ENV_KEY), lambda r: len(r.json["events"]) >= 2
    )
    assert response.status_code == 200
    first, second = response.json["events"]
    assert first["id"] < second["id"]
    assert first | {"at": None} == {
        "id": first["id"],
        "at": None,
        "channel": "text",
        "address": "+12025550111",
        "from": None,
        "to": "opted_out",
        "source": "sms_keyword",
        "carrier_block": True,
        "version": 1,
        "purpose": None,
    }
    assert first["at"].endswith("Z")
    assert second["to"] == "opted_in" and second["channel"] == "email"


def test_the_cursor_pages_through_everything_once(org, client):
    for n in range(25):
        opt_out(org, f"+1202555{n:04d}")
    db.session.commit()
    settled(lambda: client.get(URL, query_string={"limit": 100}, headers=ENV_KEY).json["events"],
            lambda found: len(found) >= 25)  # fmt: skip
    seen, after = [], ""
    while True:
        page = client.get(URL, query_string={"after": after, "limit": 7}, headers=ENV_KEY).json
        if not page["events"]:
            break
        seen += [event["address"] for event in page["events"]]
        after = page["next"]
    assert seen == [f"+1202555{n:04d}" for n in range(25)]
    # nothing new: the same cursor again, an empty page
    again = client.get(URL, query_string={"after": after}, headers=ENV_KEY).json
    assert again == {"events": [], "next": after}
    opt_out(org, "+12025559999")
    db.session.commit()
    newest = settled(
        lambda: client.get(URL, query_string={"after": after}, headers=ENV_KEY).json["events"], len
    )
    assert [e["address"] for e in newest] == ["+12025559999"]


def test_requests_to_opt_back_in_are_not_changes(org, client):
    opt_out(org, "a@example.org", Channel.EMAIL)
    ledger.request_opt_back_in(
        org, Channel.EMAIL, "a@example.org", actor=Actor.recipient(), source=Source.PORTAL,
        attested=False,
    )  # fmt: skip
    db.session.commit()
    events = settled(lambda: client.get(URL, headers=ENV_KEY).json["events"], len)
    assert len(events) == 1


def test_bulk_imports_are_in_the_feed(org, client):
    rows = [BulkRow(f"+1202555{n:04d}", {"row": n}) for n in range(50)]
    ledger.opt_out_many(org, Channel.TEXT, rows, source=Source.IMPORT, actor=Actor.system())
    db.session.commit()
    events = settled(
        lambda: client.get(URL, query_string={"limit": 100}, headers=ENV_KEY).json["events"],
        lambda found: len(found) >= 50,
    )
    assert len(events) == 50 and {e["source"] for e in events} == {"import"}


@pytest.mark.parametrize(
    ("query", "field"),
    [({"limit": "0"}, "limit"), ({"limit": "10001"}, "limit"), ({"limit": "x"}, "limit"),
     ({"after": "12"}, "after"), ({"after": "-1-2"}, "after"), ({"after": "9" * 30 + "-1"}, "after")],
)  # fmt: skip
def test_bad_parameters_get_400_naming_the_field(org, client, query, field):
    response = client.get(URL, query_string=query, headers=ENV_KEY)
    assert response.status_code == 400 and response.json["field"] == field


@pytest.mark.parametrize("who", ["no key", "unknown key", "revoked key", "wrong scope"])
def test_the_feed_refuses_the_wrong_callers(org, client, who):
    opt_out(org, "+12025550111")
    db.session.commit()
    headers, status = wrong_callers(org, "events:read")[who]
    response = client.get(URL, headers=headers)
    assert response.status_code == status and "events" not in response.json


def test_another_organizations_key_sees_only_its_own_changes(app, client):
    ours, theirs = two_orgs()
    opt_out(ours, "+12025550111")
    opt_out(theirs, "+12025550122")
    db.session.commit()
    key = key_for(theirs, "events:read")
    mine = settled(lambda: client.get(URL, headers=key).json["events"], len)
    assert [e["address"] for e in mine] == ["+12025550122"]


# --- concurrency ------------------------------------------------------------------------------


def _in_thread(app, work, *args):
    """Run `work` in a thread of its own, with its own app context and session."""
    box = {}

    def target():
        with app.app_context():
            try:
                box["value"] = work(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                box["error"] = exc
            finally:
                db.session.remove()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def _read_all(org_id, after):
    events, following = feed.page(org_id, after, feed.MAX_LIMIT)
    db.session.rollback()
    return events, following


def test_an_earlier_id_still_in_flight_holds_the_feed_back(app, org):
    """A transaction takes an event id, a later one commits first: the feed does not pass the
    earlier id until it commits, then gives both, once."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids commit in order")
    org_id = org.id
    written, release = threading.Event(), threading.Event()

    def slow_writer():
        org_ = db.session.get(type(org), org_id)
        outcome = opt_out(org_, "+12025550101")
        written.set()
        release.wait(30)
        db.session.commit()
        return outcome.event.id

    slow, slow_box = _in_thread(app, slow_writer)
    assert written.wait(30)

    def quick_writer():
        outcome = opt_out(db.session.get(type(org), org_id), "+12025550102")
        db.session.commit()
        return outcome.event.id

    quick, quick_box = _in_thread(app, quick_writer)
    quick.join(30)
    assert quick_box["value"] > 0
    reader, seen = _in_thread(app, _read_all, org_id, feed.Cursor())
    reader.join(30)
    assert seen["value"][0] == []  # the quick one's id is later, but an earlier one is open
    release.set()
    slow.join(30)
    assert slow_box["value"] < quick_box["value"]

    def read_both():
        reader, seen = _in_thread(app, _read_all, org_id, feed.Cursor())
        reader.join(30)
        return [e["address"] for e in seen["value"][0]]

    assert settled(read_both, lambda found: len(found) >= 2) == ["+12025550101", "+12025550102"]


def test_a_reader_following_the_cursor_sees_every_committed_change_once(app, org):
    """Writers commit changes at random moments (ids taken before others commit) while a
    reader follows the cursor; at the end it has every committed event exactly once."""
    org_id = org.id
    # SQLite's writers queue on its lock (busy handler sleeps): fewer of them there.
    writers, per_writer = (4, 30) if db.engine.dialect.name == "postgresql" else (2, 10)
    done = threading.Event()
    committed: list[int] = []
    lock = threading.Lock()

    def writer(number):
        rng = random.Random(number)
        org_ = db.session.get(type(org), org_id)
        for n in range(per_writer):
            outcome = opt_out(org_, f"+1202{number:03d}{n:04d}")
            time.sleep(rng.random() * 0.004)  # hold the taken id a moment
            if n % 7 == 3:
                db.session.rollback()  # some never commit: they must never appear
                continue
            db.session.commit()
            with lock:
                committed.append(outcome.event.id)

    def reader():
        seen, after = [], feed.Cursor()
        deadline = None
        while True:
            finished = done.is_set()
            events, after = feed.page(org_id, after, 5)
            db.session.rollback()
            seen += [event["id"] for event in events]
            if finished and not events:
                # Every writer has committed. On PostgreSQL another test worker's open
                # transaction (transaction ids are the whole server's) may hold the last
                # events back a moment: read on until they come, or the time is up.
                deadline = deadline or time.monotonic() + 30
                with lock:
                    everything = len(set(seen)) >= len(committed)
                if everything or time.monotonic() > deadline:
                    return seen
                time.sleep(0.05)

    threads = [_in_thread(app, writer, n) for n in range(writers)]
    read_thread, read_box = _in_thread(app, reader)
    for thread, box in threads:
        thread.join(120)
        assert "error" not in box, box.get("error")
    done.set()
    read_thread.join(120)
    assert "error" not in read_box, read_box.get("error")
    seen = read_box["value"]
    assert len(seen) == len(set(seen)), "an event was returned twice"
    assert sorted(seen) == sorted(committed), "an event was missed (or one never committed)"
    db.session.rollback()  # a fresh snapshot: what the writers committed
    stored = db.session.scalars(
        sa.select(ConsentEvent.id).where(ConsentEvent.organization_id == org_id)
    ).all()
    assert sorted(stored) == sorted(committed)
    assert len(committed) == writers * (per_writer - len(range(3, per_writer, 7)))
