"""May we send on this channel to this address? For one address and for many.

Reasons: ok, opted_out, bounced, no_consent (text needs consent and none is on record),
invalid (not an address). Many addresses cost one query per chunk of CHUNK, never one each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from consent.addresses import AddressError, normalize
from consent.extensions import db
from consent.models import Channel, ConsentState, Organization, Status

CHUNK = 1000
REASONS = ("ok", "opted_out", "bounced", "no_consent", "invalid")


@dataclass(frozen=True, slots=True)
class Eligibility:
    address: str
    normalized: str | None
    allowed: bool
    reason: str

    def as_dict(self) -> dict:
        return {
            "address": self.address,
            "normalized": self.normalized,
            "allowed": self.allowed,
            "reason": self.reason,
        }


def decide(org: Organization, channel: str, status: str | None) -> str:
    """The reason for one channel and current status (None: no choice on record)."""
    if status == Status.OPTED_OUT:
        return "opted_out"
    if status == Status.BOUNCED:
        return "bounced"
    if status == Status.OPTED_IN:
        return "ok"
    if channel == Channel.TEXT and org.text_requires_consent:
        return "no_consent"
    return "ok"


def check_one(org: Organization, channel: str, address: str) -> Eligibility:
    """Eligibility of one address as given (normalized here)."""
    return check_many(org, channel, [address])[0]


def check_many(org: Organization, channel: str, addresses: Sequence[str]) -> list[Eligibility]:
    """Eligibility of each address, in the order given."""
    channel = Channel(channel)
    region = org.default_region or "US"
    normalized: list[str | None] = []
    for raw in addresses:
        try:
            normalized.append(normalize(channel, raw, region))
        except (AddressError, TypeError):
            normalized.append(None)
    wanted = list(dict.fromkeys(a for a in normalized if a is not None))
    statuses = statuses_of(org.id, channel, wanted)
    results = []
    for raw, norm in zip(addresses, normalized, strict=True):
        if norm is None:
            results.append(Eligibility(str(raw), None, False, "invalid"))
            continue
        reason = decide(org, channel, statuses.get(norm))
        results.append(Eligibility(raw, norm, reason == "ok", reason))
    return results


def statuses_of(org_id: int, channel: str, addresses: Sequence[str]) -> dict[str, str]:
    """{address: status} for the addresses that have a state, CHUNK addresses per query."""
    found: dict[str, str] = {}
    table = ConsentState.__table__
    channel_value = Channel(channel).value
    for start in range(0, len(addresses), CHUNK):
        chunk = addresses[start : start + CHUNK]
        rows = db.session.execute(
            sa.select(table.c.address, table.c.status).where(
                table.c.organization_id == org_id,
                table.c.channel == channel_value,
                table.c.address.in_(chunk),
            )
        )
        for address, status in rows:
            found[address] = status
    return found
