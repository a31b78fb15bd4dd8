"""The Opt-Out List: search, filters, Add Opt-Out, Opt Back In, exports.

Who (docs/identity.md "Staff roles"): the organization team and site teams; opt-outs are
organization-wide, so a site team sees the whole list and may add an opt-out or send an
opt-back-in confirmation, but the names of people only of its own site, on the list and in
every export. Staff have no opt-out list. Importing a file is the organization
team's (admin/imports.py).

Statuses: the list shows opted-out addresses; bounced ones are a separate status chosen with the Status filter, where an admin can clear the bounce.
Paging never counts the table (simple pager); order is per channel, then address (phones by
their digits, emails alphabetically), which the list index serves.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import abort, flash, g, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla import filters as sqla_filters
from flask_login import current_user
from markupsafe import Markup
from wtforms import BooleanField, RadioField, SelectChoice, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from admin.base import (
    ORG,
    ORG_AND_SITE,
    AdminPageForm,
    SecureModelView,
    admin_actor,
    admin_origin,
    has_role,
    may_clear_bounce,
    require_role,
    site_scope,
)
from admin.exports import ExportJobs, job_rows_limit
from admin.keyset import KeysetPaging
from consent import (
    activity_words,
    export,
    export_jobs,
    ledger,
    notifications,
    optout_list,
    words,
)
from consent.addresses import AddressError, format_phone, normalize_email
from consent.extensions import db
from consent.i18n import gettext as _
from consent.i18n import lazy_gettext as _l
from consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    ImportBatch,
    Role,
    Source,
    Status,
    utcnow,
)
from consent.tenant import current_organization

CHANNEL_OPTIONS = tuple((c.value, words.channel_label(c)) for c in Channel)
STATUS_OPTIONS = tuple((s.value, words.status_label(s)) for s in (Status.OPTED_OUT, Status.BOUNCED))
SOURCE_OPTIONS = tuple((s.value, words.source_label(s)) for s in Source)
CHANNEL_CHOICES = [
    SelectChoice("text", _l("Text messages")),
    SelectChoice("voice", _l("Calls (voice)")),
    SelectChoice("email", _l("Email")),
    SelectChoice("all", _l("All channels that fit the address")),
]


# --- filters --------------------------------------------------------------------------------


class EnumEqual(sqla_filters.FilterEqual):
    """Equal on an enum column, the value read as the enum."""

    def __init__(self, column, name, enum_cls, options):
        super().__init__(column, name, options=options)
        self.enum_cls = enum_cls

    def validate(self, value):
        return value in {m.value for m in self.enum_cls}

    def clean(self, value):
        return self.enum_cls(value)


class DateAddedFrom(sqla_filters.BaseSQLAFilter):
    """Date added on or after a day (YYYY-MM-DD)."""

    def __init__(self, column, name):
        super().__init__(column, name, data_type="datepicker")

    def validate(self, value):
        try:
            self.clean(value)
        except ValueError:
            return False
        return True

    def clean(self, value):
        return datetime.strptime(value.strip(), "%Y-%m-%d")

    def apply(self, query, value, alias=None):
        return query.filter(self.get_column(alias) >= value)

    def operation(self):
        return _l("on or after")


class DateAddedTo(DateAddedFrom):
    """Date added on or before a day (YYYY-MM-DD), the whole day included."""

    def apply(self, query, value, alias=None):
        return query.filter(self.get_column(alias) < value + timedelta(days=1))

    def operation(self):
        return _l("on or before")


STATUS_FILTER = EnumEqual(ConsentState.status, "Status", Status, STATUS_OPTIONS)
FILTERS = [
    STATUS_FILTER,
    EnumEqual(ConsentState.channel, "Channel", Channel, CHANNEL_OPTIONS),
    EnumEqual(ConsentState.source, "Source", Source, SOURCE_OPTIONS),
    DateAddedFrom(ConsentState.changed_at, "Date added"),
    DateAddedTo(ConsentState.changed_at, "Date added"),
    sqla_filters.BooleanEqualFilter(ConsentState.carrier_block, "Carrier block"),
]


# --- forms ----------------------------------------------------------------------------------


class AddOptOutForm(AdminPageForm):
    address = StringField(
        _l("Phone number or email address"), validators=[DataRequired(), Length(max=320)]
    )
    channel = RadioField(_l("Opt out of"), choices=CHANNEL_CHOICES, default="all")
    note = TextAreaField(_l("Note (who asked, and how)"), validators=[Optional(), Length(max=1000)])


class OptBackInForm(AdminPageForm):
    attested = BooleanField(_l("This person asked me to opt them back in"))
    # Only the address itself or an email on the same person's record: the choices come from
    # notifications.confirmation_destinations, and the ledger refuses anything else.
    send_to = RadioField(_l("Send the confirmation to"), validate_choice=False, default="")
    note = TextAreaField(_l("Note"), validators=[Optional(), Length(max=1000)])

    def set_destinations(self, destinations) -> None:
        self.destinations = destinations
        self.send_to.choices = [
            SelectChoice(
                "" if d.channel != Channel.EMAIL or i == 0 else d.to,
                _("A text to %(number)s", number=format_phone(d.to))
                if d.channel == Channel.TEXT
                else _("An email to %(email)s", email=d.to),
            )
            for i, d in enumerate(destinations)
        ]


class UndoForm(AdminPageForm):
    note = TextAreaField(
        _l("Why undo it (kept in the activity log)"),
        validators=[DataRequired(), Length(max=1000)],
    )


class ClearBounceForm(AdminPageForm):
    bounce_note = TextAreaField(_l("Note"), validators=[Optional(), Length(max=1000)])


# --- the view -------------------------------------------------------------------------------


def _address_cell(view, context, model, name):
    text = optout_list.shown(model)
    if model.carrier_block:
        return Markup('{} <span class="badge badge-danger">{}</span>').format(
            text, _("Carrier block (replied STOP)")
        )
    return text


def _manage_cell(view, context, model, name):
    """Opt Back In (or clear a bounce) in words, not an icon with only a tooltip."""
    label = _("Clear bounce…") if model.status == Status.BOUNCED else _("Opt Back In…")
    return Markup('<a class="btn btn-sm btn-outline-primary" href="{}">{}</a>').format(
        url_for(".row_view", id=model.id), label
    )


def _owner_cell(view, context, model, name):
    owners = g.get("optout_owners", {})
    return owners.get((optout_list.kind_of(model.channel), model.address), "")


class OptOutListView(KeysetPaging, ExportJobs, SecureModelView):
    """Every opted-out address of the organization, per channel, with its source and note."""

    roles = ORG_AND_SITE
    list_template = "admin/optouts/list.html"
    can_view_details = False
    simple_list_pager = True
    can_set_page_size = True
    page_size = 50
    named_filter_urls = True
    column_list = (
        "address",
        "channel",
        "status",
        "source",
        "changed_at",
        "changed_by",
        "note",
        "owner",
        "manage",
    )
    column_labels = {
        "manage": _l("Actions"),
        "address": _l("Address"),
        "channel": _l("Channel"),
        "status": _l("Status"),
        "source": _l("Source"),
        "changed_at": _l("Date added"),
        "changed_by": _l("Added by"),
        "note": _l("Note"),
        "owner": _l("Contact or student"),
    }
    column_sortable_list = (
        ("address", ("channel", "sort_key")),
        ("changed_at", "changed_at"),
    )
    column_default_sort = [("channel", False), ("sort_key", False)]
    column_searchable_list = ("address",)
    column_filters = FILTERS
    column_formatters = {
        "address": _address_cell,
        "channel": lambda v, c, m, n: words.channel_label(m.channel),
        "status": lambda v, c, m, n: words.status_label(m.status),
        "source": lambda v, c, m, n: words.source_words(m.source),
        "changed_at": lambda v, c, m, n: words.local_time(m.changed_at, current_organization()),
        "owner": _owner_cell,
        "manage": _manage_cell,
    }
    column_extra_row_actions = []

    # --- the list query ---------------------------------------------------------------------

    def get_query(self):
        org = current_organization()
        return db.session.query(ConsentState).filter(
            ConsentState.organization_id == (org.id if org else None)
        )

    def get_count_query(self):
        org = current_organization()
        return db.session.query(sa.func.count(ConsentState.id)).filter(
            ConsentState.organization_id == (org.id if org else None)
        )

    def _apply_search(self, query, count_query, joins, count_joins, search):
        # The export's search too (optout_list.search_conditions): one rule for both.
        for condition in optout_list.search_conditions(search):
            query = query.filter(condition)
            if count_query is not None:
                count_query = count_query.filter(condition)
        return query, count_query, joins, count_joins

    def keyset_order(self, sort_column, sort_desc):
        """Paged by keyset (admin/keyset.py); (channel, sort_key) is unique: one state per
        address and channel, and an address's sort key is made of it."""
        if sort_column == "changed_at":
            return [(ConsentState.changed_at, sort_desc), (ConsentState.id, sort_desc)]
        desc = bool(sort_desc) and sort_column == "address"
        return [(ConsentState.channel, desc), (ConsentState.sort_key, desc)]

    def _with_default_status(self, filters):
        """Filters, plus "Status: opted out" unless a status was chosen."""
        filters = list(filters or [])
        index = self._filters.index(STATUS_FILTER)
        if not any(idx == index for idx, _name, _value in filters):
            filters.append((index, STATUS_FILTER.name, Status.OPTED_OUT.value))
        return filters

    def get_list(self, page, sort_column, sort_desc, search, filters, execute=True, page_size=None):
        count, data = super().get_list(
            page,
            sort_column,
            sort_desc,
            search,
            self._with_default_status(filters),
            execute=execute,
            page_size=page_size,
        )
        if execute and data:
            g.optout_owners = optout_list.owners_by_address(
                data[0].organization_id, data, site_id=site_scope()
            )
        return count, data

    # --- list action: clear bounces ---------------------------------------------------------

    def is_action_allowed(self, name):
        """Clearing a bounce is the organization team's, here as on the contact page."""
        if name == "clear_bounce" and not may_clear_bounce(current_user):
            return False
        return super().is_action_allowed(name)

    @action("clear_bounce", _l("Clear bounce"), _l("Clear the bounce of the selected addresses?"))
    def action_clear_bounce(self, ids):
        """Clear the bounce of each selected bounced address (through the ledger)."""
        if not may_clear_bounce(current_user):
            abort(403)
        org = current_organization()
        cleared = 0
        for state in self._states(ids):
            outcome = ledger.clear_bounce(
                org, state.channel, state.address, actor=admin_actor(), origin=admin_origin()
            )
            cleared += outcome.changed
        db.session.commit()
        flash(_("Cleared the bounce of %(n)d address(es).", n=cleared), "success")

    def _states(self, ids):
        org = current_organization()
        wanted = [int(i) for i in ids if str(i).isdigit()]
        return db.session.scalars(
            sa.select(ConsentState).where(
                ConsentState.organization_id == org.id, ConsentState.id.in_(wanted)
            )
        ).all()

    # --- pages ------------------------------------------------------------------------------

    def render(self, template, **kwargs):
        kwargs.setdefault("may_import", has_role(*ORG))
        kwargs.setdefault("filter_form", self._filter_form_values())
        kwargs.setdefault("source_options", SOURCE_OPTIONS)
        return super().render(template, **kwargs)

    def _get_list_filter_args(self):
        """Active filters from the URL, in order; the plain form's empty "Any" choices skipped."""
        found = []
        for arg, value in request.args.items():
            if not arg.startswith("flt") or "_" not in arg or value == "":
                continue
            position, key = arg[3:].split("_", 1)
            if key not in self._filter_args:
                continue
            index, flt = self._filter_args[key]
            if flt.validate(value):
                found.append((position, (index, str(flt.name), value)))
            else:
                flash(self.get_invalid_value_msg(value, flt), "error")
        return [item for _position, item in sorted(found, key=lambda f: f[0])]

    def _filter_form_values(self):
        """The no-JavaScript filter form: each filter's URL name and current value."""
        values = {}
        for index, flt in enumerate(self._filters or []):
            arg = self.get_filter_arg(index, flt)
            for key, value in request.args.items():
                if key.startswith("flt") and key.split("_", 1)[-1] == arg:
                    values[arg] = value
        return {
            "values": values,
            "args": [self.get_filter_arg(i, f) for i, f in enumerate(self._filters or [])],
        }

    @expose("/add/", methods=("GET", "POST"))
    def add_view(self):
        """Add Opt-Out: an address, the channels and a note; each channel through the ledger."""
        form = AddOptOutForm()
        if form.validate_on_submit() and request.form.get("confirm") != "yes":
            # One click changes nothing: the page says what will be sent and asks again.
            return self.render(
                "admin/optouts/add.html",
                form=form,
                confirming=True,
                sent=self._sends(form),
                channel_words=None
                if form.channel.data == "all"
                else words.channel_words(form.channel.data),
            )
        if form.validate_on_submit():
            done = self._add(form)
            if done:
                return redirect(url_for(".index_view"))
        return self.render("admin/optouts/add.html", form=form)

    @staticmethod
    def _sends(form) -> list[str]:
        """What the opt-out will send the person, in sentences (said before it is recorded)."""
        address = (form.address.data or "").strip()
        if "@" in address:
            return [words.opt_out_sends(Channel.EMAIL)]
        if form.channel.data == "all":
            return [words.opt_out_sends(Channel.TEXT), words.opt_out_sends(Channel.VOICE)]
        if form.channel.data in ("text", "voice"):
            return [words.opt_out_sends(Channel(form.channel.data))]
        return []

    def _add(self, form) -> bool:
        added = optout_list.add_opt_out(
            current_organization(),
            form.address.data,
            form.channel.data,
            actor=admin_actor(),
            note=form.note.data,
            origin=admin_origin(),
        )
        if added.field_name:
            getattr(form, added.field_name).errors.append(added.error)
            return False
        if not added.ok:
            db.session.rollback()
            flash(added.error, "error")
            return False
        db.session.commit()
        for sentence, kind in added.messages:
            flash(sentence, kind)
        return True

    @expose("/row/<int:id>/", methods=("GET", "POST"))
    def row_view(self, id: int):  # noqa: A002 - Flask-Admin row actions pass "id"
        """One address: Opt Back In (the person confirms), or clear a bounce."""
        state = self._state_or_404(id)
        org = current_organization()
        form = OptBackInForm()
        form.set_destinations(
            notifications.confirmation_destinations(org, state.channel, state.address)
        )
        bounce_form = ClearBounceForm()
        check = ledger.check_opt_back_in(org, state.channel, state.address)
        if request.method == "POST" and request.form.get("do") == "clear_bounce":
            if not may_clear_bounce(current_user):
                abort(403)
            if bounce_form.validate_on_submit():
                outcome = ledger.clear_bounce(
                    org,
                    state.channel,
                    state.address,
                    actor=admin_actor(),
                    origin=admin_origin(),
                    note=(bounce_form.bounce_note.data or "").strip() or None,
                )
                if outcome.refused:
                    flash(outcome.reason, "error")
                else:
                    db.session.commit()
                    flash(
                        _("The bounce of %(who)s is cleared.", who=optout_list.shown(state)),
                        "success",
                    )
                    return redirect(url_for(".index_view"))
        elif request.method == "POST" and form.validate_on_submit():
            sent = self._opt_back_in(org, state, form)
            if sent:
                return redirect(url_for(".index_view"))
        return self.render(
            "admin/optouts/row.html",
            state=state,
            shown=optout_list.shown(state),
            form=form,
            bounce_form=bounce_form,
            check=check,
            owners=optout_list.owners_by_address(org.id, [state], site_id=site_scope()).get(
                (optout_list.kind_of(state.channel), state.address), ""
            ),
            words=words,
            may_clear_bounce=may_clear_bounce(current_user),
        )

    def _opt_back_in(self, org, state, form) -> bool:
        if not form.attested.data:
            form.attested.errors.append(
                _("Tick this box to confirm the person asked you; otherwise nothing is sent.")
            )
            return False
        send_to = None
        if form.send_to.data and state.channel != Channel.EMAIL:
            try:
                send_to = normalize_email(form.send_to.data)
            except AddressError as exc:
                form.send_to.errors.append(_("This is not an email address: %(why)s.", why=exc.why))
                return False
        outcome = ledger.request_opt_back_in(
            org,
            state.channel,
            state.address,
            actor=admin_actor(),
            source=Source.ADMIN,
            attested=True,
            note=(form.note.data or "").strip() or None,
            origin=admin_origin(),
            send_to=send_to,
        )
        if outcome.refused:
            db.session.rollback()
            if outcome.code == "not_their_address":
                form.send_to.errors.append(outcome.reason)
            else:
                flash(outcome.reason, "error")
            return False
        db.session.commit()
        if outcome.code == "already_opted_in":
            flash(_("%(who)s is already opted in.", who=optout_list.shown(state)), "info")
            return True
        to = outcome.event.evidence["sent_to"]
        earlier = next(
            (m for m in outcome.messages or [] if m.event_id not in (None, outcome.event.id)),
            None,
        )
        if earlier is not None:  # at most one a day per address: nothing new went out
            flash(
                _(
                    "Already sent today; the person can use the link sent at %(time)s UTC to "
                    "%(to)s. Nothing new was sent.",
                    time=earlier.created_at.strftime("%H:%M"),
                    to=words.shown_address(to),
                ),
                "info",
            )
            return True
        how = _("by email") if "@" in to else _("by text message")
        shown = words.shown_address(to)
        flash(
            _(
                "We sent a confirmation link %(how)s to %(to)s. Nothing changes until they "
                "confirm: %(who)s stays opted out of %(what)s until then.",
                how=how,
                to=shown,
                who=optout_list.shown(state),
                what=words.channel_words(state.channel),
            ),
            "success",
        )
        return True

    def _state_or_404(self, state_id: int) -> ConsentState:
        org = current_organization()
        state = db.session.get(ConsentState, state_id)
        if state is None or org is None or state.organization_id != org.id:
            abort(404)
        return state

    # --- undo a mistaken opt-out (the organization team) ----------------------------------

    @expose("/undo/<int:event_id>/", methods=("GET", "POST"))
    def undo_view(self, event_id: int):
        """Undo one opt-out an admin or an import recorded: GET says what will happen, POST
        (with a note) asks the ledger to put the address back as it was. Nothing is sent."""
        require_role(Role.ORG)
        org = current_organization()
        event = db.session.get(ConsentEvent, event_id)
        if event is None or event.organization_id != org.id:
            abort(404)
        form = UndoForm()
        if form.validate_on_submit():
            outcome = ledger.revert(
                org,
                event.id,
                actor=admin_actor(),
                note=form.note.data.strip(),
                origin=admin_origin(),
            )
            if outcome.refused:
                db.session.rollback()
                flash(outcome.reason, "error")
            else:
                db.session.commit()
                flash(
                    _(
                        "Undone: %(who)s is back to “%(status)s” for %(what)s. Nothing was "
                        "sent to the person.",
                        who=words.shown_address(event.address),
                        status=words.status_label(outcome.state.status),
                        what=(
                            activity_words.channel_of(event)
                            if event.purpose_id is not None
                            else words.channel_words(event.channel)
                        ),
                    ),
                    "success",
                )
                return redirect(url_for("activity.index_view"))
        state = ledger.state_of_event(org, event)
        refusal = ledger.check_revert(org, event, state, utcnow())
        return self.render(
            "admin/optouts/undo.html",
            event=event,
            refusal=refusal,
            form=form,
            words=words,
            shown=words.shown_address(event.address),
            about=activity_words.channel_of(event),
            batch=None,
            current_org=org,
        )

    @expose("/undo-import/<int:batch_id>/", methods=("GET", "POST"))
    def undo_batch_view(self, batch_id: int):
        """Undo every opt-out of one import batch that nothing has changed since."""
        require_role(Role.ORG)
        org = current_organization()
        batch = db.session.get(ImportBatch, batch_id)
        if batch is None or batch.organization_id != org.id:
            abort(404)
        form = UndoForm()
        if form.validate_on_submit():
            result = ledger.revert_batch(
                org,
                batch.id,
                actor=admin_actor(),
                note=form.note.data.strip(),
                origin=admin_origin(),
            )
            db.session.commit()
            flash(
                _(
                    "Undone: %(n)d opt-out(s) of %(file)s put back as they were; nothing was "
                    "sent to anyone.",
                    n=result.reverted,
                    file=batch.filename,
                ),
                "success",
            )
            if result.refused:
                flash(
                    _(
                        "%(n)d row(s) were left as they are: %(why)s",
                        n=len(result.refused),
                        why="; ".join(
                            f"{words.shown_address(a)}: {why}" for a, why in result.refused[:20]
                        ),
                    ),
                    "warning",
                )
            return redirect(url_for("activity.index_view"))
        events = ledger.batch_events(org, batch.id)
        now = utcnow()
        may = [
            e
            for e in events
            if ledger.check_revert(org, e, ledger.current(org, e.channel, e.address), now) is None
        ]
        return self.render(
            "admin/optouts/undo.html",
            event=None,
            batch=batch,
            total=len(events),
            may=len(may),
            refusal=None,
            form=form,
            words=words,
        )

    # --- exports ----------------------------------------------------------------------------

    @expose("/export.<fmt>")
    def export_view(self, fmt: str):
        """The list as shown (search, filters and sort applied), as CSV (streamed) or XLSX; a
        background job when it has more than EXPORT_JOB_ROWS rows."""
        if fmt not in export.FORMATS:
            abort(404)
        org = current_organization()
        params = self._export_params()
        big = export_jobs.more_than(export_jobs.list_statement(org, params), job_rows_limit())
        return self.export("opt-outs", fmt, export.dated("opt-outs"), params, big=big)

    def _export_params(self) -> dict:
        """The list's search, filters and sort as the export job's params (plain values)."""
        view_args = self._get_list_extra_args()
        sort = self._get_column_by_idx(view_args.sort)
        filters: dict[str, list[str]] = {}  # every filter the list applies, two of a kind too
        for index, _name, value in view_args.filters or []:
            filters.setdefault(optout_list.LIST_FILTERS[index], []).append(value)
        return {
            "search": view_args.search or "",
            "filters": filters,
            "sort": sort[0] if sort else None,
            "desc": bool(view_args.sort_desc),
            "site_id": site_scope(),
        }

    @expose("/export-people.<fmt>")
    def export_people_view(self, fmt: str):
        """Seed 002's export: each contact's and student's opted-out numbers, with ID and type."""
        if fmt not in export.FORMATS:
            abort(404)
        org = current_organization()
        opted_out = sa.select(ConsentState.id).where(
            ConsentState.organization_id == org.id,
            ConsentState.status == Status.OPTED_OUT,
            ConsentState.channel.in_([Channel.TEXT, Channel.VOICE]),
        )
        big = export_jobs.more_than(opted_out, job_rows_limit())
        params = {"site_id": site_scope()}
        filename = export.dated("opted-out-numbers")
        return self.export("opted-out-numbers", fmt, filename, params, big=big)


def register(admin) -> None:
    admin.add_view(
        OptOutListView(
            ConsentState,
            db,
            name="Opt-Out List",
            endpoint="optouts",
            url="/admin/optouts",
        )
    )
