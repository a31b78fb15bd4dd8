"""Pages reached from signed links (confirm, preferences, unsubscribe) and the public
opt-back-in page. GET shows a page and a button; only POST changes anything."""

from __future__ import annotations

from flask import Blueprint, abort, flash, render_template, request
from flask_babel import get_locale

from consent import choices, signed_links
from consent.addresses import format_phone
from consent.extensions import csrf, db, limiter
from consent.i18n import gettext as _
from consent.tenant import current_organization
from consent.tokens import TokenError
from consent.web import request_origin
from portal.links_forms import ButtonForm, OptBackInForm, PreferencesForm, PurposeChoiceForm

bp = Blueprint("links", __name__)

PUBLIC_FORM_LIMIT = "10 per minute; 50 per hour"
LINK_LIMIT = "30 per minute; 300 per hour"
# Big mail providers send RFC 8058 POSTs for many people from few addresses.
ONE_CLICK_LIMIT = "300 per minute"
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"


def _bad_link(error: TokenError, purpose: str):
    org = current_organization()
    page = render_template("portal/links/bad_link.html", kind=error.kind, purpose=purpose, org=org)
    return page, error.status_code


def _is_one_click() -> bool:
    """Is this an RFC 8058 one-click POST (urlencoded or multipart form, or a bare body)?"""
    if request.method != "POST":
        return False
    if request.form.get("List-Unsubscribe") == "One-Click":
        return True
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return False
    return request.get_data(as_text=True).strip() == ONE_CLICK_BODY


@bp.errorhandler(429)
def too_many(_error):
    """A plain page when someone asks too often."""
    return render_template("portal/links/too_many.html"), 429


@bp.route("/opt-back-in", methods=["GET", "POST"])
@limiter.limit(PUBLIC_FORM_LIMIT, methods=["POST"])
def opt_back_in():
    """Ask for a confirmation link to opt back in: the same answer whatever is on record."""
    org = current_organization()
    if org is None:
        abort(404)
    form = OptBackInForm(region=org.default_region or "US")
    if form.validate_on_submit():
        signed_links.request_from_public(
            org,
            form.channel.data,
            form.normalized,
            origin=request_origin(),
            language=str(get_locale() or "en"),
        )
        db.session.commit()
        return render_template(
            "portal/links/opt_back_in_sent.html",
            org=org,
            channel=form.channel.data,
            entered=form.address.data.strip(),
            texting_number=format_phone(org.texting_number),
            help_contact=org.help_contact or org.notification_email,
        )
    return render_template(
        "portal/links/opt_back_in.html",
        form=form,
        org=org,
        texting_number=format_phone(org.texting_number),
    )


@bp.route("/confirm/<token>", methods=["GET", "POST"])
@limiter.limit(LINK_LIMIT)
def confirm(token: str):
    """Show "Confirm that you want to receive …" and a button; the POST opts back in."""
    try:
        link = signed_links.open_link("confirm", token)
    except TokenError as error:
        return _bad_link(error, "confirm")
    words = signed_links.confirm_words(link)
    blocker = signed_links.confirm_blocker(link)
    form = ButtonForm()
    if blocker is None and form.validate_on_submit():
        outcome = signed_links.confirm(link, words=words, origin=request_origin())
        if outcome.ok:
            db.session.commit()
            return render_template("portal/links/confirmed.html", link=link)
        db.session.rollback()
        blocker = outcome.reason
    status = 409 if blocker else (400 if form.errors else 200)
    page = render_template(
        "portal/links/confirm.html", link=link, words=words, form=form, blocker=blocker
    )
    return page, status


