"""Invitations to the parent portal: staff send a contact on the roster a link to claim an
account, from the contact's page, or to everyone not signed up yet (organization team).
Each invitation is an outbox email (consent/accounts.py), at most one a day per contact.
Inviting everyone is a background job (consent.jobs): its page shows the progress."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, url_for
from flask_admin import expose
from flask_login import current_user

from admin.base import ORG, ORG_AND_SITE, AdminPageForm, SecureView, has_role, require_role
from consent import accounts, jobs, people
from consent.extensions import db
from consent.i18n import gettext as _
from consent.i18n import lazy_gettext as _l
from consent.models import Job
from consent.tenant import current_organization


class InvitationsView(SecureView):
    """The page for the organization team; the contact button for the site team too."""

    roles = ORG

    def _handle_view(self, name, **kwargs):
        # A site team may invite its own site's contacts (from their page), nothing else here.
        if name == "invite_contact":
            return None if has_role(*ORG_AND_SITE) else self.inaccessible_callback(name, **kwargs)
        return super()._handle_view(name, **kwargs)

    @expose("/")
    def index(self):
        """How many contacts are not signed up yet, and the button that invites them all."""
        org = current_organization()
        return self.render(
            "admin/invitations.html",
            waiting=accounts.count_not_signed_up(org),
            form=AdminPageForm(),
        )

    @expose("/send", methods=("POST",))
    def send_all(self):
        """Queue an invitation to every contact with an email and no account (a job); while
        one is queued or running, its page instead of a second one."""
        if not AdminPageForm().validate_on_submit():
            flash(_("The form expired. Please try again."), "error")
            return redirect(url_for(".index"))
        org = current_organization()
        job = self._running(org) or accounts.enqueue_invitations(org, by=current_user)
        db.session.commit()
        return redirect(url_for(".job", job_id=job.id))

    @expose("/jobs/<int:job_id>")
    def job(self, job_id: int):
        """The invitations' progress, then how many were sent."""
        org = current_organization()
        job = db.session.scalars(
            sa.select(Job).where(
                Job.id == job_id, Job.organization_id == org.id, Job.kind == accounts.INVITE_JOB
            )
        ).first()
        if job is None:
            abort(404)
        return self.render(
            "admin/invitations_job.html",
            job=job,
            progress=jobs.progress_of(job),
            result=job.result or {},
            running=job.status in (jobs.QUEUED, jobs.RUNNING),
        )

    def _running(self, org) -> Job | None:
        return db.session.scalars(
            sa.select(Job)
            .where(
                Job.organization_id == org.id,
                Job.kind == accounts.INVITE_JOB,
                Job.status.in_([jobs.QUEUED, jobs.RUNNING]),
            )
            .order_by(Job.id.desc())
        ).first()

    @expose("/contact/<int:contact_id>", methods=("POST",))
    def invite_contact(self, contact_id: int):
        """An invitation to one contact (within the admin's site for a site team)."""
        require_role(*ORG_AND_SITE)
        contact = people.get_contact(current_user, contact_id)
        if contact is None:
            abort(404)
        if not AdminPageForm().validate_on_submit():
            flash(_("The form expired. Please try again."), "error")
            return redirect(url_for("contacts.details", record_id=contact_id))
        result = accounts.invite(current_organization(), contact, by=current_user)
        db.session.commit()
        if result.sent:
            flash(_("Invitation sent to %(email)s.", email=contact.emails[0].address), "success")
        elif result.already_signed_up:
            flash(_("This contact has an account already."), "info")
        else:
            flash(_("This contact has no email on record."), "error")
        return redirect(url_for("contacts.details", record_id=contact_id))


def register(admin) -> None:
    admin.add_view(
        InvitationsView(name=_l("Invitations"), endpoint="invitations", url="/admin/invitations")
    )
