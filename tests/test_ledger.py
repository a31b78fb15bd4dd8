"""The ledger: every rule of DESIGN.md, every source, the lock, and the fold of the events."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from consent import ledger
from consent.extensions import db
from consent.ledger import Actor, BulkRow, Origin
from consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    OutboxMessage,
    Source,
    Status,
)
from tests.helpers import events_of, state_of

CELL = "+12025550123"
EMAIL = "ana@example.org"
PARENT = Actor("user", None, "Ana Rivera (parent)")
ADMIN = Actor("user", None, "Dana (org admin)")


def outbox(purpose=None):
    stmt = sa.select(OutboxMessage).order_by(OutboxMessage.id)
    if purpose:
        stmt = stmt.where(OutboxMessage.purpose == purpose)
    return db.session.scalars(stmt).all()


# --- opting out: always, immediately, from every opt-out source ---------------------------


@pytest.mark.parametrize("source", sorted(ledger.OPT_OUT_SOURCES, key=str))
def test_opt_out_is_immediate_from_every_opt_out_source(org, source):
    """Every opt-out source opts the address out at once and appends one event."""
    ledger.opt_in(org, Channel.TEXT, CELL, source=Source.ENROLLMENT, actor=PARENT, confirm=False)
    outcome = ledger.opt_out(
        org,
        Channel.TEXT,
        CELL,
        source=source,
        actor=PARENT,
        evidence={"why": "test"},
        origin=Origin("203.0.113.9", "pytest-agent"),
        note="asked",
    )
    db.session.commit()
    assert outcome.ok and outcome.changed
    state = state_of(org, Channel.TEXT, CELL, fresh=False)
    assert state.status == Status.OPTED_OUT and state.source == source
    last = events_of(CELL, org=org, channel=Channel.TEXT)[-1]
    assert (last.from_status, last.to_status, last.source) == (
        Status.OPTED_IN,
        Status.OPTED_OUT,
        source,
    )
    assert (last.ip, last.user_agent, last.note, last.evidence) == (
        "203.0.113.9",
        "pytest-agent",
        "asked",
        {"why": "test"},
    )
    assert last.state_version == state.version == 2


@pytest.mark.parametrize("source", [Source.STAFF_ENTRY, Source.BOUNCE])
def test_opt_out_refused_from_sources_that_cannot_opt_out(org, source):
    """Staff entry and bounces never record an opt-out."""
    outcome = ledger.opt_out(org, Channel.TEXT, CELL, source=source, actor=ADMIN)
    assert outcome.refused and outcome.code == "bad_source"
    assert (
        state_of(org, Channel.TEXT, CELL, fresh=False) is None
        and events_of(CELL, org=org, channel=Channel.TEXT) == []
    )


def test_text_opt_out_queues_one_confirmation_text_without_marketing(org):
    """A portal opt-out queues exactly one confirmation text that says how to resume."""
    ledger.opt_out(org, Channel.TEXT, CELL, source=Source.PORTAL, actor=PARENT)
    db.session.commit()
    texts = outbox("optout_confirmation")
    assert len(texts) == 1 and texts[0].channel == "text" and texts[0].to_address == CELL
    assert "no more text messages" in texts[0].body and "START" in texts[0].body
    # Opting out again changes nothing and sends nothing more.
    again = ledger.opt_out(org, Channel.TEXT, CELL, source=Source.PORTAL, actor=PARENT)
    db.session.commit()
    assert again.ok and not again.changed
    assert (
        len(outbox("optout_confirmation")) == 1
        and len(events_of(CELL, org=org, channel=Channel.TEXT)) == 1
    )


def test_email_opt_out_queues_a_confirmation_email(org):
    """An email opt-out is confirmed once by email, with the one-click headers."""
    ledger.opt_out(org, Channel.EMAIL, EMAIL, source=Source.ONE_CLICK, actor=Actor.recipient())
    db.session.commit()
    (message,) = outbox("optout_confirmation")
    assert message.channel == "email" and message.to_address == EMAIL
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.headers["List-Unsubscribe"].startswith(
        "<https://consent.example.org/unsubscribe/"
    )


def test_sms_keyword_opt_out_sends_no_extra_text(org):
    """A STOP reply is confirmed by the webhook's own reply, so the outbox gets no text."""
    ledger.opt_out(
        org,
        Channel.TEXT,
        CELL,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient(),
        carrier_block=True,
    )
    db.session.commit()
    assert [m for m in outbox() if m.channel == "text"] == []


