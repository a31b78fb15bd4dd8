"""The Outbox: every message we send, with its status, attempts and last error, and a retry
action (a delivery matter, not a consent change). The status says what truly happened: sent,
recorded (no mail server or SMS provider configured, so nothing left the building), failed,
expired (an opt-out confirmation text past its five minutes, dropped unsent), suppressed,
queued. The organization team (the only role here) may read each message's body and
headers on its details page."""

from __future__ import annotations

from flask import abort, flash
from flask_admin.actions import action

from admin.base import ORG
from admin.readonly import ReadOnlyModelView
from consent import outbox, words
from consent.extensions import db
from consent.i18n import gettext as _
from consent.i18n import lazy_gettext as _l
from consent.models import OutboxMessage
from consent.tenant import current_organization

STATUS_WORDS = {
    "queued": _l("queued"),
    "sending": _l("sending"),
    "sent": _l("sent"),
    "recorded": _l("recorded (no transport configured: not sent)"),
    "failed": _l("failed"),
    "expired": _l("expired (an opt-out confirmation text not sent within five minutes: dropped)"),
    "suppressed": _l("not sent (the address may not get it)"),
}


def status_key(message: OutboxMessage) -> str:
    """sent, recorded, failed, expired, suppressed, queued or sending: what truly happened."""
    if message.status == "sent" and (message.provider_id or "").startswith("recorded:"):
        return "recorded"
    return message.status


def status_words(message: OutboxMessage) -> str:
    key = status_key(message)
    return str(STATUS_WORDS.get(key, key))


TIMES = ("created_at", "next_attempt_at", "sent_at")


def _local(name: str):
    """A column's time in the district's zone, UTC on hover."""
    return lambda v, c, m, n: words.local_time(getattr(m, name), current_organization())


class OutboxView(ReadOnlyModelView):
    """Queued, sent, failed and suppressed messages, newest first."""

    roles = ORG
    simple_list_pager = True
    page_size = 50
    can_set_page_size = False
    column_default_sort = ("id", True)
    column_list = (
        "id",
        "created_at",
        "channel",
        "purpose",
        "to_address",
        "subject",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "sent_at",
    )
    column_sortable_list = ("created_at",)
    column_labels = {"id": "#", "to_address": _l("To"), "created_at": _l("Queued")}
    column_filters = ("status", "channel", "purpose", "to_address")
    column_details_list = column_list + (
        "language",
        "provider_id",
        "event_id",
        "headers",
        "body",
    )
    column_formatters = {
        "status": lambda v, c, m, n: status_words(m),
        **{name: _local(name) for name in TIMES},
    }
    column_formatters_detail = {
        "status": lambda v, c, m, n: status_words(m),
        **{name: _local(name) for name in TIMES},
        "headers": lambda v, c, m, n: "\n".join(
            f"{k}: {val}" for k, val in (m.headers or {}).items()
        ),
    }

    def get_query(self):
        org = current_organization()
        return super().get_query().filter(OutboxMessage.organization_id == org.id)

    def get_one(self, id):
        org = current_organization()
        message = db.session.get(OutboxMessage, id)
        return message if message is not None and message.organization_id == org.id else None

    @action(
        "retry",
        _l("Retry now"),
        _l("Send the selected failed or queued messages again now?"),
    )
    def action_retry(self, ids):
        """Make the selected failed or queued messages due now, and try them."""
        if not all(str(i).isdigit() for i in ids):
            abort(400)
        org = current_organization()
        wanted = [
            m.id
            for m in db.session.scalars(
                db.select(OutboxMessage).where(
                    OutboxMessage.id.in_([int(i) for i in ids]),
                    OutboxMessage.organization_id == org.id,
                )
            )
        ]
        count = outbox.retry(wanted)
        db.session.commit()
        report = outbox.deliver(ids=wanted) if count else None
        if count:
            flash(
                _(
                    "%(count)s message(s) retried: %(sent)s sent, %(failed)s failed again.",
                    count=count,
                    sent=report.sent,
                    failed=report.failed,
                ),
                "success",
            )
        else:
            flash(_("Nothing to retry: only failed or queued messages can be retried."), "info")


def register(admin) -> None:
    admin.add_view(
        OutboxView(OutboxMessage, db, name=_l("Outbox"), endpoint="outbox", url="/admin/outbox")
    )
