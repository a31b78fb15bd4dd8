"""The Activity Log: every consent event, newest first, with filters and export. Read-only:
events are never edited or deleted, here or anywhere."""

from __future__ import annotations

from flask import abort
from flask_admin import expose
from flask_babel import lazy_gettext as _l

from admin.base import ORG
from admin.readonly import ReadOnlyModelView
from consent import export
from consent.app import current_organization
from consent.extensions import db
from consent.models import ConsentEvent

EXPORT_COLUMNS = [
    ("id", "Event"),
    ("occurred_at", "When (UTC)"),
    ("channel", "Channel"),
    ("address", "Address"),
    ("kind", "Kind"),
    ("from_status", "From"),
    ("to_status", "To"),
    ("carrier_block", "Carrier block"),
    ("source", "Source"),
    ("actor_label", "By"),
    ("ip", "IP"),
    ("note", "Note"),
    ("evidence", "Evidence"),
]


def _cell(event: ConsentEvent, name: str) -> object:
    value = getattr(event, name)
    if name == "occurred_at":
        return export.when(value)
    if name == "carrier_block":
        return "Yes" if value else "No"
    if hasattr(value, "value"):
        return value.value
    return value


def _status_words(view, context, model, name):
    value = getattr(model, name)
    return value.value if value is not None else "—"


class ActivityView(ReadOnlyModelView):
    """Every consent event of the organization, newest first (no COUNT on each page)."""

    roles = ORG
    simple_list_pager = True
    page_size = 50
    can_set_page_size = False
    column_default_sort = ("id", True)
    column_list = (
        "occurred_at",
        "channel",
        "address",
        "kind",
        "from_status",
        "to_status",
        "carrier_block",
        "source",
        "actor_label",
        "note",
    )
    column_sortable_list = ("occurred_at",)
    column_labels = {
        "occurred_at": _l("When (UTC)"),
        "from_status": _l("From"),
        "to_status": _l("To"),
        "actor_label": _l("By"),
        "carrier_block": _l("Carrier block"),
    }
    column_filters = ("address", "channel", "source", "actor_label", "occurred_at", "kind")
    column_details_list = (
        "id",
        "occurred_at",
        "channel",
        "address",
        "kind",
        "from_status",
        "to_status",
        "carrier_block",
        "source",
        "actor",
        "actor_label",
        "ip",
        "user_agent",
        "note",
        "evidence",
        "state_version",
    )
    column_formatters = {
        "from_status": _status_words,
        "to_status": _status_words,
        "channel": _status_words,
        "source": _status_words,
    }
    list_template = "admin/activity_list.html"

    def get_query(self):
        org = current_organization()
        return super().get_query().filter(ConsentEvent.organization_id == org.id)

    def get_one(self, id):
        org = current_organization()
        event = self.session.get(ConsentEvent, id)
        return event if event is not None and event.organization_id == org.id else None

    @expose("/download/<fmt>/")
    def download(self, fmt: str):
        """The log under the current filters, as CSV or XLSX."""
        if fmt not in ("csv", "xlsx"):
            abort(404)
        rows = self.export_rows(EXPORT_COLUMNS, _cell)
        return export.response(rows, fmt, "activity-log", "Activity log")


def register(admin) -> None:
    admin.add_view(
        ActivityView(
            ConsentEvent,
            db.session,
            name=_l("Activity Log"),
            endpoint="activity",
            url="/admin/activity",
        )
    )