def test_import_opt_out_sends_no_confirmation(org):
    """Imported opt-outs of old lists are not confirmed again."""
    ledger.opt_out(org, Channel.EMAIL, EMAIL, source=Source.IMPORT, actor=ADMIN, confirm=False)
    db.session.commit()
    assert outbox("optout_confirmation") == []


@pytest.mark.parametrize(
    ("source", "notified"),
    [
        (Source.PORTAL, True),
        (Source.SMS_KEYWORD, True),
        (Source.SMS_REPLY, True),
        (Source.CARRIER, True),
        (Source.ONE_CLICK, True),
        (Source.EMAIL_LINK, True),
        (Source.ADMIN, False),
        (Source.IMPORT, False),
        (Source.ENROLLMENT, False),
    ],
)
def test_organization_hears_of_opt_outs_by_recipients(org, source, notified):
    """Opt-outs the recipient made notify the organization's address; staff's own do not."""
    ledger.opt_out(org, Channel.TEXT, CELL, source=source, actor=PARENT)
    db.session.commit()
    notices = outbox("org_notification")
    assert bool(notices) is notified
    if notified:
        assert notices[0].to_address == "office@example.org"
        assert (
            "+1 202-555-0123" in notices[0].body and "opted out of text messages" in notices[0].body
        )


def test_admin_opt_out_refused_when_rule_is_off(org):
    """With 'admins may record opt-outs' off, an admin opt-out is refused with a reason."""
    org.admin_may_record_opt_out = False
    outcome = ledger.opt_out(org, Channel.VOICE, CELL, source=Source.ADMIN, actor=ADMIN)
    assert outcome.refused and "does not let admins" in outcome.reason


# --- carrier block: only START lifts it ---------------------------------------------------


def stop(org, address=CELL):
    return ledger.opt_out(
        org,
        Channel.TEXT,
        address,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient(address),
        evidence={"sms_body": "STOP"},
        carrier_block=True,
    )


@pytest.mark.parametrize("source", [Source.PORTAL, Source.EMAIL_LINK, Source.ENROLLMENT])
def test_stop_reply_blocks_every_opt_in_but_start(org, source):
    """After STOP, portal, link and enrollment opt-ins are refused with the texting number."""
    stop(org)
    outcome = ledger.opt_in(org, Channel.TEXT, CELL, source=source, actor=PARENT)
    assert outcome.refused and outcome.code == "carrier_block"
    assert "START to +1 202-555-0100" in outcome.reason
    assert (
        state_of(org, Channel.TEXT, CELL, fresh=False).status == Status.OPTED_OUT
        and state_of(org, Channel.TEXT, CELL, fresh=False).carrier_block
    )


def test_stop_reply_blocks_admin_opt_back_in(org):
    """An admin's Opt Back In of a STOP-blocked number is refused and sends nothing."""
    stop(org)
    db.session.commit()
    outcome = ledger.request_opt_back_in(
        org, Channel.TEXT, CELL, actor=ADMIN, source=Source.ADMIN, attested=True
    )
    assert outcome.refused and "START to +1 202-555-0100" in outcome.reason
    assert outbox("confirm_request") == []


def test_start_lifts_the_carrier_block(org):
    """START from the phone opts it back in and clears the block."""
    stop(org)
    outcome = ledger.opt_in(
        org, Channel.TEXT, CELL, source=Source.SMS_KEYWORD, actor=Actor.recipient()
    )
    assert outcome.changed
    state = state_of(org, Channel.TEXT, CELL, fresh=False)
    assert state.status == Status.OPTED_IN and not state.carrier_block


def test_start_refused_when_rule_is_off(org):
    """With 'START opts in' off, START changes nothing."""
    org.start_opts_in = False
    stop(org)
    outcome = ledger.opt_in(
        org, Channel.TEXT, CELL, source=Source.SMS_KEYWORD, actor=Actor.recipient()
    )
    assert outcome.refused and outcome.code == "start_off"
    assert state_of(org, Channel.TEXT, CELL, fresh=False).carrier_block


