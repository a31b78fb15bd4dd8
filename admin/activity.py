"""The Activity Log: every consent event, newest first, with filters and export. Read-only:
events are never edited or deleted, here or anywhere."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import abort, request, url_for
from flask_admin import expose
from flask_admin.contrib.sqla.filters import BaseSQLAFilter, FilterEqual, FilterLike
from markupsafe import Markup

from admin.base import ORG
from admin.exports import ExportJobs, job_rows_limit
from admin.keyset import KeysetPaging
from admin.readonly import ReadOnlyModelView
from consent import activity_log, activity_words, export_jobs, ledger, words
from consent.extensions import db
from consent.i18n import gettext as _
from consent.i18n import lazy_gettext as _l
from consent.models import Channel, ConsentEvent, Source, Status
from consent.tenant import current_organization


class AddressFilter(FilterEqual):
    """An address as staff type it: a phone any way (to E.164) or an email (any case)."""

    def apply(self, query, value, alias=None):
        return query.filter(self.get_column(alias) == activity_log.address_of(value))


class DayFilter(BaseSQLAFilter):
    """Events on or after (`after=True`) or on or before a day typed as YYYY-MM-DD."""

    def __init__(self, column, name, after: bool):
        super().__init__(column, name)
        self.after = after

    def validate(self, value):
        return activity_log.day(value) is not None or not value.strip()

    def clean(self, value):
        return activity_log.day(value)

    def apply(self, query, value, alias=None):
        column = self.get_column(alias)
        if self.after:
            return query.filter(column >= value)
        return query.filter(column < value + timedelta(days=1))

    def operation(self):
        return "on or after" if self.after else "on or before"


def _when(value: datetime) -> Markup:
    """A time in the district's zone, UTC on hover (the export keeps UTC)."""
    return words.local_time(value, current_organization())


def _evidence_cell(event: ConsentEvent) -> Markup:
    """The evidence in words, and an Undo link where the ledger would allow it."""
    text = Markup.escape(activity_words.evidence_words(event))
    if (
        event.kind == "change"
        and event.to_status == Status.OPTED_OUT
        and event.source in ledger.REVERTIBLE_SOURCES
    ):
        links = [
            Markup('<a href="{}">{}</a>').format(
                url_for("optouts.undo_view", event_id=event.id), _("Undo this opt-out")
            )
        ]
        batch = (event.evidence or {}).get("batch")
        if event.source == Source.IMPORT and isinstance(batch, int):
            links.append(
                Markup('<a href="{}">{}</a>').format(
                    url_for("optouts.undo_batch_view", batch_id=batch), _("Undo the whole import")
                )
            )
        text = Markup("{} {}").format(text, Markup(" · ").join(links))
    return text


def _options(enum_cls):
    return [(member.value, member.value) for member in enum_cls]


def _status_words(view, context, model, name):
    value = getattr(model, name)
    return value.value if value is not None else "—"


class ActivityView(KeysetPaging, ExportJobs, ReadOnlyModelView):
    """Every consent event of the organization, newest first (no COUNT on each page; paged by
    keyset, admin/keyset.py: the 1,000th page as fast as the first)."""

    roles = ORG
    simple_list_pager = True
    page_size = 50
    can_set_page_size = False
    column_default_sort = ("id", True)
    column_list = (
        "occurred_at",
        "address",
        "change",
        "actor_label",
        "note",
        "evidence",
    )
    column_sortable_list = ("occurred_at",)
    column_labels = {
        "occurred_at": _l("When"),
        "from_status": _l("From"),
        "to_status": _l("To"),
        "actor_label": _l("By"),
        "carrier_block": _l("Carrier block"),
        "change": _l("Change"),
        "evidence": _l("Evidence"),
        "address": _l("Address"),
        "note": _l("Note"),
    }
    named_filter_urls = True
    # Plain strings: Flask-Admin reads filter names while the app is built, outside a request.
    column_filters = (
        AddressFilter(ConsentEvent.address, "Address"),
        FilterEqual(ConsentEvent.channel, "Channel", options=_options(Channel)),
        FilterEqual(ConsentEvent.source, "Source", options=_options(Source)),
        FilterLike(ConsentEvent.actor_label, "By"),
        DayFilter(ConsentEvent.occurred_at, "Date", after=True),
        DayFilter(ConsentEvent.occurred_at, "Date", after=False),
        FilterEqual(
            ConsentEvent.kind, "Kind", options=[("change", "change"), ("request", "request")]
        ),
    )
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
        "occurred_at": lambda v, c, m, n: _when(m.occurred_at),
        "address": lambda v, c, m, n: words.shown_address(m.address),
        "change": lambda v, c, m, n: activity_words.change_words(m),
        "evidence": lambda v, c, m, n: _evidence_cell(m),
        "from_status": _status_words,
        "to_status": _status_words,
        "channel": _status_words,
        "source": _status_words,
    }
    list_template = "admin/activity_list.html"

    def render(self, template, **kwargs):
        if template == self.list_template:
            kwargs["filter_keys"] = self.filter_keys()
            kwargs["channels"] = [(c.value, words.channel_label(c)) for c in Channel]
            kwargs["sources"] = [(s.value, words.source_label(s)) for s in Source]
            kwargs["args"] = request.args
        return super().render(template, **kwargs)

    def keyset_order(self, sort_column, sort_desc):
        if sort_column == "occurred_at":
            return [(ConsentEvent.occurred_at, sort_desc), (ConsentEvent.id, sort_desc)]
        return [(ConsentEvent.id, True)]

    def _get_list_filter_args(self):
        # The plain (no-JavaScript) filter form sends every field, the empty ones too.
        filters = super()._get_list_filter_args()
        return [f for f in filters if str(f[2]).strip()] if filters else filters

    def filter_keys(self) -> dict[str, str]:
        """{"address", "channel", "source", "by", "from", "to", "kind"}: URL names of the filters."""
        names = activity_log.FILTERS
        return {
            name: self.get_filter_arg(index, flt)
            for name, (index, flt) in zip(names, enumerate(self._filters), strict=True)
        }

    def get_query(self):
        org = current_organization()
        return super().get_query().filter(ConsentEvent.organization_id == org.id)

    def get_one(self, id):
        org = current_organization()
        event = db.session.get(ConsentEvent, id)
        return event if event is not None and event.organization_id == org.id else None

    @expose("/download/<fmt>/")
    def download(self, fmt: str):
        """The log under the current filters, as CSV or XLSX; a background job when it has
        more than EXPORT_JOB_ROWS events."""
        if fmt not in ("csv", "xlsx"):
            abort(404)
        org = current_organization()
        params = self._export_params()
        stmt = export_jobs.activity_statement(org, params)
        big = export_jobs.more_than(stmt, job_rows_limit())
        return self.export("activity-log", fmt, "activity-log", params, big=big)

    def _export_params(self) -> dict:
        """The log's filters and sort as the export job's params (plain values)."""
        view_args = self._get_list_extra_args()
        names = dict(enumerate(activity_log.FILTERS))
        filters = {names[index]: value for index, _name, value in view_args.filters or []}
        sort = self._get_column_by_idx(view_args.sort)
        if sort is None:
            return {"filters": filters, "sort": None, "desc": True}
        return {"filters": filters, "sort": sort[0], "desc": bool(view_args.sort_desc)}


def register(admin) -> None:
    admin.add_view(
        ActivityView(
            ConsentEvent,
            db,
            name=_l("Activity Log"),
            endpoint="activity",
            url="/admin/activity",
        )
    )
