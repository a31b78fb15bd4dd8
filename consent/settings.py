"""The organization's settings: its texting number, notification address, the words of its
messages, and its rules (docs/rules.md "Organization settings"). Changing them is not a consent change; each change is
audited (consent.audit)."""

from __future__ import annotations

from consent import audit
from consent.models import Organization

TEXT_FIELDS = (
    "texting_number",
    "notification_email",
    "help_contact",
    "texts_about",
    "message_frequency",
    "terms_url",
    "privacy_url",
    "postal_address",
    "voice_optout_key",
    "time_zone",
)
RULE_FIELDS = tuple(Organization.RULES)


def update(org: Organization, values: dict, user) -> dict[str, tuple[object, object]]:
    """Apply the values that differ, audit them, and return {field: (old, new)}; the caller
    commits. Addresses must already be normalized."""
    changes: dict[str, tuple[object, object]] = {}
    for name in TEXT_FIELDS + RULE_FIELDS:
        if name not in values:
            continue
        old, new = getattr(org, name), values[name]
        if old != new:
            setattr(org, name, new)
            changes[name] = (old, new)
    if changes:
        audit.record(user, f"the settings of {org.name}", changes)
    return changes
