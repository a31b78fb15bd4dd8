"""The organization's message purposes, as its team edits them in the admin's Settings: add one,
rename it (English and Spanish), order them, say per channel whether parents may turn it off,
whether it reaches opted-out addresses, and which one is general (exactly one). A purpose that
has choices on record is never deleted (the events name it). Not a consent change: each change
is audited (consent.audit)."""

from __future__ import annotations

import re

import sqlalchemy as sa

from consent import audit, purposes
from consent.extensions import db
from consent.i18n import gettext as _
from consent.models import Channel, ConsentEvent, MessagePurpose, Organization, PurposeState

KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
NAME_MAX = 100
FLAGS = (
    "parents_may_turn_off_text",
    "parents_may_turn_off_voice",
    "parents_may_turn_off_email",
    "reaches_opted_out",
)
FIELDS = ("name_en", "name_es", "position", *FLAGS, "is_general")


class PurposeError(ValueError):
    """A change refused; `field` names the form field it is about."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def field_name(purpose_id: int, name: str) -> str:
    """The form field of one purpose's value: "p12-name_en"."""
    return f"p{purpose_id}-{name}"


def _name(value: object, field: str, required: bool) -> str:
    """A name as typed, spaces folded and control characters (a NUL, which PostgreSQL refuses)
    dropped."""
    text = "".join(c for c in str(value or "") if c.isprintable() or c.isspace())
    text = " ".join(text.split())
    if required and not text:
        raise PurposeError(field, _("Give the name in English."))
    if len(text) > NAME_MAX:
        raise PurposeError(field, _("A name has at most %(n)s characters.", n=NAME_MAX))
    return text


def _position(value: object, field: str) -> int:
    text = str(value or "").strip()
    if not re.fullmatch(r"[0-9]{1,3}", text):
        raise PurposeError(field, _("Give the order as a whole number from 0 to 999."))
    return int(text)


def save_all(
    org: Organization, form: dict[str, str], general_id: str | None, user
) -> dict[str, tuple[object, object]]:
    """Apply the edited values of every purpose of the organization (form: field_name → value;
    a flag is on when its field is present), with `general_id` the one general purpose.
    Returns the changes ({"<key>.<field>": (old, new)}); PurposeError when a value is wrong
    (nothing applied). The caller commits."""
    found = purposes.of(org)
    ids = {str(p.id) for p in found}
    if general_id not in ids:
        raise PurposeError("general", _("Choose which kind of message is the general one."))
    wanted: dict[int, dict[str, object]] = {}
    for p in found:
        values: dict[str, object] = {
            "name_en": _name(
                form.get(field_name(p.id, "name_en")), field_name(p.id, "name_en"), True
            ),
            "name_es": _name(
                form.get(field_name(p.id, "name_es")), field_name(p.id, "name_es"), False
            ),
            "position": _position(
                form.get(field_name(p.id, "position")), field_name(p.id, "position")
            ),
            "is_general": str(p.id) == general_id,
        }
        for flag in FLAGS:
            values[flag] = field_name(p.id, flag) in form
        wanted[p.id] = values
    changes: dict[str, tuple[object, object]] = {}
    for p in found:
        for name, new in wanted[p.id].items():
            old = getattr(p, name)
            if old != new:
                setattr(p, name, new)
                changes[f"{p.key}.{name}"] = (old, new)
    if changes:
        db.session.flush()
        audit.record(user, f"the message purposes of {org.name}", changes)
    return changes


def add(org: Organization, key: str, name_en: str, name_es: str, user) -> MessagePurpose:
    """A new purpose (parents may turn it off on every channel; it does not reach opted-out
    addresses; last in the order). Its key is what the API names; it never changes."""
    key = (key or "").strip().lower()
    if not KEY.fullmatch(key):
        raise PurposeError(
            "key",
            _("A key is lower-case letters, digits and _, starting with a letter, such as sports."),
        )
    try:
        purposes.by_key(org, key)
    except purposes.UnknownPurpose:
        pass
    else:
        raise PurposeError("key", _("There is already a kind of message with that key."))
    found = purposes.of(org)
    purpose = MessagePurpose(
        organization_id=org.id,
        key=key,
        name_en=_name(name_en, "name_en", True),
        name_es=_name(name_es, "name_es", False),
        position=max((p.position for p in found), default=-1) + 1,
        parents_may_turn_off_text=True,
        parents_may_turn_off_voice=True,
        parents_may_turn_off_email=True,
        reaches_opted_out=False,
        is_general=False,
    )
    db.session.add(purpose)
    db.session.flush()
    audit.record(user, f"the message purposes of {org.name}", {key: (None, purpose.name_en)})
    return purpose


def choices_on_record(purpose: MessagePurpose) -> int:
    """How many events and choices name this purpose."""
    events = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(ConsentEvent)
        .where(ConsentEvent.purpose_id == purpose.id)
    )
    states = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(PurposeState)
        .where(PurposeState.purpose_id == purpose.id)
    )
    return int(events or 0) + int(states or 0)


def delete(org: Organization, purpose: MessagePurpose, user) -> None:
    """Delete a purpose nobody has chosen for; PurposeError when it is the general one or has
    choices on record (the events name it: it stays, and can be renamed)."""
    if purpose.organization_id != org.id:
        raise PurposeError("purpose", _("This kind of message belongs to another organization."))
    if purpose.is_general:
        raise PurposeError(
            "purpose",
            _(
                "%(name)s is the general kind: choose another general one first.",
                name=purpose.name_en,
            ),
        )
    if choices_on_record(purpose):
        raise PurposeError(
            "purpose",
            _(
                "%(name)s cannot be deleted: people's choices for it are on record, and the "
                "record keeps them. Rename it instead.",
                name=purpose.name_en,
            ),
        )
    db.session.delete(purpose)
    db.session.flush()
    audit.record(
        user, f"the message purposes of {org.name}", {purpose.key: (purpose.name_en, None)}
    )


def channels() -> tuple[Channel, ...]:
    return (Channel.TEXT, Channel.VOICE, Channel.EMAIL)
