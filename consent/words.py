"""The product's words, each written once: channels, statuses, sources, the carrier block, and
how an address is shown.

The tables hold the English, marked for the catalog with N_; exports, logs and import reports
use it as it is. The functions give the words in the reader's language, translated when shown
(lazily, so words chosen before `force_locale` come out in the recipient's language).
"""

from __future__ import annotations

from flask_babel import LazyString
from markupsafe import Markup

from consent.addresses import format_phone
from consent.i18n import N_, gettext, lazy_gettext
from consent.models import Channel, Organization, Source, Status

# A channel in a sentence: "opted out of text messages".
CHANNEL_WORDS = {
    Channel.TEXT: N_("text messages"),
    Channel.VOICE: N_("calls"),
    Channel.EMAIL: N_("email"),
}
# A channel as a value in a list, a filter or an export: "Text".
CHANNEL_LABELS = {Channel.TEXT: N_("Text"), Channel.VOICE: N_("Voice"), Channel.EMAIL: N_("Email")}
# A channel as a heading beside an address's status: "Texts: Opted in".
CHANNEL_NAMES = {Channel.TEXT: N_("Texts"), Channel.VOICE: N_("Calls"), Channel.EMAIL: N_("Email")}

# A status as a label. A number that replied STOP shows BLOCKED_WORDS instead of "Opted out".
STATUS_WORDS = {
    Status.OPTED_IN: N_("Opted in"),
    Status.OPTED_OUT: N_("Opted out"),
    Status.BOUNCED: N_("Bounced"),
    Status.UNKNOWN: N_("No choice yet"),
}
BLOCKED_WORDS = N_("Blocked by STOP reply")

# How a change came about, in a sentence: "opted out through the parent portal". One label per
# source (docs/rules.md "Sources").
SOURCE_WORDS = {
    Source.ENROLLMENT: N_("the enrollment form"),
    Source.PORTAL: N_("the parent portal"),
    Source.ADMIN: N_("an admin"),
    Source.IMPORT: N_("an imported list"),
    Source.SMS_KEYWORD: N_("a text reply (keyword)"),
    Source.SMS_REPLY: N_("a text reply (in words)"),
    Source.CARRIER: N_("the mobile carrier"),
    Source.EMAIL_LINK: N_("a link in an email"),
    Source.ONE_CLICK: N_("one-click unsubscribe"),
    Source.STAFF_ENTRY: N_("staff entry"),
    Source.BOUNCE: N_("a delivery failure"),
    Source.VOICE_KEYPRESS: N_("a key pressed during a call"),
    Source.API: N_("another system (API)"),
    Source.COMPLAINT: N_("a spam complaint"),
}


def channel_words(channel: str) -> LazyString:
    """The channel in a sentence, in the reader's language: "text messages"."""
    return lazy_gettext(CHANNEL_WORDS[Channel(channel)])


def channel_label(channel: str) -> LazyString:
    """The channel as a list value, in the reader's language: "Text"."""
    return lazy_gettext(CHANNEL_LABELS[Channel(channel)])


def channel_name(channel: str) -> LazyString:
    """The channel as a heading beside a status, in the reader's language: "Texts"."""
    return lazy_gettext(CHANNEL_NAMES[Channel(channel)])


def status_label(status: str | None, carrier_block: bool = False) -> LazyString:
    """A status in words, in the reader's language ("No choice yet" for none on record)."""
    if carrier_block:
        return lazy_gettext(BLOCKED_WORDS)
    return lazy_gettext(STATUS_WORDS[Status(status or Status.UNKNOWN)])


def source_words(source: str) -> LazyString | str:
    """How a change came about, in the reader's language ("the parent portal"); a source this
    version does not know is shown as stored."""
    try:
        return lazy_gettext(SOURCE_WORDS[Source(source)])
    except ValueError:
        return source


def source_label(source: str) -> LazyString:
    """The source as a list value or filter choice: "The parent portal"."""
    return LazyString(lambda: str(source_words(source)).capitalize())


def shown_address(address: str) -> str:
    """An address the way people read it: an email as it is, a phone as +1 202-555-0100."""
    return address if "@" in address else format_phone(address)


def carrier_block_reason(org: Organization) -> str:
    """Why an opt-in is refused for a number that replied STOP (staff and links read it)."""
    return gettext(
        "This number replied STOP to our texts, so the carrier blocks them. Only the person "
        "can lift that, by texting START to %(number)s.",
        number=format_phone(org.texting_number),
    )


def carrier_block_words(org: Organization) -> str:
    """What the portal says to a parent beside their number that replied STOP."""
    return gettext(
        "You replied STOP to our texts. To get them again, text START to %(number)s.",
        number=format_phone(org.texting_number),
    )


def org_words(value: str) -> str:
    """An organization's own words (what texts are about, how often) in the current language
    when they are the defaults we ship; the organization's wording as it is otherwise."""
    known = {
        "school closures, attendance, emergencies and events": lambda: gettext(
            "school closures, attendance, emergencies and events"
        ),
        "up to 10 messages a month": lambda: gettext("up to 10 messages a month"),
    }
    words = known.get((value or "").strip())
    return words() if words else value


PHONE_KIND_WORDS = {"cell": N_("cell"), "home": N_("home"), "work": N_("work")}


def phone_kind_words(kind: str | None) -> str:
    """A phone's type in a sentence, in the reader's language: "home"."""
    return gettext(PHONE_KIND_WORDS[kind]) if kind in PHONE_KIND_WORDS else (kind or "")


def valid_time_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone zoneinfo knows ("America/New_York")."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not name or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def local_time(value, org: Organization | None) -> Markup:
    """A stored (naive UTC) time in the district's zone, UTC on hover:
    <time datetime="…Z" title="2026-12-01 14:12 UTC">2026-12-01 09:12 EST</time>."""
    from datetime import UTC
    from zoneinfo import ZoneInfo

    if value is None:
        return Markup("")
    zone_name = getattr(org, "time_zone", None) or "America/New_York"
    zone = ZoneInfo(zone_name if valid_time_zone(zone_name) else "UTC")
    local = value.replace(tzinfo=UTC).astimezone(zone)
    return Markup('<time datetime="{iso}Z" title="{utc} UTC">{local}</time>').format(
        iso=value.isoformat(timespec="seconds"),
        utc=value.strftime("%Y-%m-%d %H:%M"),
        local=local.strftime("%Y-%m-%d %H:%M %Z"),
    )


def opt_out_sends(channel: Channel) -> str:
    """What an admin's opt-out sends the person, said before it is recorded."""
    if channel == Channel.TEXT:
        return gettext("The person gets one text confirming they will get no more texts from us.")
    if channel == Channel.EMAIL:
        return gettext("The person gets one email confirming they will get no more email from us.")
    return gettext("Nothing is sent to the person; calls to this number stop.")


def purpose_opt_out_sends(purpose_name: str, channel: Channel) -> str:
    """What an admin's purpose opt-out sends the person (nothing: no confirmation goes out for
    one kind of message), said before it is recorded."""
    return gettext(
        "Nothing is sent to the person; %(purpose)s %(channel)s to this address stop, and "
        "other kinds of messages keep coming.",
        purpose=purpose_name,
        channel=channel_words(channel),
    )
