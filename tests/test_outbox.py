"""The outbox: idempotency, delivery to a real SMTP server, retries, leases, suppression, CLI."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from consent import ledger, outbox
from consent.extensions import db
from consent.ledger import Actor
from consent.models import OutboxMessage, Source, utcnow
from tests import factories
from tests.conftest import free_port


@pytest.fixture
def smtp_down(app):
    """Point the mailer at a loopback port where nothing listens, for this test."""
    state = app.extensions["mail"]
    real = state.port
    state.port = free_port()
    yield
    state.port = real


@pytest.fixture
def clock(monkeypatch):
    """Move the outbox's clock forward: `clock.forward(seconds)`."""

    class Clock:
        offset = timedelta(0)

        def forward(self, seconds):
            self.offset += timedelta(seconds=seconds)

    moved = Clock()
    monkeypatch.setattr(outbox, "utcnow", lambda: utcnow() + moved.offset)
    return moved


def queue_email(org, key="k1", to="someone@example.org", purpose="org_notification"):
    message = outbox.queue(
        organization_id=org.id,
        channel="email",
        purpose=purpose,
        to=to,
        subject="Hello",
        body="Body text",
        headers={"List-Unsubscribe": "<https://consent.example.org/unsubscribe/x>"},
        key=key,
    )
    db.session.commit()
    db.session.info.pop("outbox_committed", None)  # deliver explicitly in these tests
    return message


def queue_text(org, to, purpose, key):
    message = outbox.queue(
        organization_id=org.id, channel="text", purpose=purpose, to=to, body="Hi", key=key
    )
    db.session.commit()
    db.session.info.pop("outbox_committed", None)
    return message


def fresh(message_id):
    db.session.expire_all()
    return db.session.get(OutboxMessage, message_id)


def test_queueing_the_same_key_twice_gives_one_message_and_one_email(org, mailbox):
    """The idempotency key: queue twice, one row, one email at the SMTP server."""
    first = queue_email(org, key="same")
    second = queue_email(org, key="same")
    assert first.id == second.id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 1
    report = outbox.deliver()
    assert report.sent == 1
    assert outbox.deliver().sent == 0
    [message] = mailbox.messages
    assert message["Subject"] == "Hello"
    assert message["List-Unsubscribe"] == "<https://consent.example.org/unsubscribe/x>"
    assert message.get_all("Message-ID") == [outbox.message_id_for(fresh(first.id))]


def test_failed_delivery_is_retried_after_a_backoff(org, mailbox, smtp_down, clock, app):
    """SMTP down: the message waits 30 s, is not retried before, and is sent once it is up."""
    message = queue_email(org)
    report = outbox.deliver()
    assert (report.sent, report.failed) == (0, 1)
    assert "ConnectionRefusedError" in report.errors[0]
    waiting = fresh(message.id)
    assert waiting.status == "queued" and waiting.attempts == 1
    assert waiting.next_attempt_at - utcnow() > timedelta(seconds=25)
    clock.forward(10)
    assert outbox.deliver().failed == 0  # not due yet
    app.extensions["mail"].port = mailbox.controller.port
    clock.forward(25)
    assert outbox.deliver().sent == 1
    sent = fresh(message.id)
    assert sent.status == "sent" and sent.attempts == 2 and sent.last_error is None
    assert len(mailbox.messages) == 1


