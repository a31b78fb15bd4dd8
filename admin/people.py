"""Contacts and Students: search, each address's status per channel, the staff toggles through
the ledger, editing the record's phones and emails (consent/records.py, with the Text Opt-In
checkbox beside a cell; docs/rules.md "Staff entry"), and each record's own activity log."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_babel import get_locale
from flask_login import current_user
from wtforms import BooleanField, HiddenField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, Length, Optional, Regexp

from admin import record_forms as forms_module
from admin.base import (
    ALL_ADMINS,
    AdminPageForm,
    SecureView,
    admin_actor,
    admin_origin,
    may_clear_bounce,
)
from admin.record_forms import RemoveForm
from consent import (
    activity_words,
    ledger,
    notifications,
    people,
    purpose_choices,
    purposes,
    records,
    words,
)
from consent.addresses import format_phone
from consent.extensions import db
from consent.i18n import gettext as _
from consent.i18n import lazy_gettext as _l
from consent.models import Channel, Role, Source, Status
from consent.status import StatusBook, address_rows, pending_confirmations
from consent.tenant import current_organization

ACTIONS = ("opt_out", "opt_back_in", "clear_bounce")


class ConsentActionForm(AdminPageForm):
    """One toggle of one address on one channel: opt out, ask to opt back in, clear a bounce."""

    address = HiddenField(validators=[DataRequired()])
    channel = HiddenField(validators=[AnyOf([c.value for c in Channel])])
    action = HiddenField(validators=[AnyOf(ACTIONS)])
    note = TextAreaField(_l("Note"), validators=[Optional(), Length(max=1000)])
    attested = BooleanField(_l("This person asked me to opt them back in"))


class PurposeOptOutForm(AdminPageForm):
    """A purpose opt-out of one address on one channel, recorded by staff (never an opt-in)."""

    address = HiddenField(validators=[DataRequired()])
    channel = HiddenField(validators=[AnyOf([c.value for c in Channel])])
    purpose = HiddenField(validators=[DataRequired(), Regexp(r"^[0-9]{1,9}$")])
    note = TextAreaField(_l("Note"), validators=[Optional(), Length(max=1000)])


def may_change(user) -> bool:
    """Organization and site teams use the toggles; staff only read."""
    return user.role in (Role.ORG, Role.SITE)


class PeopleView(SecureView):
    """What the contact and student pages share."""

    roles = ALL_ADMINS
    kind = "contact"
    list_template = "admin/people_list.html"
    details_template = "admin/people_details.html"

    def find(self, user, query, page, include_inactive=False):
        raise NotImplementedError

    def get(self, user, record_id):
        raise NotImplementedError

    @expose("/")
    def index(self):
        """The list: search by name, phone or email; each address's status per channel."""
        org = current_organization()
        query = request.args.get("q", "")[:200]
        page = request.args.get("page", 1, type=int) or 1
        inactive = request.args.get("inactive") == "1"  # people gone from the roster too
        results = self.find(current_user, query, page, include_inactive=inactive)
        book = StatusBook.for_people(org.id, results.rows)
        rows = [(person, address_rows(person, book)) for person in results.rows]
        pending = pending_confirmations(
            org.id, book.states, [r.address for _p, addresses in rows for r in addresses]
        )
        return self.render(
            self.list_template,
            pending=pending,
            words=words,
            org=org,
            results=results,
            rows=rows,
            query=query,
            kind=self.kind,
            inactive=inactive,
        )

    @expose("/<int:record_id>/")
    def details(self, record_id: int):
        """One record: its addresses with their status per channel, the toggles, its log."""
        return self._details(self._record(record_id))

    def _details(self, person, failed: tuple[str, object] | None = None, status: int = 200):
        """The record page; `failed` is (form key, bound form) of an edit to show again."""
        org = current_organization()
        book = StatusBook.for_people(org.id, [person])
        forms = record_forms_for(person, book) if may_change(current_user) else {}
        if failed is not None:
            forms[failed[0]] = failed[1]
        events = people.events_of(org.id, person)
        rows = address_rows(person, book)
        org_purposes = purposes.of(org)
        cells = [(s.channel, r.address) for r in rows for s in r.statuses]
        page = self.render(
            self.details_template,
            person=person,
            kind=self.kind,
            rows=rows,
            events=events,
            pending=pending_confirmations(
                org.id, book.states, [r.address for r in address_rows(person, book)]
            ),
            activity_words=activity_words,
            words=words,
            revertible=ledger.REVERTIBLE_SOURCES,
            may_undo=current_user.role == Role.ORG,
            may_change=may_change(current_user),
            may_clear_bounce=may_clear_bounce(current_user),
            block_reason=words.carrier_block_reason(org),
            texting_number=format_phone(org.texting_number),
            org=org,
            form=ConsentActionForm(),
            record_forms=forms,
            failed=failed[0] if failed else None,
            phone_ids={p.number: p.id for p in person.phones},
            email_ids={e.address: e.id for e in person.emails},
            org_purposes=org_purposes,
            purpose_table=purpose_choices.table_for(
                org, cells, book.states, _locale(), org_purposes, for_staff=True
            ),
            purpose_locale=_locale(),
        )
        return page, status

    @expose("/<int:record_id>/purpose", methods=("POST",))
    def purpose(self, record_id: int):
        """Record that the person asked to stop one kind of message on one channel (a purpose
        opt-out through the ledger, source admin); only when the organization lets admins
        record opt-outs, and never an opt-in."""
        if not may_change(current_user):
            abort(403)
        org = current_organization()
        person = self._record(record_id)
        form = PurposeOptOutForm()
        if not form.validate():
            flash(_("That change could not be made: the form was incomplete."), "error")
            return redirect(url_for(".details", record_id=record_id))
        address, channel = form.address.data, Channel(form.channel.data)
        kind = people.addresses_of(person).get(address)
        if kind is None or (kind == "email") != (channel == Channel.EMAIL):
            abort(404)
        phone_kind = next((p.kind.value for p in person.phones if p.number == address), None)
        if channel == Channel.TEXT and phone_kind in LANDLINE_KINDS:
            abort(404)  # texts are not offered to a landline
        purpose = purposes.by_id(org, int(form.purpose.data))
        if purpose is None:
            abort(404)
        note = (form.note.data or "").strip() or None
        refusal = ledger.check_purpose(org, purpose, channel, Status.OPTED_OUT, Source.ADMIN)
        if refusal is None and request.form.get("confirm") != "yes":
            # One click changes nothing: the channel opt-out's confirm step, for a purpose.
            name = purpose.name(_locale())
            return self.render(
                "admin/people_confirm_opt_out.html",
                person=person,
                address=address,
                shown=words.shown_address(address),
                channel=channel,
                note=note or "",
                purpose=purpose,
                purpose_name=name,
                sent=words.purpose_opt_out_sends(name, channel),
                words_channel=words.channel_words(channel),
            )
        done = purpose_choices.change(
            org,
            channel,
            address,
            purpose,
            False,
            source=Source.ADMIN,
            actor=admin_actor(),
            origin=admin_origin(),
            note=note,
            locale=_locale(),
        )
        if done.ok:
            db.session.commit()
            flash(done.message, "success" if done.outcome and done.outcome.changed else "info")
        else:
            db.session.rollback()
            flash(done.message, "error")
        return redirect(url_for(".details", record_id=record_id) + "#purposes")

    # --- editing the record: phones and emails (consent only through the ledger) -----------

    @expose("/<int:record_id>/phones/", methods=("POST",))
    def add_phone(self, record_id: int):
        """Add a phone; a ticked Text Opt-In on a cell is a staff entry."""
        person = self._editable(record_id)
        form = forms_module.new_phone_form(request.form)
        return self._edit(
            person,
            "new-phone",
            form,
            lambda: records.add_phone(
                current_organization(),
                person,
                number=form.number.data,
                kind=form.kind.data,
                text_opt_in=bool(form.text_opt_in.data),
                by=_staff(),
            ),
        )

    @expose("/<int:record_id>/phones/<int:phone_id>/", methods=("POST",))
    def change_phone(self, record_id: int, phone_id: int):
        """Correct a phone's number or type; tick or untick its Text Opt-In."""
        person = self._editable(record_id)
        phone = _one(person.phones, phone_id)
        form = forms_module.phone_form(phone, None, request.form)
        return self._edit(
            person,
            f"phone-{phone.id}",
            form,
            lambda: records.change_phone(
                current_organization(),
                person,
                phone.id,
                number=form.number.data,
                kind=form.kind.data,
                text_opt_in=bool(form.text_opt_in.data),
                note=form.note.data,
                by=_staff(),
            ),
        )

    @expose("/<int:record_id>/phones/<int:phone_id>/remove", methods=("POST",))
    def remove_phone(self, record_id: int, phone_id: int):
        """Take a phone off the record (its consent stays in the ledger)."""
        person = self._editable(record_id)
        phone = _one(person.phones, phone_id)
        return self._edit(
            person,
            "remove",
            RemoveForm(),
            lambda: records.remove_phone(current_organization(), person, phone.id),
        )

    @expose("/<int:record_id>/emails/", methods=("POST",))
    def add_email(self, record_id: int):
        """Add an email address."""
        person = self._editable(record_id)
        form = forms_module.new_email_form(request.form)
        return self._edit(
            person,
            "new-email",
            form,
            lambda: records.add_email(current_organization(), person, address=form.address.data),
        )

    @expose("/<int:record_id>/emails/<int:email_id>/", methods=("POST",))
    def change_email(self, record_id: int, email_id: int):
        """Correct an email address."""
        person = self._editable(record_id)
        email = _one(person.emails, email_id)
        form = forms_module.email_form(email, request.form)
        return self._edit(
            person,
            f"email-{email.id}",
            form,
            lambda: records.change_email(
                current_organization(), person, email.id, address=form.address.data
            ),
        )

    @expose("/<int:record_id>/emails/<int:email_id>/remove", methods=("POST",))
    def remove_email(self, record_id: int, email_id: int):
        """Take an email off the record (its consent stays in the ledger)."""
        person = self._editable(record_id)
        email = _one(person.emails, email_id)
        return self._edit(
            person,
            "remove",
            RemoveForm(),
            lambda: records.remove_email(current_organization(), person, email.id),
        )

    def _editable(self, record_id: int):
        if not may_change(current_user):
            abort(403)
        return self._record(record_id)

    def _edit(self, person, key: str, form, edit):
        """Validate, call the core, commit and say what happened; or show the form again."""
        if form.validate():
            try:
                done = edit()
            except records.RecordError as refusal:
                db.session.rollback()
                getattr(form, refusal.field).errors.append(refusal.message)
            else:
                db.session.commit()
                for category, words in done.messages:
                    flash(words, category)
                return redirect(url_for(".details", record_id=person.id))
        flash(_("That change could not be made: see the form below. Nothing was saved."), "error")
        return self._details(self._record(person.id), (key, form), 422)

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
        phone_kind = next((p.kind.value for p in person.phones if p.number == address), None)
        if action == "opt_back_in" and channel == Channel.TEXT and phone_kind in LANDLINE_KINDS:
            flash(
                _(
                    "%(address)s is a %(kind)s phone: texts are not offered to it.",
                    address=shown,
                    kind=words.phone_kind_words(phone_kind),
                ),
                "error",
            )
            return redirect(url_for(".details", record_id=record_id))
        if action == "opt_out" and request.form.get("confirm") != "yes":
            # One click changes nothing: the page says what will happen and asks again.
            return self.render(
                "admin/people_confirm_opt_out.html",
                person=person,
                address=address,
                shown=shown,
                channel=channel,
                note=note or "",
                sent=words.opt_out_sends(channel),
                form=form,
                words_channel=words.channel_words(channel),
                channel_name=words.channel_name(channel),
            )
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
            send_to = None
            if (
                phone_kind in LANDLINE_KINDS
            ):  # never a text to a landline: an email on record, or none
                emails = [
                    d.to
                    for d in notifications.confirmation_destinations(org, channel, address)
                    if d.channel == Channel.EMAIL
                ]
                if not emails:
                    flash(
                        _(
                            "%(address)s is a %(kind)s phone, and the person has no email on "
                            "record to confirm by: nothing was sent.",
                            address=shown,
                            kind=words.phone_kind_words(phone_kind),
                        ),
                        "error",
                    )
                    return redirect(url_for(".details", record_id=record_id))
                send_to = emails[0]
            outcome = ledger.request_opt_back_in(
                org,
                channel,
                address,
                source=Source.ADMIN,
                actor=actor,
                attested=bool(form.attested.data),
                note=note,
                origin=origin,
                send_to=send_to,
                language=getattr(person, "language", None) or "en",
            )
            sent_to = outcome.event.evidence["sent_to"] if outcome.event else address
            done = confirmation_words(outcome, sent_to)
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