@bp.route("/preferences/<token>", methods=["GET", "POST"])
@limiter.limit(LINK_LIMIT)
def preferences(token: str):
    """Yes / No to text messages for the cell numbers of the people at this email address."""
    try:
        link = signed_links.open_link("preferences", token)
    except TokenError as error:
        return _bad_link(error, "preferences")
    numbers = signed_links.cell_numbers(link)
    form = PreferencesForm()
    if numbers and form.validate_on_submit():
        wants = bool(form.yes.data)
        result = signed_links.set_text_preference(link, wants_texts=wants, origin=request_origin())
        db.session.commit()
        for shown, reason in result.refused:
            flash(_("%(number)s: %(reason)s", number=shown, reason=reason), "error")
        if result.changed:
            flash(
                _(
                    "Saved. We will send text messages to %(numbers)s.",
                    numbers=", ".join(result.changed),
                )
                if wants
                else _(
                    "Saved. We will not send text messages to %(numbers)s.",
                    numbers=", ".join(result.changed),
                ),
                "success",
            )
        elif not result.refused:
            flash(_("Nothing to change: your choice was already on record."), "info")
        # A change spends the link (it covers every number's choice): show the choices as they
        # are now, without the buttons; a link that changed nothing can still be used.
        numbers = signed_links.cell_numbers(link)
        return render_template(
            "portal/links/preferences.html",
            link=link,
            numbers=numbers,
            form=None if result.changed else form,
            purpose_form=not result.changed,
            purpose_rows=signed_links.email_purposes(link, str(get_locale() or "en")),
            number_tables=signed_links.number_purposes(link, numbers, str(get_locale() or "en")),
        )
    status = 400 if form.errors else 200
    page = render_template(
        "portal/links/preferences.html",
        link=link,
        numbers=numbers,
        form=form,
        purpose_form=True,
        purpose_rows=signed_links.email_purposes(link, str(get_locale() or "en")),
        number_tables=signed_links.number_purposes(link, numbers, str(get_locale() or "en")),
        disclosure=choices.text_disclosure(link.org),
    )
    return page, status


@bp.post("/preferences/<token>/purposes")
@limiter.limit(LINK_LIMIT)
def preferences_purpose(token: str):
    """Turn one kind of message on or off for the link's email address or, on texts or calls,
    for a cell number the link covers; a change spends the link (it covers those choices), so
    the page comes back without its buttons."""
    try:
        link = signed_links.open_link("preferences", token)
    except TokenError as error:
        return _bad_link(error, "preferences")
    form = PurposeChoiceForm()
    if not form.validate_on_submit():
        abort(400)
    locale = str(get_locale() or "en")
    try:
        result = signed_links.set_email_purpose(
            link,
            int(form.purpose.data),
            on=form.allow.data == "on",
            origin=request_origin(),
            locale=locale,
            channel=form.channel.data or None,
            address=form.address.data or None,
        )
    except signed_links.UnknownPurposeChoice:
        abort(404)
    if result.ok:
        db.session.commit()
    else:
        db.session.rollback()
    flash(result.message, "success" if result.ok else "error")
    spent = bool(result.outcome and result.outcome.changed)
    numbers = signed_links.cell_numbers(link)
    return render_template(
        "portal/links/preferences.html",
        link=link,
        numbers=numbers,
        form=None if spent else PreferencesForm(),
        purpose_form=not spent,
        purpose_rows=signed_links.email_purposes(link, locale),
        number_tables=signed_links.number_purposes(link, numbers, locale),
        disclosure=choices.text_disclosure(link.org),
    )


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt  # RFC 8058: mail clients POST with no cookie and no CSRF token
@limiter.limit(LINK_LIMIT, exempt_when=_is_one_click)
@limiter.limit(ONE_CLICK_LIMIT)
def unsubscribe(token: str):
    """GET shows a button (a link-following scanner unsubscribes no one); a one-click POST or
    the button opts the email address out and answers 200."""
    try:
        link = signed_links.open_link("unsubscribe", token)
    except TokenError as error:
        return _bad_link(error, "unsubscribe")
    if _is_one_click():
        signed_links.unsubscribe(link, one_click=True, origin=request_origin())
        db.session.commit()
        return render_template("portal/links/unsubscribed.html", link=link, one_click=True)
    form = ButtonForm()  # the page's button: CSRF-checked by the form itself
    if form.validate_on_submit():
        signed_links.unsubscribe(link, one_click=False, origin=request_origin())
        db.session.commit()
        return render_template("portal/links/unsubscribed.html", link=link, one_click=False)
    status = 400 if form.errors else 200
    return render_template("portal/links/unsubscribe.html", link=link, form=form), status
