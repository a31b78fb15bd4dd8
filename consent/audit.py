"""Audit lines for admin changes that are not consent changes (settings, admin users): who
changed what, from what, to what. Consent changes have their own proof: the ConsentEvents."""

from __future__ import annotations

import logging

log = logging.getLogger("consent.audit")
SECRET = "(changed)"


def record(user, what: str, changes: dict[str, tuple[object, object]]) -> str:
    """Log one audit line, `<who> changed <what>: field: old -> new; ...`, and return it."""
    who = f"{user.label} (user {user.id})" if user is not None else "system"
    detail = "; ".join(f"{name}: {old!r} -> {new!r}" for name, (old, new) in changes.items())
    line = f"{who} changed {what}: {detail}"
    log.info(line)
    return line