def test_admin_opt_out_over_stop_keeps_the_block(org):
    """A later admin opt-out of a STOP-blocked number leaves the carrier block on."""
    stop(org)
    ledger.opt_out(org, Channel.TEXT, CELL, source=Source.ADMIN, actor=ADMIN)
    assert state_of(org, Channel.TEXT, CELL, fresh=False).carrier_block


def test_stop_after_admin_opt_out_adds_the_block(org):
    """STOP on a number an admin opted out is still recorded: the block is new."""
    ledger.opt_out(org, Channel.TEXT, CELL, source=Source.ADMIN, actor=ADMIN)
    outcome = stop(org)
    assert outcome.changed and state_of(org, Channel.TEXT, CELL, fresh=False).carrier_block
    assert [e.carrier_block for e in events_of(CELL, org=org, channel=Channel.TEXT)] == [
        False,
        True,
    ]


# --- opting in ------------------------------------------------------------------------------


def test_admin_never_opts_anyone_in(org):
    """An admin opt-in is refused: only the person's confirmation opts them in."""
    ledger.opt_out(org, Channel.EMAIL, EMAIL, source=Source.ADMIN, actor=ADMIN)
    outcome = ledger.opt_in(org, Channel.EMAIL, EMAIL, source=Source.ADMIN, actor=ADMIN)
    assert outcome.refused and outcome.code == "admin_cannot_opt_in"
    assert state_of(org, Channel.EMAIL, EMAIL, fresh=False).status == Status.OPTED_OUT


@pytest.mark.parametrize(
    "source", [Source.IMPORT, Source.CARRIER, Source.ONE_CLICK, Source.SMS_REPLY, Source.BOUNCE]
)
def test_opt_in_refused_from_sources_that_cannot_opt_in(org, source):
    """Imports, carriers, one-click, free-text replies and bounces never opt anyone in."""
    outcome = ledger.opt_in(org, Channel.TEXT, CELL, source=source, actor=PARENT)
    assert outcome.refused and state_of(org, Channel.TEXT, CELL, fresh=False) is None


def test_opt_back_in_request_sends_confirmation_and_changes_nothing(org, app):
    """Opt Back In records the attested request, emails a confirm link, and leaves the state."""
    ledger.opt_out(org, Channel.EMAIL, EMAIL, source=Source.ADMIN, actor=ADMIN)
    db.session.commit()
    unattested = ledger.request_opt_back_in(
        org, Channel.EMAIL, EMAIL, actor=ADMIN, source=Source.ADMIN, attested=False
    )
    assert unattested.refused and "asked me to opt them back in" in unattested.reason
    outcome = ledger.request_opt_back_in(
        org,
        Channel.EMAIL,
        EMAIL,
        actor=ADMIN,
        source=Source.ADMIN,
        attested=True,
        note="called the office",
    )
    db.session.commit()
    assert outcome.ok and not outcome.changed and outcome.code == "confirmation_sent"
    (message,) = outbox("confirm_request")
    assert message.to_address == EMAIL and "https://consent.example.org/confirm/" in message.body
    assert state_of(org, Channel.EMAIL, EMAIL, fresh=False).status == Status.OPTED_OUT
    request_event = events_of(EMAIL, org=org, channel=Channel.EMAIL)[-1]
    assert request_event.kind == "request" and request_event.evidence["attested"] is True
    assert request_event.from_status == request_event.to_status == Status.OPTED_OUT


def test_text_opt_in_from_enrollment_queues_one_confirmation_text(org):
    """A 'Yes' on enrollment opts in and queues the carrier-required confirmation text."""
    ledger.opt_in(
        org,
        Channel.TEXT,
        CELL,
        source=Source.ENROLLMENT,
        actor=PARENT,
        evidence={"disclosure": "words"},
    )
    db.session.commit()
    (text,) = outbox("optin_confirmation")
    assert "Msg & data rates may apply" in text.body and "STOP" in text.body and "HELP" in text.body


