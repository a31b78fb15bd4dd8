"""Contacts and Students: search, each address's status per channel, the
staff toggles through the ledger, and each record's own activity log."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import BooleanField, HiddenField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, Length, Optional

from admin.base import ALL_ADMINS, AdminPageForm, SecureView, admin_actor, admin_origin
from consent import ledger, people, words
from consent.addresses import format_phone
from consent.extensions import db
from consent.models import Channel, Role, Source
from consent.status import StatusBook, address_rows
from consent.tenant import current_organization

ACTIONS = ("opt_out", "opt_back_in", "clear_bounce")


class ConsentActionForm(AdminPageForm):
    """One toggle of one address on one channel: opt out, ask to opt back in, clear a bounce."""

    address = HiddenField(validators=[DataRequired()])
    channel = HiddenField(validators=[AnyOf([c.value for c in Channel])])
    action = HiddenField(validators=[AnyOf(ACTIONS)])
    note = TextAreaField(_l("Note"), validators=[Optional(), Length(max=1000)])
    attested = BooleanField(_l("This person asked me to opt them back in"))


def may_change(user) -> bool:
    """Organization and site teams use the toggles; staff only read."""
    return user.role in (Role.ORG, Role.SITE)


def may_clear_bounce(user) -> bool:
    """Only the organization team clears a bounce."""
    return user.role == Role.ORG


class PeopleView(SecureView):
    """What the contact and student pages share."""

    roles = ALL_ADMINS
    kind = "contact"
    list_template = "admin/people_list.html"
    details_template = "admin/people_details.html"

    def find(self, user, query, page):
        raise NotImplementedError

    def get(self, user, record_id):
        raise NotImplementedError

    @expose("/")
    def index(self):
        """The list: search by name, phone or email; each address's status per channel."""
        org = current_organization()
        query = request.args.get("q", "")[:200]
        page = request.args.get("page", 1, type=int) or 1
        results = self.find(current_user, query, page)
        book = StatusBook.for_people(org.id, results.rows)
        rows = [(person, address_rows(person, book)) for person in results.rows]
        return self.render(
            self.list_template, results=results, rows=rows, query=query, kind=self.kind
        )

    @expose("/<int:record_id>/")
    def details(self, record_id: int):
        """One record: its addresses with their status per channel, the toggles, its log."""
        org = current_organization()
        person = self._record(record_id)
        book = StatusBook.for_people(org.id, [person])
        return self.render(
            self.details_template,
            person=person,
            kind=self.kind,
            rows=address_rows(person, book),
            events=people.events_of(org.id, person),
            may_change=may_change(current_user),
            may_clear_bounce=may_clear_bounce(current_user),
            block_reason=words.carrier_block_reason(org),
            texting_number=format_phone(org.texting_number),
            org=org,
            form=ConsentActionForm(),
        )

    @expose("/<int:record_id>/consent", methods=("POST",))
    def consent(self, record_id: int):
        """A toggle: turning off opts out; turning on sends the person a confirmation."""
        if not may_change(current_user):
            abort(403)
        org = current_organization()
        person = self._record(record_id)
        form = ConsentActionForm()
        if not form.validate():
            flash(_("That change could not be made: the form was incomplete."), "error")
            return redirect(url_for(".details", record_id=record_id))
        address, channel, action = form.address.data, Channel(form.channel.data), form.action.data
        kind = people.addresses_of(person).get(address)
        if kind is None or (kind == "email") != (channel == Channel.EMAIL):
            abort(404)
        if action == "clear_bounce" and not may_clear_bounce(current_user):
            abort(403)
        note = (form.note.data or "").strip() or None
        actor = admin_actor()
        origin = admin_origin()
        shown = words.shown_address(address)
        if action == "opt_out":
            outcome = ledger.opt_out(
                org, channel, address, source=Source.ADMIN, actor=actor, note=note, origin=origin
            )
            done = _(
                "%(address)s is opted out of %(channel)s.",
                address=shown,
                channel=words.channel_words(channel),
            )
        elif action == "opt_back_in":
            outcome = ledger.request_opt_back_in(
                org,
                channel,
                address,
                source=Source.ADMIN,
                actor=actor,
                attested=bool(form.attested.data),
                note=note,
                origin=origin,
                language=getattr(person, "language", None) or "en",
            )
            done = _(
                "A confirmation was sent to %(address)s. It is opted in only when the person "
                "confirms.",
                address=shown,
            )
        else:
            outcome = ledger.clear_bounce(
                org, channel, address, source=Source.ADMIN, actor=actor, note=note, origin=origin
            )
            done = _("The bounce on %(address)s is cleared.", address=shown)
        if outcome.refused:
            db.session.rollback()
            flash(outcome.reason, "error")
        else:
            db.session.commit()
            if outcome.code == "already_opted_in":
                flash(_("%(address)s is already opted in.", address=shown), "info")
            elif outcome.changed or outcome.code == "confirmation_sent":
                flash(done, "success")
            else:
                flash(_("Nothing changed: that was already the status."), "info")
        return redirect(url_for(".details", record_id=record_id))

    def _record(self, record_id: int):
        person = self.get(current_user, record_id)
        if person is None:
            abort(404)
        return person


class ContactsView(PeopleView):
    """Contacts (guardians): Parent 1-4 of each family."""

    kind = "contact"

    def find(self, user, query, page):
        return people.find_contacts(user, query, page)

    def get(self, user, record_id):
        return people.get_contact(user, record_id)


class StudentsView(PeopleView):
    """Students, each at a site."""

    kind = "student"

    def find(self, user, query, page):
        return people.find_students(user, query, page)

    def get(self, user, record_id):
        return people.get_student(user, record_id)


def register(admin) -> None:
    admin.add_view(ContactsView(name=_l("Contacts"), endpoint="contacts", url="/admin/contacts"))
    admin.add_view(StudentsView(name=_l("Students"), endpoint="students", url="/admin/students"))
