"""Integrations (organization team): API keys (made and shown once, revoked, last use shown)
and webhook endpoints (registered with their secret shown once, enabled, disabled, and every
delivery attempt listed). Not consent changes; each change is audited."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, url_for
from flask_admin import expose
from flask_login import current_user
from wtforms import SelectMultipleField, StringField, widgets
from wtforms.validators import DataRequired, Length

from admin.base import ORG, AdminPageForm, SecureView
from consent import api_keys, webhooks
from consent.extensions import db
from consent.i18n import gettext as _
from consent.i18n import lazy_gettext as _l
from consent.models import (
    SCOPES,
    WEBHOOK_EVENT_TYPES,
    ApiKey,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from consent.tenant import current_organization

SCOPE_WORDS = {
    "eligibility:read": _l("Ask eligibility (eligibility:read)"),
    "events:read": _l("Read the change feed (events:read)"),
    "optouts:write": _l("Report opt-outs (optouts:write)"),
    "links:write": _l("Make unsubscribe links (links:write)"),
}
EVENT_WORDS = {
    "consent.opted_out": _l("Opted out (consent.opted_out)"),
    "consent.opted_in": _l("Opted in (consent.opted_in)"),
    "consent.bounced": _l("Bounced (consent.bounced)"),
    "consent.cleared": _l("Bounce cleared (consent.cleared)"),
}


class _Checkboxes(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class KeyForm(AdminPageForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=100)],
                       description=_l("Which system uses the key, e.g. “Mass notifications”."))  # fmt: skip
    scopes = _Checkboxes(
        _l("What the key may do"),
        choices=[(s, SCOPE_WORDS[s]) for s in SCOPES],
        validators=[DataRequired(message=_l("Choose at least one."))],
    )


class EndpointForm(AdminPageForm):
    url = StringField(_l("URL"), validators=[DataRequired(), Length(max=500)],
                      description=_l("Where we post each change (https)."))  # fmt: skip
    description = StringField(_l("Description"), validators=[Length(max=200)])
    event_types = _Checkboxes(
        _l("Changes to send"),
        choices=[(t, EVENT_WORDS[t]) for t in WEBHOOK_EVENT_TYPES],
        default=["consent.opted_out", "consent.opted_in", "consent.bounced"],
        validators=[DataRequired(message=_l("Choose at least one."))],
    )


class ActionForm(AdminPageForm):
    """A button (revoke, enable, disable): only the CSRF token."""


class IntegrationsView(SecureView):
    roles = ORG

    def _page(self, key_form=None, endpoint_form=None, shown=None):
        org = current_organization()
        keys = db.session.scalars(
            sa.select(ApiKey).where(ApiKey.organization_id == org.id).order_by(ApiKey.id.desc())
        ).all()
        endpoints = db.session.scalars(
            sa.select(WebhookEndpoint)
            .where(WebhookEndpoint.organization_id == org.id)
            .order_by(WebhookEndpoint.id)
        ).all()
        waiting = dict(
            db.session.execute(
                sa.select(WebhookDelivery.endpoint_id, sa.func.count())
                .where(
                    WebhookDelivery.endpoint_id.in_([e.id for e in endpoints]),
                    WebhookDelivery.status != "delivered",
                )
                .group_by(WebhookDelivery.endpoint_id)
            ).all()
        )
        return self.render(
            "admin/integrations.html",
            keys=keys,
            endpoints=endpoints,
            waiting=waiting,
            key_form=key_form or KeyForm(formdata=None),
            endpoint_form=endpoint_form or EndpointForm(formdata=None),
            action_form=ActionForm(),
            shown=shown,
            scope_words=SCOPE_WORDS,
        )

    @expose("/")
    def index(self):
        return self._page()

    @expose("/keys", methods=("POST",))
    def create_key(self):
        form = KeyForm()
        if not form.validate_on_submit():
            return self._page(key_form=form)
        _row, key = api_keys.create(
            current_organization(), form.name.data, form.scopes.data, current_user
        )
        db.session.commit()
        shown = (_("The new key “%(name)s”", name=form.name.data), key)
        return self._page(shown=shown)

    @expose("/keys/<int:key_id>/revoke", methods=("POST",))
    def revoke_key(self, key_id: int):
        if not ActionForm().validate_on_submit():
            abort(400)
        row = db.session.get(ApiKey, key_id)
        if row is None or row.organization_id != current_organization().id:
            abort(404)
        if api_keys.revoke(row, current_user):
            db.session.commit()
            flash(_("Key “%(name)s” revoked: it no longer works.", name=row.name), "success")
        return redirect(url_for(".index"))

    @expose("/endpoints", methods=("POST",))
    def create_endpoint(self):
        form = EndpointForm()
        if not form.validate_on_submit():
            return self._page(endpoint_form=form)
        try:
            endpoint, secret = webhooks.create_endpoint(
                current_organization(), form.url.data, form.event_types.data,
                description=form.description.data, user=current_user,
            )  # fmt: skip
        except webhooks.EndpointError as refused:
            form.url.errors = [str(refused)]
            return self._page(endpoint_form=form)
        db.session.commit()
        shown = (_("The signing secret of %(url)s", url=endpoint.url), secret)
        return self._page(shown=shown)

    def _endpoint(self, endpoint_id: int) -> WebhookEndpoint:
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None or endpoint.organization_id != current_organization().id:
            abort(404)
        return endpoint

    @expose("/endpoints/<int:endpoint_id>/<any(enable, disable):what>", methods=("POST",))
    def switch_endpoint(self, endpoint_id: int, what: str):
        if not ActionForm().validate_on_submit():
            abort(400)
        endpoint = self._endpoint(endpoint_id)
        webhooks.set_active(endpoint, what == "enable", current_user)
        db.session.commit()
        if what == "enable":
            flash(_("%(url)s enabled: waiting changes are sent.", url=endpoint.url), "success")
        else:
            flash(_("%(url)s disabled: changes wait until it is enabled.", url=endpoint.url),
                  "success")  # fmt: skip
        return redirect(url_for(".index"))

    @expose("/endpoints/<int:endpoint_id>")
    def attempts(self, endpoint_id: int):
        endpoint = self._endpoint(endpoint_id)
        rows = db.session.execute(
            sa.select(WebhookAttempt, WebhookDelivery)
            .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
            .where(WebhookAttempt.endpoint_id == endpoint.id)
            .order_by(WebhookAttempt.id.desc())
            .limit(200)
        ).all()
        return self.render("admin/integrations_attempts.html", endpoint=endpoint, rows=rows)


def register(admin) -> None:
    admin.add_view(
        IntegrationsView(
            name=_l("Integrations"), endpoint="integrations", url="/admin/integrations"
        )
    )