def test_staff_entry_opts_in_unknown_cell_only(org):
    """A cell entered by staff starts opted in, but never overrides a choice on record."""
    outcome = ledger.record_staff_entry(org, CELL, actor=ADMIN)
    assert (
        outcome.changed and state_of(org, Channel.TEXT, CELL, fresh=False).status == Status.OPTED_IN
    )
    assert state_of(org, Channel.TEXT, CELL, fresh=False).source == Source.STAFF_ENTRY
    other = "+12025550199"
    ledger.opt_out(org, Channel.TEXT, other, source=Source.PORTAL, actor=PARENT)
    kept = ledger.record_staff_entry(org, other, actor=ADMIN)
    assert not kept.changed and kept.code == "kept"
    assert state_of(org, Channel.TEXT, other, fresh=False).status == Status.OPTED_OUT


def test_staff_entry_leaves_unknown_when_rule_is_off(org):
    """With the staff-entry rule off, a staff-entered cell stays unknown."""
    org.staff_cell_starts_opted_in = False
    outcome = ledger.record_staff_entry(org, CELL, actor=ADMIN)
    assert not outcome.changed and state_of(org, Channel.TEXT, CELL, fresh=False) is None


# --- bounces ------------------------------------------------------------------------------


def test_bounce_marks_address_until_admin_clears_it(org):
    """A bounce marks the number; an admin clearing it restores what it was before."""
    ledger.opt_in(org, Channel.TEXT, CELL, source=Source.ENROLLMENT, actor=PARENT)
    ledger.mark_bounced(org, Channel.TEXT, CELL, evidence={"error_code": "30006"})
    assert state_of(org, Channel.TEXT, CELL, fresh=False).status == Status.BOUNCED
    outcome = ledger.clear_bounce(org, Channel.TEXT, CELL, actor=ADMIN, note="new phone")
    assert (
        outcome.changed and state_of(org, Channel.TEXT, CELL, fresh=False).status == Status.OPTED_IN
    )


def test_bounce_never_overrides_an_opt_out(org):
    """An opted-out number that bounces stays opted out."""
    ledger.opt_out(org, Channel.TEXT, CELL, source=Source.PORTAL, actor=PARENT)
    outcome = ledger.mark_bounced(org, Channel.TEXT, CELL)
    assert (
        not outcome.changed
        and state_of(org, Channel.TEXT, CELL, fresh=False).status == Status.OPTED_OUT
    )


def test_opting_in_again_clears_a_bounce(org):
    """A bounced number that opts in again is opted in."""
    ledger.mark_bounced(org, Channel.TEXT, CELL)
    ledger.opt_in(org, Channel.TEXT, CELL, source=Source.PORTAL, actor=PARENT)
    assert state_of(org, Channel.TEXT, CELL, fresh=False).status == Status.OPTED_IN


def test_clear_bounce_refused_when_not_bounced(org):
    """Clearing a bounce that is not there is refused."""
    outcome = ledger.clear_bounce(org, Channel.TEXT, CELL, actor=ADMIN)
    assert outcome.refused and outcome.code == "not_bounced"


# --- state is the fold of events ----------------------------------------------------------


def fold(events):
    status, block = None, False
    for event in events:
        if event.kind == "change":
            status, block = event.to_status, event.carrier_block
    return status, block


def test_state_is_the_fold_of_its_events(org):
    """After a mixed history the state equals the fold of its change events."""
    ledger.opt_in(org, Channel.TEXT, CELL, source=Source.ENROLLMENT, actor=PARENT)
    stop(org)
    ledger.opt_in(org, Channel.TEXT, CELL, source=Source.SMS_KEYWORD, actor=Actor.recipient())
    ledger.mark_bounced(org, Channel.TEXT, CELL)
    ledger.clear_bounce(org, Channel.TEXT, CELL, actor=ADMIN)
    ledger.opt_out(org, Channel.TEXT, CELL, source=Source.ADMIN, actor=ADMIN)
    db.session.commit()
    events = events_of(CELL, org=org, channel=Channel.TEXT)
    state = state_of(org, Channel.TEXT, CELL, fresh=False)
    assert fold(events) == (state.status, state.carrier_block)
    assert (
        [e.state_version for e in events]
        == list(range(1, len(events) + 1))
        == list(range(1, state.version + 1))
    )
    assert state.last_event_id == events[-1].id


