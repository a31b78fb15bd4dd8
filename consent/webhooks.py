"""Webhooks: every consent change, sent to the endpoints the organization registered, signed
per the Standard Webhooks spec (https://www.standardwebhooks.com/).

A change queues one delivery per subscribed endpoint in its own transaction (the ledger calls
`queue_for_event`, the bulk path `queue_for_addresses`), so a change that commits is sent and
one rolled back is not. `flask webhooks send [--loop]` delivers: it claims due deliveries
(PostgreSQL: `FOR UPDATE SKIP LOCKED`), posts them (several at once), and records every
attempt. A failure is retried with backoff (30 s, 1 min, 2 min … at most an hour); an endpoint
that has failed for WEBHOOK_DISABLE_AFTER_HOURS (24) with no success is disabled, and the
organization is told by email. Its queued deliveries wait; enabling it again sends them.

Headers: `webhook-id` (the same on every retry: receivers drop repeats), `webhook-timestamp`
(seconds), `webhook-signature` = "v1," + base64(HMAC-SHA256(secret, "id.timestamp.body")),
the secret being the base64 after "whsec_".
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from flask import current_app
from standardwebhooks.webhooks import Webhook

from consent import audit
from consent.database import begin_write, is_one_of, is_sqlite, org_is
from consent.extensions import db
from consent.models import (
    WEBHOOK_EVENT_TYPES,
    ConsentEvent,
    ConsentState,
    MessagePurpose,
    Organization,
    Status,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)

log = logging.getLogger(__name__)

EVENT_TYPES = {
    Status.OPTED_OUT: "consent.opted_out",
    Status.OPTED_IN: "consent.opted_in",
    Status.BOUNCED: "consent.bounced",
    Status.UNKNOWN: "consent.cleared",
}
TIMEOUT = 10
PARALLEL = 8
USER_AGENT = "ConsentDesk-Webhooks/1.0"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class EndpointError(ValueError):
    """An endpoint that cannot be registered; the message says why."""


def check_url(url: str, *, production: bool) -> str:
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise EndpointError("The URL must start with https:// and name a host.")
    if production and parts.scheme != "https":
        raise EndpointError("The URL must use https.")
    if len(url) > 500:
        raise EndpointError("The URL is longer than 500 characters.")
    return url


def create_endpoint(org, url: str, event_types, *, description: str = "", user=None):
    """Register an endpoint: (the row, its secret, to show once). The caller commits."""
    url = check_url(url, production=bool(current_app.config.get("PRODUCTION")))
    wanted = [t for t in WEBHOOK_EVENT_TYPES if t in set(event_types)]
    if not wanted:
        raise EndpointError("Choose at least one kind of change to receive.")
    secret = new_secret()
    endpoint = WebhookEndpoint(
        organization_id=org.id,
        url=url,
        description=(description or "")[:200],
        secret=secret,
        event_types=wanted,
        active=True,
        created_by_user_id=getattr(user, "id", None),
    )
    db.session.add(endpoint)
    db.session.flush()
    audit.record(user, f"webhook endpoint {url}", {"created": (None, ", ".join(wanted))})
    return endpoint, secret


def set_active(endpoint: WebhookEndpoint, active: bool, user=None) -> None:
    """Enable (its waiting deliveries go out) or disable an endpoint. The caller commits."""
    if endpoint.active == active:
        return
    endpoint.active = active
    if active:
        endpoint.disabled_at = endpoint.disabled_reason = endpoint.failing_since = None
        db.session.execute(
            sa.update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "queued")
            .values(next_attempt_at=utcnow())
        )
    else:
        endpoint.disabled_at = utcnow()
        endpoint.disabled_reason = "disabled by an admin"
    audit.record(user, f"webhook endpoint {endpoint.url}", {"active": (not active, active)})


# --- queueing, in the change's transaction ----------------------------------------------------


def _subscribed(org_id: int, event_type: str) -> list[int]:
    rows = db.session.execute(
        sa.select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
            org_is(WebhookEndpoint.organization_id, org_id)
        )
    ).all()
    return [row.id for row in rows if event_type in (row.event_types or ())]


def queue_for_event(org_id: int, event: ConsentEvent) -> int:
    """Queue the event for each endpoint subscribed to its kind; how many were queued."""
    event_type = EVENT_TYPES.get(event.to_status)
    if event_type is None:
        return 0
    endpoints = _subscribed(org_id, event_type)
    now = utcnow()
    for endpoint_id in endpoints:
        db.session.add(
            WebhookDelivery(
                endpoint_id=endpoint_id,
                event_id=event.id,
                event_type=event_type,
                status="queued",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    if endpoints:
        db.session.flush()
    return len(endpoints)


def queue_for_addresses(org_id: int, channel: str, addresses, to_status: Status) -> int:
    """The bulk path: queue the latest event of each of these addresses (just written) for
    the subscribed endpoints, in a statement per chunk."""
    event_type = EVENT_TYPES[to_status]
    endpoints = _subscribed(org_id, event_type)
    addresses = list(addresses)
    if not endpoints or not addresses:
        return 0
    states = ConsentState.__table__
    deliveries = WebhookDelivery.__table__
    endpoint_ids = sa.select(WebhookEndpoint.id).where(WebhookEndpoint.id.in_(endpoints)).subquery()
    now = utcnow()
    total = 0
    for start in range(0, len(addresses), 5_000):
        chunk = addresses[start : start + 5_000]
        select = (
            sa.select(
                endpoint_ids.c.id,
                states.c.last_event_id,
                sa.literal(event_type),
                sa.literal("queued"),
                sa.literal(0),
                sa.literal(now, sa.DateTime),
                sa.literal(now, sa.DateTime),
            )
            .select_from(states)
            .join(endpoint_ids, sa.true())  # every subscribed endpoint, each address
            .where(
                org_is(states.c.organization_id, org_id),
                states.c.channel == channel,
                is_one_of(states.c.address, chunk),
                states.c.last_event_id.is_not(None),
            )
        )
        insert = sa.insert(deliveries).from_select(
            [
                "endpoint_id",
                "event_id",
                "event_type",
                "status",
                "attempts",
                "next_attempt_at",
                "created_at",
            ],
            select,
        )
        total += db.session.execute(insert).rowcount or 0
    return total


# --- delivering -------------------------------------------------------------------------------


@dataclass
class Report:
    delivered: int = 0
    failed: int = 0
    disabled: list[str] = field(default_factory=list)


@dataclass
class _Job:
    delivery_id: int
    endpoint_id: int
    url: str
    secret: str
    message_id: str
    body: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def lease() -> timedelta:
    return timedelta(seconds=current_app.config.get("WEBHOOK_LEASE_SECONDS", 120))


def payload(event_type: str, event: dict, at: datetime) -> str:
    """The body of one delivery: {"type", "timestamp", "data": the feed's event}."""
    return json.dumps(
        {"type": event_type, "timestamp": at.isoformat(timespec="seconds") + "Z", "data": event},
        separators=(",", ":"),
    )


def sign(secret: str, message_id: str, at: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    moment = at.replace(tzinfo=UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, moment, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class _Row(dict):
    __getattr__ = dict.__getitem__


def _claim(limit: int) -> list[_Job]:
    from consent.feed import event_dict

    now = utcnow()
    begin_write()
    due = sa.or_(
        sa.and_(WebhookDelivery.status == "queued", WebhookDelivery.next_attempt_at <= now),
        sa.and_(WebhookDelivery.status == "sending", WebhookDelivery.locked_until < now),
    )
    stmt = (
        sa.select(WebhookDelivery.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(due, WebhookEndpoint.active.is_(True))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if not is_sqlite():
        stmt = stmt.with_for_update(of=WebhookDelivery, skip_locked=True)
    ids = list(db.session.scalars(stmt))
    if not ids:
        db.session.commit()
        return []
    db.session.execute(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids))
        .values(status="sending", locked_until=now + lease())
        .execution_options(synchronize_session=False)
    )
    rows = db.session.execute(
        sa.select(
            WebhookDelivery.id,
            WebhookDelivery.event_type,
            WebhookDelivery.event_id,
            WebhookEndpoint.id.label("endpoint_id"),
            WebhookEndpoint.url,
            WebhookEndpoint.secret,
            ConsentEvent.occurred_at,
            ConsentEvent.channel,
            ConsentEvent.address,
            ConsentEvent.from_status,
            ConsentEvent.to_status,
            ConsentEvent.source,
            ConsentEvent.carrier_block,
            ConsentEvent.state_version,
            MessagePurpose.key.label("purpose"),
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(ConsentEvent, ConsentEvent.id == WebhookDelivery.event_id)
        .outerjoin(MessagePurpose, MessagePurpose.id == ConsentEvent.purpose_id)
        .where(WebhookDelivery.id.in_(ids))
        .order_by(WebhookDelivery.id)
    ).all()
    db.session.commit()
    jobs = []
    for row in rows:
        event = event_dict(
            _Row(
                id=row.event_id,
                occurred_at=row.occurred_at,
                channel=row.channel,
                address=row.address,
                from_status=row.from_status,
                to_status=row.to_status,
                source=row.source,
                carrier_block=row.carrier_block,
                state_version=row.state_version,
                purpose=row.purpose,
            )
        )
        jobs.append(
            _Job(
                delivery_id=row.id,
                endpoint_id=row.endpoint_id,
                url=row.url,
                secret=row.secret,
                message_id=f"cd_evt_{row.event_id}",
                body=payload(row.event_type, event, row.occurred_at),
            )
        )
    return jobs


def _post(session: requests.Session, job: _Job) -> _Job:
    started = time.perf_counter()
    try:
        headers = sign(job.secret, job.message_id, utcnow(), job.body)
        answer = session.post(
            job.url, data=job.body.encode(), headers=headers, timeout=TIMEOUT,
            allow_redirects=False,
        )  # fmt: skip
        job.status_code = answer.status_code
        if not job.ok:
            job.error = f"HTTP {answer.status_code}"
        answer.close()
    except requests.RequestException as exc:
        job.error = f"{type(exc).__name__}: {exc}"[:500]
    job.duration_ms = int((time.perf_counter() - started) * 1000)
    return job


_local_sessions: dict[int, requests.Session] = {}


def _http() -> requests.Session:
    import threading

    key = threading.get_ident()
    session = _local_sessions.get(key)
    if session is None:
        session = _local_sessions[key] = requests.Session()
    return session


def deliver(limit: int = 200, *, pool: ThreadPoolExecutor | None = None) -> Report:
    """Claim due deliveries, post them (PARALLEL at once), record each attempt."""
    report = Report()
    jobs = _claim(limit)
    if not jobs:
        return report
    if pool is None:
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(jobs))) as own:
            done = list(own.map(lambda job: _post(_http(), job), jobs))
    else:
        done = list(pool.map(lambda job: _post(_http(), job), jobs))
    _record(done, report)
    return report


def _record(jobs: list[_Job], report: Report) -> None:
    now = utcnow()
    disable_after = timedelta(hours=current_app.config.get("WEBHOOK_DISABLE_AFTER_HOURS", 24))
    begin_write()
    db.session.execute(
        sa.insert(WebhookAttempt.__table__),
        [
            {
                "delivery_id": job.delivery_id,
                "endpoint_id": job.endpoint_id,
                "attempted_at": now,
                "status_code": job.status_code,
                "error": job.error,
                "duration_ms": job.duration_ms,
            }
            for job in jobs
        ],
    )
    delivered = [job.delivery_id for job in jobs if job.ok]
    if delivered:
        db.session.execute(
            sa.update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(delivered))
            .values(
                status="delivered",
                delivered_at=now,
                locked_until=None,
                last_error=None,
                attempts=WebhookDelivery.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        report.delivered += len(delivered)
        succeeded = {job.endpoint_id for job in jobs if job.ok}
        db.session.execute(
            sa.update(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(succeeded), WebhookEndpoint.failing_since.is_not(None))
            .values(failing_since=None)
            .execution_options(synchronize_session=False)
        )
    failed = [job for job in jobs if not job.ok]
    failing_endpoints = {job.endpoint_id for job in failed} - {j.endpoint_id for j in jobs if j.ok}
    for job in failed:
        delivery = db.session.get(WebhookDelivery, job.delivery_id, populate_existing=True)
        delivery.attempts += 1
        delivery.status = "queued"
        delivery.locked_until = None
        delivery.last_error = job.error
        delivery.next_attempt_at = now + backoff(delivery.attempts)
        report.failed += 1
    for endpoint_id in failing_endpoints:
        endpoint = db.session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        elif endpoint.active and now - endpoint.failing_since >= disable_after:
            _disable_for_failures(endpoint, now)
            report.disabled.append(endpoint.url)
    db.session.commit()


def _disable_for_failures(endpoint: WebhookEndpoint, now: datetime) -> None:
    from consent import notifications

    endpoint.active = False
    endpoint.disabled_at = now
    endpoint.disabled_reason = "every delivery failed for a day"
    org = db.session.get(Organization, endpoint.organization_id)
    log.warning("webhook endpoint %s disabled after a day of failures", endpoint.url)
    if org.notification_email:
        notifications.queue_email(
            org,
            to=org.notification_email,
            purpose="org_notification",
            template="webhook_disabled",
            key=f"webhook-disabled:{endpoint.id}:{now.isoformat()}",
            endpoint=endpoint,
            since=endpoint.failing_since,
        )
