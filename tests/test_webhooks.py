"""Webhooks: every consent change queued in its transaction, delivered to a real HTTP server on
127.0.0.1, signed per Standard Webhooks (checked with the `standardwebhooks` library a
receiver uses), retried with backoff, each attempt kept, an endpoint disabled after a day of
failures with an email to the organization."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from consent import ledger, webhooks
from consent.extensions import db
from consent.ledger import Actor, BulkRow
from consent.models import (
    Channel,
    Source,
    Status,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from tests.factories import make_org
from tests.job_helpers import stop_once


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps what it receives and answers `status`."""

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        self.status = 204
        self.delay = 0.0  # seconds before each answer, after the request is kept
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.received.append((dict(self.headers.items()), body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/consent"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _headers, body in self.received]


@contextmanager
def receiving():
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture
def receiver():
    with receiving() as receiver:
        yield receiver


@pytest.fixture
def org(app):
    org = make_org()
    db.session.commit()
    return org


def endpoint_for(org, url, types=None):
    endpoint, secret = webhooks.create_endpoint(
        org, url, types or ["consent.opted_out", "consent.opted_in"]
    )
    db.session.commit()
    return endpoint, secret


def opt_out(org, address, channel=Channel.TEXT, **kw):
    kw.setdefault("source", Source.PORTAL)
    kw.setdefault("actor", Actor.recipient())
    return ledger.opt_out(org, channel, address, **kw)


def deliveries():
    return db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)).all()


