"""The API for the district's other systems: links for their emails, opt-outs they saw, and
the change feed. Each route needs its scope (api/auth.py); the OpenAPI document is
api/openapi.py.

- `POST /api/v1/links` (links:write): one-click unsubscribe and preferences links for one
  address or up to 10,000, with the List-Unsubscribe headers for email.
- `POST /api/v1/optouts` (optouts:write): opt-outs another system saw, through the ledger
  (source `api`, the key as actor).
- `GET /api/v1/events?after=&limit=` (events:read): consent changes, oldest first.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, jsonify, request

from api.auth import (
    BadRequest,
    addresses_field,
    caller,
    error,
    json_body,
    json_errors,
    limited,
    organization,
    require,
    string_field,
)
from consent import feed, reported, sender_links
from consent.addresses import CHANNELS
from consent.database import read_only, reads_without_transaction
from consent.extensions import csrf, db
from consent.ledger import Actor
from consent.web import request_origin

bp = Blueprint("api_integrations", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
json_errors(bp)
limited(bp)

MAX_LINKS = 10_000
MAX_OPTOUTS = 1_000


def _org():
    org = organization()
    if org is None:
        raise BadRequest("No organization is set up yet.", 503)
    return org


@bp.post("/links")
@read_only
@require("links:write")
def links():
    """{"channel", "address"} → its links; {"channel", "addresses": [...]} → {"results"}."""
    body = json_body()
    channel = string_field(body, "channel", choices=CHANNELS)
    addresses, many = addresses_field(body, MAX_LINKS)
    results = sender_links.links_for(_org(), channel, addresses)
    if many:
        return jsonify(results=results)
    (answer,) = results
    if "error" in answer:
        return error(f"address is not an address for {channel}: {answer['error']}.", 400, "address")
    return jsonify(answer)


def _occurred_at(body: dict) -> datetime | None:
    value = string_field(body, "occurred_at", required=False, limit=40)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("occurred_at must be an ISO 8601 time.", 400, "occurred_at") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


@bp.post("/optouts")
@require("optouts:write")
def optouts():
    """Opt-outs another system saw: one `address` or up to 1,000 `addresses`."""
    body = json_body()
    channel = string_field(body, "channel", choices=CHANNELS)
    addresses, many = addresses_field(body, MAX_OPTOUTS)
    report = reported.Report(
        reporter=string_field(body, "source", required=False, limit=100),
        reason=string_field(body, "reason", required=False, choices=reported.REASONS) or "request",
        note=string_field(body, "note", required=False, limit=2000),
        occurred_at=_occurred_at(body),
    )
    who = caller()
    results = reported.record_optouts(
        _org(),
        channel,
        addresses,
        report,
        actor=Actor.for_api_key(who.key_id, who.name),
        origin=request_origin(),
    )
    db.session.commit()
    if many:
        return jsonify(results=results)
    (answer,) = results
    if answer["result"] == "invalid":
        return error(f"address is not an address for {channel}: {answer['error']}.", 400, "address")
    return jsonify(answer)


@bp.get("/events")
@require("events:read")
def events():
    """Consent changes after the cursor, oldest first: {"events": [...], "next": cursor}."""
    try:
        after = feed.Cursor.parse(request.args.get("after"))
    except feed.CursorError as refused:
        return error(str(refused), 400, "after")
    limit_text = request.args.get("limit", str(feed.DEFAULT_LIMIT))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= feed.MAX_LIMIT:
        return error(f"limit must be a whole number from 1 to {feed.MAX_LIMIT:,}.", 400, "limit")
    with reads_without_transaction():
        org = _org()
        rows, following = feed.page(org.id, after, int(limit_text))
    return jsonify(events=rows, next=str(following))
