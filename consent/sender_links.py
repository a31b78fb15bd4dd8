"""Links for outside senders: the one-click unsubscribe and preferences links (and the RFC 8058
headers) an outside system puts in each email it sends for the organization, the same links
our own emails carry (consent.notifications.email_headers)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from consent import tokens
from consent.addresses import AddressError, normalize
from consent.database import is_one_of, org_is
from consent.extensions import db
from consent.models import Channel, ConsentState, Organization
from consent.notifications import link

CHUNK = 5_000


def _versions(org_id: int, channel: str, addresses: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    unique = sorted(set(addresses))
    for start in range(0, len(unique), CHUNK):
        part = unique[start : start + CHUNK]
        found.update(
            db.session.execute(
                sa.select(ConsentState.address, ConsentState.version).where(
                    org_is(ConsentState.organization_id, org_id),
                    ConsentState.channel == channel,
                    is_one_of(ConsentState.address, part),
                )
            ).all()
        )
    return found


def links_for(org: Organization, channel: str, addresses: Sequence[str]) -> list[dict]:
    """One answer per address, in order: its links (and, for email, the List-Unsubscribe
    headers), or `{"address", "error"}` when it is not an address of this channel."""
    channel = Channel(channel)
    normalized: list[str | None] = []
    errors: dict[int, str] = {}
    for index, given in enumerate(addresses):
        try:
            normalized.append(normalize(channel, given, org.default_region or "US"))
        except AddressError as refused:
            normalized.append(None)
            errors[index] = refused.why
    versions = _versions(org.id, channel, [a for a in normalized if a is not None])
    unsubscribe_path = link("/unsubscribe/")
    preferences_path = link("/preferences/")
    results = []
    for index, (given, address) in enumerate(zip(addresses, normalized, strict=True)):
        if address is None:
            results.append({"address": given, "normalized": None, "error": errors[index]})
            continue
        version = versions.get(address, 0)
        unsubscribe = unsubscribe_path + tokens.make(
            "unsubscribe", org.id, channel, address, version
        )
        preferences = preferences_path + tokens.make(
            "preferences", org.id, channel, address, version
        )
        answer = {
            "address": given,
            "normalized": address,
            "unsubscribe_url": unsubscribe,
            "preferences_url": preferences,
        }
        if channel == Channel.EMAIL:
            answer["headers"] = {
                "List-Unsubscribe": f"<{unsubscribe}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        results.append(answer)
    return results