def test_a_change_is_delivered_signed_and_the_receiver_library_verifies_it(org, receiver):
    endpoint, secret = endpoint_for(org, receiver.url)
    assert secret.startswith("whsec_")
    event = opt_out(org, "+12025550111", carrier_block=True, source=Source.SMS_KEYWORD).event
    db.session.commit()
    report = webhooks.deliver()
    assert report.delivered == 1
    ((headers, body),) = receiver.received
    verified = Webhook(secret).verify(body, headers)
    assert verified["type"] == "consent.opted_out"
    assert verified["data"] | {"at": None} == {
        "id": event.id, "at": None, "channel": "text", "address": "+12025550111", "from": None,
        "to": "opted_out", "source": "sms_keyword", "carrier_block": True, "version": 1,
        "purpose": None,
    }  # fmt: skip
    assert headers["webhook-id"] == f"cd_evt_{event.id}"
    with pytest.raises(WebhookVerificationError):  # another secret: not verified
        Webhook(webhooks.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # a changed body: not verified
        Webhook(secret).verify(body.replace(b"+12025550111", b"+12025550999"), headers)
    (delivery,) = deliveries()
    assert delivery.status == "delivered" and delivery.attempts == 1
    (attempt,) = db.session.scalars(sa.select(WebhookAttempt)).all()
    assert attempt.status_code == 204 and attempt.error is None
    assert webhooks.deliver().delivered == 0  # nothing twice


def test_a_rolled_back_change_queues_nothing(org, receiver):
    endpoint_for(org, receiver.url)
    opt_out(org, "+12025550111")
    db.session.rollback()
    assert deliveries() == []
    webhooks.deliver()
    assert receiver.received == []


def test_only_the_subscribed_kinds_are_sent(org, receiver):
    endpoint_for(org, receiver.url, ["consent.opted_in"])
    opt_out(org, "+12025550111")
    ledger.opt_in(
        org, Channel.EMAIL, "a@example.org", source=Source.PORTAL, actor=Actor.recipient()
    )
    db.session.commit()
    webhooks.deliver()
    assert [b["type"] for b in receiver.bodies()] == ["consent.opted_in"]


def test_bulk_imports_are_queued_too(org, receiver):
    endpoint_for(org, receiver.url)
    rows = [BulkRow(f"+1202555{n:04d}", {"row": n}) for n in range(30)]
    ledger.opt_out_many(org, Channel.TEXT, rows, source=Source.IMPORT, actor=Actor.system())
    db.session.commit()
    assert webhooks.deliver().delivered == 30
    assert sorted(b["data"]["address"] for b in receiver.bodies()) == sorted(
        r.address for r in rows
    )


def test_a_purpose_choice_is_delivered_signed_naming_the_purpose(org, receiver):
    from consent import purposes

    endpoint, secret = endpoint_for(org, receiver.url)
    general = purposes.general(org)
    outcome = ledger.change_purpose(
        org, Channel.EMAIL, "a@example.org", general, Status.OPTED_OUT,
        source=Source.EMAIL_LINK, actor=Actor.recipient(),
    )  # fmt: skip
    assert outcome.changed
    opt_out(org, "+12025550111")  # channel-wide: purpose null
    db.session.commit()
    assert webhooks.deliver().delivered == 2
    verified = [Webhook(secret).verify(body, headers) for headers, body in receiver.received]
    by_address = {v["data"]["address"]: v for v in verified}
    purpose_event = by_address["a@example.org"]
    assert purpose_event["type"] == "consent.opted_out"
    assert purpose_event["data"] | {"at": None} == {
        "id": outcome.event.id, "at": None, "channel": "email", "address": "a@example.org",
        "from": None, "to": "opted_out", "source": "email_link", "carrier_block": False,
        "version": 1, "purpose": "general",
    }  # fmt: skip
    assert by_address["+12025550111"]["data"]["purpose"] is None
    # Back on: an opted_in delivery, the purpose named again; an unchanged choice queues nothing.
    for _ in range(2):
        ledger.change_purpose(
            org, Channel.EMAIL, "a@example.org", general, Status.OPTED_IN,
            source=Source.EMAIL_LINK, actor=Actor.recipient(),
        )  # fmt: skip
    db.session.commit()
    assert webhooks.deliver().delivered == 1
    last = Webhook(secret).verify(receiver.received[-1][1], receiver.received[-1][0])
    assert (last["type"], last["data"]["purpose"]) == ("consent.opted_in", "general")


def test_other_organizations_endpoints_get_nothing(app, receiver):
    ours = make_org()
    theirs = make_org(name="Other District", texting_number="+12025550199")
    db.session.commit()
    endpoint_for(theirs, receiver.url)
    opt_out(ours, "+12025550111")
    db.session.commit()
    webhooks.deliver()
    assert receiver.received == []


def test_a_failure_is_retried_with_backoff_and_each_attempt_kept(org, receiver):
    endpoint, _secret = endpoint_for(org, receiver.url)
    opt_out(org, "+12025550111")
    db.session.commit()
    receiver.status = 500
    assert webhooks.deliver().failed == 1
    (delivery,) = deliveries()
    assert delivery.status == "queued" and delivery.attempts == 1
    assert delivery.last_error == "HTTP 500"
    assert delivery.next_attempt_at > utcnow() + timedelta(seconds=20)
    assert webhooks.deliver().failed == 0  # not due yet
    delivery.next_attempt_at = utcnow()
    db.session.commit()
    receiver.status = 200
    assert webhooks.deliver().delivered == 1
    attempts = db.session.scalars(sa.select(WebhookAttempt).order_by(WebhookAttempt.id)).all()
    assert [a.status_code for a in attempts] == [500, 200]
    first, second = receiver.received
    assert first[0]["webhook-id"] == second[0]["webhook-id"]  # the same id on a retry
    assert db.session.get(WebhookEndpoint, endpoint.id).failing_since is None


def test_an_endpoint_that_fails_for_a_day_is_disabled_and_the_office_told(org, receiver, mailbox):
    endpoint, _secret = endpoint_for(org, receiver.url)
    receiver.status = 503
    opt_out(org, "+12025550111")
    db.session.commit()
    webhooks.deliver()
    endpoint = db.session.get(WebhookEndpoint, endpoint.id, populate_existing=True)
    assert endpoint.active and endpoint.failing_since is not None
    endpoint.failing_since = utcnow() - timedelta(hours=25)  # failing since yesterday
    for delivery in deliveries():
        delivery.next_attempt_at = utcnow()
    db.session.commit()
    report = webhooks.deliver()
    assert report.disabled == [receiver.url]
    endpoint = db.session.get(WebhookEndpoint, endpoint.id, populate_existing=True)
    assert not endpoint.active and "failed for a day" in endpoint.disabled_reason
    from consent import outbox

    outbox.deliver()
    (notice,) = [m for m in mailbox.to("office@example.org") if "Webhook" in m["Subject"]]
    assert notice["Subject"] == f"Webhook endpoint disabled: {receiver.url}"
    assert receiver.url in mailbox.text(notice)
    # disabled: nothing more is tried, the delivery waits
    opt_out(org, "+12025550112")
    db.session.commit()
    tried = len(receiver.received)
    webhooks.deliver()
    assert len(receiver.received) == tried
    # enabled again: the waiting deliveries go out
    receiver.status = 200
    webhooks.set_active(endpoint, True)
    db.session.commit()
    assert webhooks.deliver().delivered == 2


def test_an_unreachable_endpoint_is_an_attempt_with_the_error(org):
    from tests.conftest import free_port

    endpoint_for(org, f"http://127.0.0.1:{free_port()}/nobody")
    opt_out(org, "+12025550111")
    db.session.commit()
    assert webhooks.deliver().failed == 1
    (attempt,) = db.session.scalars(sa.select(WebhookAttempt)).all()
    assert attempt.status_code is None and "ConnectionError" in attempt.error


def test_endpoint_urls_and_kinds_are_checked(org, app):
    with pytest.raises(webhooks.EndpointError):
        webhooks.create_endpoint(org, "ftp://example.org/x", ["consent.opted_out"])
    with pytest.raises(webhooks.EndpointError):
        webhooks.create_endpoint(org, "https://example.org/x", [])
    app.config["PRODUCTION"] = True
    try:
        with pytest.raises(webhooks.EndpointError):
            webhooks.create_endpoint(org, "http://example.org/x", ["consent.opted_out"])
    finally:
        app.config["PRODUCTION"] = False


def test_flask_webhooks_send_delivers(org, receiver, runner):
    endpoint_for(org, receiver.url)
    opt_out(org, "+12025550111")
    db.session.commit()
    result = runner.invoke(args=["webhooks", "send"])
    assert result.exit_code == 0 and "delivered 1" in result.output
    assert len(receiver.received) == 1


def test_a_worker_asked_to_stop_finishes_its_batch_records_it_and_leaves_the_rest(
    app, org, receiver, database
):
    """SIGTERM to `flask webhooks send --loop` while the receiver is slowly answering a batch of
    5: the worker records those 5 as delivered, prints its line ("delivered 5"), and exits 0;
    the other 5 stay queued, untouched. (Before, SIGTERM ended the worker at once: its batch
    stayed `sending` until the lease ran out, to be posted a second time, and its line was lost.)"""
    endpoint_for(org, receiver.url)
    for n in range(10):
        opt_out(org, f"+1202555{n:04d}")
    db.session.commit()
    db.session.close()
    receiver.delay = 0.5
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "DATABASE_URL": database,
        "SECRET_KEY": "worker-secret",
        "OUTBOX_DELIVER_AFTER_COMMIT": "0",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "run", "webhooks", "send", "--loop"]
        + ["--interval", "0.2", "--batch", "5"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = stop_once(worker, lambda: receiver.received)
    assert re.findall(r"delivered (\d+)", output) == ["5"], output
    assert len(receiver.received) == 5
    db.session.rollback()
    statuses = Counter(db.session.scalars(sa.select(WebhookDelivery.status)))
    assert statuses == {"delivered": 5, "queued": 5}
    attempts = db.session.scalars(sa.select(WebhookAttempt)).all()
    assert len(attempts) == 5


# --- the admin page -------------------------------------------------------------------------

from tests.conftest import csrf_token  # noqa: E402

PAGE = "/admin/integrations/"


def test_the_organization_team_registers_an_endpoint_and_sees_each_attempt(
    demo, client, auth, receiver
):
    import re

    auth.login("admin@example.org")
    page = client.post("/admin/integrations/endpoints", data={
        "csrf_token": csrf_token(client, PAGE), "url": receiver.url, "description": "Notifier",
        "event_types": ["consent.opted_out"]})  # fmt: skip
    text = page.get_data(as_text=True)
    secret = re.search(r'<code id="shown-once">(whsec_[^<]+)</code>', text).group(1)
    assert secret not in client.get(PAGE).get_data(as_text=True)  # shown once
    opt_out(demo.org, "+12025550111")
    db.session.commit()
    webhooks.deliver()
    ((headers, body),) = receiver.received
    assert Webhook(secret).verify(body, headers)["data"]["address"] == "+12025550111"
    endpoint = db.session.scalars(sa.select(WebhookEndpoint)).one()
    attempts = client.get(f"/admin/integrations/endpoints/{endpoint.id}").get_data(as_text=True)
    assert "consent.opted_out" in attempts and "204" in attempts and "Delivered" in attempts
    client.post(f"/admin/integrations/endpoints/{endpoint.id}/disable",
                data={"csrf_token": csrf_token(client, PAGE)})  # fmt: skip
    assert "Disabled: disabled by an admin" in client.get(PAGE).get_data(as_text=True)


def test_a_bad_url_is_refused_on_the_page(demo, client, auth):
    auth.login("admin@example.org")
    page = client.post("/admin/integrations/endpoints", data={
        "csrf_token": csrf_token(client, PAGE), "url": "javascript:alert(1)",
        "event_types": ["consent.opted_out"]})  # fmt: skip
    assert "must start with https://" in page.get_data(as_text=True)
    assert db.session.scalars(sa.select(WebhookEndpoint)).all() == []


@pytest.mark.parametrize(
    "login", [None, "site@example.org", "staff@example.org", "parent@example.org"]
)
def test_only_the_organization_team_registers_endpoints(demo, client, auth, login):
    if login:
        auth.login(login)
    client.post("/admin/integrations/endpoints",
                data={"url": "https://example.org/x", "event_types": ["consent.opted_out"]})  # fmt: skip
    assert db.session.scalars(sa.select(WebhookEndpoint)).all() == []


def test_another_organizations_endpoint_is_404(demo, client, auth):
    other = make_org(name="Other District", texting_number="+12025550199")
    endpoint, _secret = webhooks.create_endpoint(
        other, "https://example.org/x", ["consent.opted_out"]
    )
    db.session.commit()
    auth.login("admin@example.org")
    assert client.get(f"/admin/integrations/endpoints/{endpoint.id}").status_code == 404
    response = client.post(f"/admin/integrations/endpoints/{endpoint.id}/disable",
                           data={"csrf_token": csrf_token(client, PAGE)})  # fmt: skip
    assert response.status_code == 404
    assert db.session.get(WebhookEndpoint, endpoint.id, populate_existing=True).active
