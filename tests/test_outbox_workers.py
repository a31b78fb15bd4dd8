"""Two `flask outbox send --loop` worker processes on one database deliver every message
exactly once to a real SMTP server; a worker killed mid-batch loses nothing (its lease runs
out and the other worker sends the rest)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

import sqlalchemy as sa

from consent import outbox
from consent.extensions import db
from consent.models import OutboxMessage
from tests.conftest import free_port
from tests.job_helpers import stop, stop_once

ROOT = Path(__file__).resolve().parent.parent


class SlowSmtp:
    """An SMTP server (aiosmtpd) that takes `delay` seconds to accept each message and keeps
    the Message-ID of every message it accepted."""

    def __init__(self, delay: float = 0.0):
        from aiosmtpd.controller import Controller

        self.delay = delay
        self.message_ids: list[str] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        self.message_ids.append(str(message["Message-ID"]))
        return "250 OK"

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


def start_worker(database_url: str, smtp_port: int, lease: int, batch: int) -> subprocess.Popen:
    """`flask outbox send --loop` in its own process, on the test's database."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "worker-secret",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_port),
        "EMAIL_TRANSPORT": "smtp",
        "OUTBOX_LEASE_SECONDS": str(lease),
        "OUTBOX_DELIVER_AFTER_COMMIT": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "run", "outbox", "send", "--loop"]
        + ["--interval", "0.2", "--batch", str(batch)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def queue_messages(org, count: int) -> set[str]:
    """`count` emails in the outbox; their Message-IDs."""
    ids = set()
    for n in range(count):
        message = outbox.queue(
            organization_id=org.id,
            channel="email",
            purpose="org_notification",
            to=f"office+{n}@example.org",
            subject=f"Notice {n}",
            body="A change was recorded.",
            key=f"worker-test-{n}",
        )
        db.session.flush()
        ids.add(outbox.message_id_for(message))
    db.session.commit()
    db.session.info.pop("outbox_committed", None)
    db.session.close()
    return ids


def wait_until_all_sent(count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = list(db.session.scalars(sa.select(OutboxMessage.status)))
        db.session.rollback()
        if statuses.count("sent") == count:
            return statuses
        time.sleep(0.2)
    return statuses


def test_two_workers_deliver_every_message_exactly_once(app, org, database):
    """60 messages, two worker processes claiming batches of 5 at once: both deliver some,
    each Message-ID arrives once, and every message is recorded as sent with one attempt."""
    expected = queue_messages(org, 60)
    with SlowSmtp(delay=0.05) as smtp:
        workers = [start_worker(database, smtp.controller.port, 300, 5) for _ in range(2)]
        try:
            statuses = wait_until_all_sent(60, timeout=90)
        finally:
            outputs = [stop(w) for w in workers]
        assert statuses.count("sent") == 60, outputs
        received = Counter(smtp.message_ids)
    assert set(received) == expected
    assert max(received.values()) == 1
    attempts = set(db.session.scalars(sa.select(OutboxMessage.attempts)))
    assert attempts == {1}
    per_worker = [sum(int(n) for n in re.findall(r"sent (\d+)", out)) for out in outputs]
    assert sum(per_worker) == 60 and min(per_worker) > 0, outputs


def test_worker_killed_mid_batch_loses_nothing(app, org, database):
    """Worker A is SIGKILLed while the SMTP server is slowly accepting its batch; after A's
    lease (2 s) worker B sends what A had claimed. Every message arrives; at most one arrives
    twice: the one the server had accepted when A died, before A recorded it as sent."""
    expected = queue_messages(org, 16)
    with SlowSmtp(delay=0.3) as smtp:
        first = start_worker(database, smtp.controller.port, 2, 8)
        deadline = time.monotonic() + 60
        while len(smtp.message_ids) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(smtp.message_ids) >= 3, stop(first)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = len(smtp.message_ids)
        db.session.rollback()
        stranded = db.session.scalar(
            sa.select(sa.func.count()).where(OutboxMessage.status == "sending")
        )
        assert stranded >= 1  # A died holding claimed messages
        second = start_worker(database, smtp.controller.port, 2, 8)
        try:
            statuses = wait_until_all_sent(16, timeout=90)
        finally:
            error = stop(second)
        assert statuses.count("sent") == 16, error
        received = Counter(smtp.message_ids)
    assert set(received) == expected
    assert sum(received.values()) <= 16 + 1
    twice = [m for m, n in received.items() if n > 1]
    assert len(twice) <= 1 and at_kill >= 3


def test_worker_asked_to_stop_finishes_its_batch_reports_it_and_leaves_the_rest(app, org, database):
    """SIGTERM while the SMTP server is slowly accepting a batch of 5: the worker delivers and
    records those 5, prints its line ("sent 5"), and exits 0; the other 5 stay queued, untouched.
    (Before, SIGTERM ended the worker at once: its batch was left `sending` until the lease ran
    out, and its line was never printed.)"""
    queue_messages(org, 10)
    with SlowSmtp(delay=0.3) as smtp:
        worker = start_worker(database, smtp.controller.port, 300, 5)
        output = stop_once(worker, lambda: smtp.message_ids)
        assert len(smtp.message_ids) == 5
    assert re.findall(r"sent (\d+)", output) == ["5"], output
    db.session.rollback()
    statuses = Counter(db.session.scalars(sa.select(OutboxMessage.status)))
    assert statuses == {"sent": 5, "queued": 5}