LANDLINE_KINDS = ("home", "work")


def _locale() -> str:
    return str(get_locale() or "en")


def confirmation_words(outcome, sent_to: str) -> str:
    """What asking for a confirmation did, truthfully: a new link, or the one sent earlier
    today (at most one a day per address: the outbox kept the earlier message)."""
    shown = words.shown_address(sent_to)
    earlier = next(
        (
            m
            for m in outcome.messages or []
            if outcome.event is not None and m.event_id not in (None, outcome.event.id)
        ),
        None,
    )
    if earlier is not None:
        return _(
            "Already sent today; the person can use the link sent at %(time)s UTC to %(to)s. "
            "Nothing new was sent.",
            time=earlier.created_at.strftime("%H:%M"),
            to=shown,
        )
    return _(
        "A confirmation was sent to %(address)s. It is opted in only when the person confirms.",
        address=shown,
    )


def record_forms_for(person, book: StatusBook) -> dict[str, object]:
    """The edit forms of a record page: one per phone and email, and the two "add" forms."""
    forms: dict[str, object] = {
        "new-phone": forms_module.new_phone_form(),
        "new-email": forms_module.new_email_form(),
    }
    for phone in person.phones:
        state = book.shown(Channel.TEXT, phone.number).state
        forms[f"phone-{phone.id}"] = forms_module.phone_form(phone, state.status if state else None)
    for email in person.emails:
        forms[f"email-{email.id}"] = forms_module.email_form(email)
    return forms


def _one(items, item_id: int):
    """The phone or email of this record with that id, else 404."""
    item = next((i for i in items if i.id == item_id), None)
    if item is None:
        abort(404)
    return item


def _staff() -> records.Staff:
    return records.Staff(admin_actor(), admin_origin())


class ContactsView(PeopleView):
    """Contacts (guardians): Parent 1-4 of each family."""

    kind = "contact"

    def find(self, user, query, page, include_inactive=False):
        return people.find_contacts(user, query, page, include_inactive=include_inactive)

    def get(self, user, record_id):
        return people.get_contact(user, record_id)


class StudentsView(PeopleView):
    """Students, each at a site."""

    kind = "student"

    def find(self, user, query, page, include_inactive=False):
        return people.find_students(user, query, page, include_inactive=include_inactive)

    def get(self, user, record_id):
        return people.get_student(user, record_id)


def register(admin) -> None:
    admin.add_view(ContactsView(name=_l("Contacts"), endpoint="contacts", url="/admin/contacts"))
    admin.add_view(StudentsView(name=_l("Students"), endpoint="students", url="/admin/students"))
