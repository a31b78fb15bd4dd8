"""Opt-outs and delivery failures other systems report: a mass-notification service that saw a
STOP on its own number, a mail service's bounces and spam complaints (Amazon SES through SNS,
SendGrid's Event Webhook). Each goes through the ledger with what the reporter said as
evidence; the caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from consent import ledger
from consent.addresses import AddressError, normalize
from consent.ledger import Actor, Origin
from consent.models import Channel, Organization, Source, Status

REASONS = ("stop", "request", "unsubscribe", "complaint", "other")


@dataclass(frozen=True)
class Report:
    """What the reporter said about the opt-outs, kept as each event's evidence."""

    reporter: str | None = None  # the reporting system's own name ("source" in the API)
    reason: str = "request"
    note: str | None = None
    occurred_at: datetime | None = None


def record_optouts(
    org: Organization,
    channel: str,
    addresses: Sequence[str],
    report: Report,
    *,
    actor: Actor,
    origin: Origin | None = None,
) -> list[dict]:
    """Opt each address out (source `api`); `reason` "stop" on text carries the carrier block
    (the person replied STOP to the reporter's number). One result per address, in order:
    "opted_out", "already" or "invalid" (with why)."""
    channel = Channel(channel)
    block = report.reason == "stop" and channel == Channel.TEXT
    evidence = {"reason": report.reason}
    if report.reporter:
        evidence["reported_by"] = report.reporter
    if report.occurred_at is not None:
        evidence["occurred_at"] = report.occurred_at.isoformat()
    results = []
    for given in addresses:
        try:
            address = normalize(channel, given, org.default_region or "US")
        except AddressError as refused:
            results.append({"address": given, "normalized": None, "result": "invalid",
                            "error": refused.why})  # fmt: skip
            continue
        outcome = ledger.opt_out(
            org,
            channel,
            address,
            source=Source.API,
            actor=actor,
            evidence=evidence,
            note=report.note,
            origin=origin,
            carrier_block=block,
            confirm=False,  # the reporter's system answered the person already
        )
        result = "opted_out" if outcome.changed else "already"
        if outcome.refused:
            result = "refused"
        results.append({"address": given, "normalized": address, "result": result})
    return results


def _email_address(address: str) -> str | None:
    """The reported address normalized, or None when it is not an email address."""
    try:
        return normalize(Channel.EMAIL, address)
    except AddressError:
        return None


def _provider(evidence: dict) -> str:
    return evidence.get("provider", "mail provider")


def email_bounced(org: Organization, address: str, evidence: dict) -> str:
    """A hard bounce a mail provider reported: the address is marked bounced."""
    address = _email_address(address)
    if address is None:
        return "invalid"
    outcome = ledger.mark_bounced(
        org,
        Channel.EMAIL,
        address,
        evidence=evidence,
        actor=Actor.system(f"{_provider(evidence)} bounce notification"),
    )
    return "bounced" if outcome.changed else outcome.code


def _email_opt_out(
    org: Organization, address: str, evidence: dict, source: Source, what: str
) -> str:
    """An opt-out the mail provider reported (complaint or its own unsubscribe link). No
    confirmation is sent: the person told their provider already, and for a complaint not even
    this one more mail is welcome."""
    address = _email_address(address)
    if address is None:
        return "invalid"
    outcome = ledger.opt_out(
        org,
        Channel.EMAIL,
        address,
        source=source,
        actor=Actor.system(f"{_provider(evidence)} {what}"),
        evidence=evidence,
        confirm=False,
    )
    return "opted_out" if outcome.changed else "already"


def email_complaint(org: Organization, address: str, evidence: dict) -> str:
    """A spam complaint a mail provider reported: the address is opted out (source complaint)."""
    return _email_opt_out(org, address, evidence, Source.COMPLAINT, "complaint notification")


def email_unsubscribed(org: Organization, address: str, evidence: dict) -> str:
    """An unsubscribe the mail provider's own link recorded: opted out (source api)."""
    return _email_opt_out(org, address, evidence, Source.API, "unsubscribe")


__all__ = ["Report", "record_optouts", "email_bounced", "email_complaint", "Status"]
