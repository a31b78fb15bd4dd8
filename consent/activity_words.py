"""A consent event in plain words, for the activity log and the contact page: what changed
("Texts: allowed → stopped by a STOP reply: “STOP”"), how, and its evidence ("imported from
opt-outs-nov.xlsx, row 12"). Built once here; the admin's pages use it."""

from __future__ import annotations

from flask_babel import get_locale

from consent.i18n import gettext as _
from consent.i18n import lazy_gettext as _l
from consent.models import ConsentEvent, Source, Status
from consent.words import channel_name, source_words

# What a status means for sending, in a log line: "allowed", "stopped".
STATE_WORDS = {
    Status.OPTED_IN: _l("allowed"),
    Status.OPTED_OUT: _l("stopped"),
    Status.BOUNCED: _l("not reachable (bounced)"),
    Status.UNKNOWN: _l("no choice yet"),
    None: _l("no choice yet"),
}

# How a change came about, after "by" in a log line (one phrase per source).
BY_WORDS = {
    Source.ENROLLMENT: _l("the enrollment form"),
    Source.PORTAL: _l("the parent portal"),
    Source.ADMIN: _l("an admin"),
    Source.IMPORT: _l("an imported list"),
    Source.SMS_KEYWORD: _l("a STOP/START reply"),
    Source.SMS_REPLY: _l("a text reply in words"),
    Source.CARRIER: _l("the mobile carrier"),
    Source.EMAIL_LINK: _l("a link in an email"),
    Source.ONE_CLICK: _l("one-click unsubscribe"),
    Source.STAFF_ENTRY: _l("staff entry"),
    Source.BOUNCE: _l("a delivery failure"),
}


def state_words(status) -> str:
    return str(STATE_WORDS.get(Status(status) if status else None, status))


def channel_of(event: ConsentEvent) -> str:
    """What an event is about: "Texts", or for one message purpose "Texts (General messages)"."""
    channel = channel_name(event.channel)
    if event.purpose_id is not None and event.purpose is not None:
        channel = _(
            "%(channel)s (%(purpose)s messages)",
            channel=channel,
            purpose=event.purpose.name(str(get_locale() or "en")),
        )
    return str(channel)


def change_words(event: ConsentEvent) -> str:
    """The change of one event in words: "Texts: allowed → stopped by a STOP/START reply";
    a choice for one message purpose names it: "Texts (General messages): …"."""
    channel = channel_of(event)
    if event.kind == "request":
        return _(
            "%(channel)s: confirmation link sent (stays %(status)s until the person confirms)",
            channel=channel,
            status=state_words(event.to_status),
        )
    if event.kind == "revert":
        return _(
            "%(channel)s: %(before)s → %(after)s (an opt-out undone)",
            channel=channel,
            before=state_words(event.from_status),
            after=state_words(event.to_status),
        )
    how = BY_WORDS.get(event.source, source_words(event.source))
    if event.source == Source.SMS_KEYWORD:
        how = _("a STOP reply") if event.to_status == Status.OPTED_OUT else _("a START reply")
    words = _(
        "%(channel)s: %(before)s → %(after)s by %(how)s",
        channel=channel,
        before=state_words(event.from_status),
        after=state_words(event.to_status),
        how=how,
    )
    body = (event.evidence or {}).get("body")
    if body and event.source in (Source.SMS_KEYWORD, Source.SMS_REPLY):
        words += f": “{body}”"
    if event.carrier_block:
        words += " " + _("(the carrier blocks texts until START)")
    return words


def evidence_words(event: ConsentEvent) -> str:
    """The event's evidence in words ("imported from opt-outs-nov.xlsx, row 12")."""
    evidence = event.evidence or {}
    parts = []
    if evidence.get("reverts"):
        parts.append(_("undoes the change #%(id)s", id=evidence["reverts"]))
    if evidence.get("file"):
        if evidence.get("row"):
            parts.append(
                _("imported from %(file)s, row %(row)s", file=evidence["file"], row=evidence["row"])
            )
        else:
            parts.append(_("imported from %(file)s", file=evidence["file"]))
    elif evidence.get("batch"):
        parts.append(_("import #%(batch)s", batch=evidence["batch"]))
    if evidence.get("body") and event.source not in (Source.SMS_KEYWORD, Source.SMS_REPLY):
        parts.append(_("the message: “%(body)s”", body=evidence["body"]))
    if evidence.get("disclosure"):
        parts.append(_("shown: “%(text)s”", text=evidence["disclosure"]))
    if evidence.get("meaning"):
        parts.append(str(evidence["meaning"]))
    elif evidence.get("error_code"):
        parts.append(_("carrier error %(code)s", code=evidence["error_code"]))
    if evidence.get("sent_to"):
        parts.append(_("link sent to %(to)s", to=evidence["sent_to"]))
    if evidence.get("attested"):
        parts.append(_("the admin attested the person asked"))
    return "; ".join(parts)
