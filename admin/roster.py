"""Load the district's people from its roster (OneRoster 1.1 CSV): upload, preview, import.

The organization team's only. The upload is kept in the database (a JobFile) and both the
preview and the import run as background jobs (consent.jobs), never inside the request: the
job's page shows its progress and refreshes itself until the job is done.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from flask import abort, current_app, redirect, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf.file import MultipleFileField

from admin.base import ORG, AdminPageForm, SecureView, admin_origin
from consent import jobs, roster
from consent.extensions import db
from consent.i18n import lazy_gettext as _l
from consent.models import Job
from consent.tenant import current_organization

RECENT_JOBS = 10


class UploadForm(AdminPageForm):
    files = MultipleFileField(_l("The roster: one .zip, or orgs.csv and users.csv"))


class ImportForm(AdminPageForm):
    """Run the import that a preview showed (CSRF only)."""


def _files_of(uploads) -> dict[str, bytes]:
    """The roster's CSV files from the uploaded .zip or CSV files (RosterFileError if not)."""
    uploads = [u for u in uploads or [] if u and u.filename]
    if not uploads:
        raise roster.RosterFileError(_l("Choose the roster's .zip, or its orgs.csv and users.csv."))
    limit = current_app.config.get("MAX_CONTENT_LENGTH") or roster.MAX_UNZIPPED
    if len(uploads) == 1 and uploads[0].filename.lower().endswith(".zip"):
        return roster.read_archive(uploads[0].read(limit + 1))
    files = {}
    for upload in uploads:
        name = os.path.basename(upload.filename).lower()
        if name.endswith(".csv"):
            files[name] = upload.read(limit + 1)
    return roster.require_files(files)


class RosterView(SecureView):
    """Upload the roster, check the preview row by row, then import it."""

    roles = ORG

    @expose("/", methods=("GET",))
    def index(self):
        """The upload form and the latest roster jobs."""
        return self.render(
            "admin/roster/upload.html", form=UploadForm(formdata=None), recent=self._recent()
        )

    @expose("/upload", methods=("POST",))
    def upload(self):
        """Keep the upload and queue its preview (a job that writes nothing)."""
        form = UploadForm()
        if not form.validate_on_submit():
            return self.render("admin/roster/upload.html", form=form, recent=self._recent())
        org = current_organization()
        uploads = [u for u in form.files.data or [] if u and u.filename]
        try:
            files = _files_of(uploads)
            roster.check_headers(files)
        except roster.RosterFileError as exc:
            form.files.errors = [str(exc)]
            return self.render("admin/roster/upload.html", form=form, recent=self._recent())
        name = os.path.basename(uploads[0].filename) if len(uploads) == 1 else "orgs.csv, users.csv"
        job = roster.enqueue(
            org, files, name[:300], dry_run=True, user=current_user, origin=admin_origin()
        )
        db.session.commit()
        return redirect(url_for(".job", job_id=job.id))

    @expose("/jobs/<int:job_id>", methods=("GET",))
    def job(self, job_id: int):
        """A preview's or an import's progress, then its report."""
        job = self._job(job_id)
        result = job.result or {}
        return self.render(
            "admin/roster/job.html",
            job=job,
            progress=jobs.progress_of(job),
            report=result,
            rows=sorted(result.get("rows") or [], key=lambda r: r.get("row", 0)),
            dry_run=bool((job.params or {}).get("dry_run")),
            filename=(job.params or {}).get("filename", ""),
            running=job.status in (jobs.QUEUED, jobs.RUNNING),
            form=ImportForm(),
            outcomes=roster.OUTCOMES,
        )

    @expose("/jobs/<int:job_id>/import", methods=("POST",))
    def run_import(self, job_id: int):
        """Import what a finished preview showed (the same file), as a new job."""
        preview = self._job(job_id)
        form = ImportForm()
        if not form.validate_on_submit():
            abort(400)
        params = preview.params or {}
        if not params.get("dry_run") or preview.status != jobs.DONE or preview.file_id is None:
            abort(404)
        job = roster.enqueue(
            current_organization(),
            {},
            params.get("filename", "roster"),
            dry_run=False,
            user=current_user,
            origin=admin_origin(),
            file_id=preview.file_id,
        )
        db.session.commit()
        return redirect(url_for(".job", job_id=job.id))

    def _job(self, job_id: int) -> Job:
        org = current_organization()
        job = db.session.scalars(
            sa.select(Job).where(
                Job.id == job_id, Job.organization_id == org.id, Job.kind == roster.JOB_KIND
            )
        ).first()
        if job is None:
            abort(404)
        return job

    def _recent(self) -> list[Job]:
        org = current_organization()
        return list(
            db.session.scalars(
                sa.select(Job)
                .where(Job.organization_id == org.id, Job.kind == roster.JOB_KIND)
                .order_by(Job.id.desc())
                .limit(RECENT_JOBS)
            )
        )


def register(admin) -> None:
    admin.add_view(RosterView(name=_l("Roster"), endpoint="roster", url="/admin/roster"))