def test_backoff_doubles_and_is_capped_at_an_hour():
    """30 s, 1 min, 2 min … never more than an hour."""
    assert [outbox.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert outbox.backoff(30) == timedelta(hours=1)


def test_a_message_that_keeps_failing_is_marked_failed_at_max_attempts(org, app, smtp_down, clock):
    """After OUTBOX_MAX_ATTEMPTS tries the message is failed and no longer claimed."""
    app.config["OUTBOX_MAX_ATTEMPTS"] = 3
    message = queue_email(org)
    for _ in range(3):
        assert outbox.deliver().failed == 1
        clock.forward(3600)
    failed = fresh(message.id)
    assert failed.status == "failed" and failed.attempts == 3
    assert outbox.deliver().failed == 0


def test_a_claimed_but_abandoned_message_is_reclaimed_after_its_lease(org, mailbox, clock):
    """A worker that died mid-send leaves the message "sending": after the lease it is sent."""
    message = queue_email(org)
    assert outbox._claim(None, 10) == [message.id]  # claimed by a worker that then dies
    assert outbox.deliver().sent == 0  # leased: no one else takes it
    clock.forward(outbox.lease().total_seconds() + 1)
    assert outbox.deliver().sent == 1
    assert fresh(message.id).status == "sent"
    assert len(mailbox.messages) == 1


def test_a_text_to_an_opted_out_number_is_suppressed_except_exempt_purposes(org):
    """Our own texts obey the opt-out; the opt-out confirmation, confirmation requests and
    keyword replies still go."""
    number = factories.next_number()
    ledger.opt_out(org, "text", number, source=Source.ADMIN, actor=Actor.system("test"))
    db.session.commit()
    db.session.info.pop("outbox_committed", None)
    ordinary = queue_text(org, number, "reminder", "t1")
    exempt = {
        purpose: queue_text(org, number, purpose, f"t-{purpose}")
        for purpose in sorted(outbox.EXEMPT_PURPOSES) + ["keyword_help"]
    }
    report = outbox.deliver()
    assert report.suppressed == 1
    blocked = fresh(ordinary.id)
    assert blocked.status == "suppressed" and blocked.last_error == "not sent: opted_out"
    for purpose, message in exempt.items():
        assert fresh(message.id).status == "sent", purpose


def test_a_text_with_no_consent_on_record_is_suppressed(org):
    """Text needs consent: an unknown number is not sent an ordinary text."""
    message = queue_text(org, factories.next_number(), "reminder", "t2")
    outbox.deliver()
    assert fresh(message.id).last_error == "not sent: no_consent"


def test_inline_delivery_failure_leaves_the_message_due_for_the_worker(org, smtp_down):
    """The attempt after a request commits does not make the worker wait a backoff, and the
    rest of the batch is left to the worker."""
    first = queue_email(org, key="a")
    second = queue_email(org, key="b")
    report = outbox.deliver(ids=[first.id, second.id], inline=True)
    assert report.failed == 1
    for message in (fresh(first.id), fresh(second.id)):
        assert message.status == "queued" and message.next_attempt_at <= utcnow()
    assert fresh(second.id).attempts == 0


def test_outbox_send_cli_reports_what_it_did(org, runner, mailbox, smtp_down, app):
    """`flask outbox send` prints the counts, and the errors to stderr."""
    queue_email(org, key="cli")
    down = runner.invoke(args=["outbox", "send"])
    assert down.exit_code == 0
    assert "sent 0, failed 1 (will retry), suppressed 0" in down.output
    assert "to someone@example.org: ConnectionRefusedError" in down.output
    app.extensions["mail"].port = mailbox.controller.port
    db.session.execute(sa.update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.session.commit()
    up = runner.invoke(args=["outbox", "send"])
    assert "sent 1, failed 0 (will retry), suppressed 0" in up.output
    again = runner.invoke(args=["outbox", "send"])
    assert "sent 0, failed 0 (will retry), suppressed 0" in again.output
    assert len(mailbox.messages) == 1


def test_a_rolled_back_change_queues_nothing(org, mailbox):
    """A message queued in a transaction that rolls back is neither kept nor sent."""
    outbox.queue(
        organization_id=org.id,
        channel="email",
        purpose="org_notification",
        to="x@example.org",
        body="B",
        key="rolled",
    )
    db.session.rollback()
    assert db.session.scalars(sa.select(OutboxMessage)).all() == []
    assert outbox.deliver_pending() is None
    assert mailbox.messages == []