def test_bulk_opt_out_records_one_event_per_changed_address(org):
    """opt_out_many opts out new and existing addresses, skipping those already out."""
    ledger.opt_out(org, Channel.TEXT, "+12025550111", source=Source.PORTAL, actor=PARENT)
    ledger.opt_in(org, Channel.TEXT, "+12025550112", source=Source.PORTAL, actor=PARENT)
    db.session.commit()
    rows = [
        BulkRow(n, {"file": "list.csv", "row": i})
        for i, n in enumerate(["+12025550111", "+12025550112", "+12025550113"], 2)
    ]
    result = ledger.opt_out_many(org, Channel.TEXT, rows, source=Source.IMPORT, actor=ADMIN)
    db.session.commit()
    assert result == {
        "+12025550111": "already",
        "+12025550112": "imported",
        "+12025550113": "imported",
    }
    for number in ("+12025550112", "+12025550113"):
        state = state_of(org, Channel.TEXT, number, fresh=False)
        events = events_of(number, org=org, channel=Channel.TEXT)
        assert state.status == Status.OPTED_OUT and state.source == Source.IMPORT
        assert fold(events) == (state.status, state.carrier_block)
        assert (
            events[-1].evidence["file"] == "list.csv" and events[-1].state_version == state.version
        )
    assert state_of(org, Channel.TEXT, "+12025550113", fresh=False).sort_key.endswith("12025550113")
    assert state_of(org, Channel.TEXT, "+12025550113", fresh=False).digits == "2025550113"


def test_event_cannot_be_updated_or_deleted(org):
    """Events are append-only: updates and deletes through the models' API are refused."""
    from consent.models import ImmutableEventError

    ledger.opt_out(org, Channel.TEXT, CELL, source=Source.PORTAL, actor=PARENT)
    db.session.commit()
    event = events_of(CELL, org=org, channel=Channel.TEXT)[0]
    event.note = "rewritten"
    with pytest.raises(ImmutableEventError):
        db.session.commit()
    db.session.rollback()
    db.session.delete(events_of(CELL, org=org, channel=Channel.TEXT)[0])
    with pytest.raises(ImmutableEventError):
        db.session.commit()
    db.session.rollback()
    with pytest.raises(ImmutableEventError):
        db.session.execute(sa.update(ConsentEvent).values(note="x"))
    with pytest.raises(ImmutableEventError):
        db.session.execute(sa.delete(ConsentEvent))
    db.session.rollback()
    assert (
        events_of(CELL, org=org, channel=Channel.TEXT)[0].note is None
        and len(events_of(CELL, org=org, channel=Channel.TEXT)) == 1
    )


# --- the lock -----------------------------------------------------------------------------


def test_twenty_threads_changing_one_address_keep_every_event(app, org):
    """20 threads toggling one number at once: one state row, every event kept, state = last event."""
    org_id = org.id
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def worker(i: int) -> None:
        try:
            with app.app_context():
                from consent.models import Organization

                barrier.wait(timeout=30)
                org_here = db.session.get(Organization, org_id)
                if i % 2:
                    ledger.opt_out(
                        org_here,
                        Channel.TEXT,
                        CELL,
                        source=Source.PORTAL,
                        actor=PARENT,
                        confirm=False,
                        notify_org=False,
                    )
                else:
                    ledger.opt_in(
                        org_here,
                        Channel.TEXT,
                        CELL,
                        source=Source.PORTAL,
                        actor=PARENT,
                        confirm=False,
                    )
                db.session.commit()
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    db.session.rollback()  # end this session's read snapshot to see the threads' commits
    rows = db.session.scalars(sa.select(ConsentState).where(ConsentState.address == CELL)).all()
    assert len(rows) == 1
    state = rows[0]
    events = events_of(CELL, org=org, channel=Channel.TEXT)
    changes = [e for e in events if e.kind == "change"]
    # Each accepted call appended one event; unchanged calls (same status twice in a row) none.
    assert 1 <= len(changes) <= 20
    assert [e.state_version for e in changes] == list(range(1, len(changes) + 1))
    assert state.version == len(changes)
    assert (state.status, state.carrier_block) == fold(events)
    assert state.last_event_id == changes[-1].id
    # Consecutive events chain: each one starts where the previous ended.
    for before, after in zip(changes, changes[1:], strict=False):
        assert after.from_status == before.to_status
