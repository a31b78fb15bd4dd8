"""Import an opt-out file: upload, preview each row's problem, import, report.

The organization team's only: an import changes the whole organization's list at once.
Between the preview and the import the upload waits in `instance/uploads` under a random name
that starts with the uploader's id (never in the session); it is deleted after the import, and
leftovers older than a day are swept at the next upload.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

import sqlalchemy as sa
from flask import abort, current_app, flash, redirect, request, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf.file import FileField, FileRequired
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import HiddenField, RadioField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from admin.base import ORG, AdminPageForm, SecureView, admin_origin
from admin.optouts import CHANNEL_CHOICES
from consent import import_reader, imports, jobs
from consent.extensions import db
from consent.i18n import gettext as _
from consent.i18n import lazy_gettext as _l
from consent.import_reader import ImportFileError
from consent.models import ImportBatch, Job
from consent.tenant import current_organization

UPLOAD_NAME = re.compile(r"^(\d+)-[0-9a-f]{32}\.(csv|xlsx)$")
STALE_SECONDS = 24 * 3600


class UploadForm(AdminPageForm):
    file = FileField(_l("CSV or Excel (XLSX) file"), validators=[FileRequired()])
    channel = RadioField(_l("Opt these addresses out of"), choices=CHANNEL_CHOICES, default="all")
    note = TextAreaField(
        _l("Note (kept with every opt-out)"), validators=[Optional(), Length(max=500)]
    )


class RunForm(AdminPageForm):
    upload = HiddenField(validators=[DataRequired()])
    filename = HiddenField(validators=[DataRequired(), Length(max=300)])
    channel = HiddenField(validators=[DataRequired()])
    note = HiddenField(validators=[Optional(), Length(max=500)])
    header_row = HiddenField(validators=[Optional(), Length(max=12)])
    roles = HiddenField(validators=[Optional(), Length(max=2000)])


ROLE_WORDS = {
    "phone": _l("Phone numbers"),
    "email": _l("Email addresses"),
    "channel": _l("Opt-out type (voice, text, both, email, all)"),
    "note": _l("Note"),
    "date": _l("Date"),
    "ignore": _l("Ignore this column"),
}


def _layout_of(form: RunForm) -> dict | None:
    """The column mapping carried by the form, or None (400 when it is not one)."""
    roles = [r for r in (form.roles.data or "").split(",") if r]
    if not roles:
        return None
    if any(r not in import_reader.ROLES for r in roles) or len(roles) > 100:
        abort(400)
    header = form.header_row.data or ""
    if header and not header.isdigit():
        abort(400)
    return {"header_row": int(header) if header else None, "roles": roles}


def upload_dir() -> Path:
    path = Path(current_app.instance_path) / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sweep(folder: Path) -> None:
    cutoff = time.time() - STALE_SECONDS
    for entry in folder.iterdir():
        if UPLOAD_NAME.match(entry.name) and entry.stat().st_mtime < cutoff:
            entry.unlink(missing_ok=True)


def _upload_path(name: str) -> Path | None:
    """The stored upload of this name, when it is one of the current user's; else None."""
    match = UPLOAD_NAME.match(name or "")
    if not match or int(match.group(1)) != current_user.id:
        return None
    path = upload_dir() / name
    return path if path.exists() else None


def _max_bytes() -> int:
    return current_app.config.get("IMPORT_MAX_BYTES") or import_reader.MAX_BYTES


class ImportView(SecureView):
    """Upload a file of addresses to opt out, check the preview, then import it."""

    roles = ORG

    @expose("/", methods=("GET",))
    def index(self):
        """The upload form."""
        return self.render("admin/imports/upload.html", form=UploadForm(formdata=None))

    @expose("/preview", methods=("POST",))
    def preview(self):
        """Keep the upload and show what importing it would do, row by row (writes nothing)."""
        form = UploadForm()
        if not form.validate_on_submit():
            return self.render("admin/imports/upload.html", form=form)
        org = current_organization()
        upload = form.file.data
        filename = os.path.basename(upload.filename or "upload.csv")[:300]
        ext = "xlsx" if filename.lower().endswith(".xlsx") else "csv"
        folder = upload_dir()
        _sweep(folder)
        name = f"{current_user.id}-{secrets.token_hex(16)}.{ext}"
        path = folder / name
        upload.save(path)
        try:
            with path.open("rb") as stream:
                found = import_reader.inspect(
                    stream, filename, region=org.default_region, max_bytes=_max_bytes()
                )
        except ImportFileError as exc:
            path.unlink(missing_ok=True)
            form.file.errors.append(str(exc))
            return self.render("admin/imports/upload.html", form=form)
        run = RunForm(
            formdata=None,
            upload=name,
            filename=filename,
            channel=form.channel.data,
            note=form.note.data or "",
            header_row=str(found.header_row or ""),
            roles=",".join(imports.saved_roles(org, found) or found.roles),
        )
        if found.unknown and imports.saved_roles(org, found) is None:
            return self._mapping(run, found)
        return self._preview(run)

    def _mapping(self, run: RunForm, found):
        return self.render(
            "admin/imports/mapping.html",
            run=run,
            found=found,
            chosen=(run.roles.data or "").split(","),
            role_words=ROLE_WORDS,
        )

    def _preview(self, run: RunForm):
        path = _upload_path(run.upload.data)
        if path is None:
            return self._gone()
        org = current_organization()
        if self._in_background(path, run.filename.data):
            return self._preview_job(org, path, run)
        try:
            with path.open("rb") as stream:
                report = imports.preview_file(
                    org,
                    stream,
                    run.filename.data,
                    run.channel.data,
                    max_bytes=_max_bytes(),
                    layout=_layout_of(run),
                )
        except ImportFileError as exc:
            path.unlink(missing_ok=True)
            flash(str(exc), "error")
            return redirect(url_for(".index"))
        return self.render(
            "admin/imports/preview.html",
            report=report,
            run=run,
            preview_words=imports.PREVIEW_WORDS,
        )

    @staticmethod
    def _in_background(path: Path, filename: str) -> bool:
        """A big file's preview is a job (over PREVIEW_INLINE_BYTES, or over
        IMPORT_PREVIEW_JOB_ROWS rows); a small one is shown at once."""
        limit = current_app.config.get("IMPORT_PREVIEW_JOB_ROWS", imports.PREVIEW_JOB_ROWS)
        if path.stat().st_size > imports.PREVIEW_INLINE_BYTES:
            return True
        try:
            return imports.preview_in_background(path.read_bytes(), filename, limit)
        except ImportFileError:
            return False  # the preview in the request says what is wrong with it

    def _preview_job(self, org, path: Path, run: RunForm):
        """Keep the upload with a job that previews it, and show that job's page."""
        return self._queue(org, path, run, dry_run=True)

    def _queue(self, org, path: Path, form: RunForm, *, dry_run: bool):
        """Move the upload into a job (a preview, or the import) and show the job's page."""
        try:
            job = imports.enqueue(
                org,
                path.read_bytes(),
                form.filename.data,
                form.channel.data,
                dry_run=dry_run,
                layout=_layout_of(form),
                note=form.note.data,
                user=current_user,
                origin=admin_origin(),
            )
        except ImportFileError as exc:
            flash(str(exc), "error")
            return redirect(url_for(".index"))
        finally:
            path.unlink(missing_ok=True)
        db.session.commit()
        return redirect(url_for(".job", job_id=job.id))

    def _gone(self):
        flash(
            _(
                "That upload is no longer here (it was imported already, or too long ago). Upload the file again."
            ),
            "error",
        )
        return redirect(url_for(".index"))

    @expose("/map", methods=("POST",))
    def map_columns(self):
        """Keep the columns' roles chosen by staff (for the next file with the same headers),
        then show the preview with them."""
        run = RunForm()
        if not run.validate_on_submit() or run.channel.data not in imports.CHANNEL_CHOICES:
            abort(400)
        path = _upload_path(run.upload.data)
        if path is None:
            return self._gone()
        org = current_organization()
        with path.open("rb") as stream:
            try:
                found = import_reader.inspect(
                    stream, run.filename.data, region=org.default_region, max_bytes=_max_bytes()
                )
            except ImportFileError as exc:
                flash(str(exc), "error")
                return redirect(url_for(".index"))
        roles = [request.form.get(f"column-{i}", "ignore") for i in range(len(found.headers))]
        if any(r not in import_reader.ROLES for r in roles):
            abort(400)
        run.roles.data = ",".join(roles)
        run.header_row.data = str(found.header_row or "")
        if not any(r in ("phone", "email") for r in roles):
            flash(_("Choose at least one column of phone numbers or email addresses."), "error")
            return self._mapping(run, found)
        imports.remember_roles(org, found, roles)
        db.session.commit()
        return self._preview(run)

    @expose("/run", methods=("POST",))
    def run(self):
        """Import the previewed upload, then show the report."""
        form = RunForm()
        if not form.validate_on_submit() or form.channel.data not in imports.CHANNEL_CHOICES:
            abort(400)
        path = _upload_path(form.upload.data)
        if path is None:
            return self._gone()
        return self._queue(current_organization(), path, form, dry_run=False)

    def _job(self, job_id: int) -> Job:
        org = current_organization()
        job = db.session.scalars(
            sa.select(Job).where(
                Job.id == job_id, Job.organization_id == org.id, Job.kind == imports.JOB_KIND
            )
        ).first()
        if job is None:
            abort(404)
        return job

    @expose("/jobs/<int:job_id>")
    def job(self, job_id: int):
        """A preview's or an import's progress (a background job); when done, the preview
        with its Import button, or the import's report."""
        job = self._job(job_id)
        result = job.result or {}
        dry_run = bool((job.params or {}).get("dry_run"))
        batch_id = result.get("batch_id")
        if job.status == jobs.DONE and batch_id and not dry_run:
            return redirect(url_for(".batch", batch_id=batch_id))
        if job.status == jobs.DONE and dry_run:
            report = imports.ImportReport.from_dict(result)
            report.rows.sort(key=lambda r: r.row_number)
            return self.render(
                "admin/imports/preview.html",
                report=report,
                run=None,
                preview_job=job,
                form=AdminPageForm(),
                preview_words=imports.PREVIEW_WORDS,
            )
        return self.render(
            "admin/imports/job.html",
            job=job,
            progress=jobs.progress_of(job),
            report=result,
            dry_run=dry_run,
            filename=(job.params or {}).get("filename", ""),
            running=job.status in (jobs.QUEUED, jobs.RUNNING),
        )

    @expose("/jobs/<int:job_id>/import", methods=("POST",))
    def import_previewed(self, job_id: int):
        """Import the file a finished preview job showed (the same stored file), as a job."""
        preview = self._job(job_id)
        if not AdminPageForm().validate_on_submit():
            abort(400)
        params = preview.params or {}
        if not params.get("dry_run") or preview.status != jobs.DONE or preview.file_id is None:
            abort(404)
        job = imports.enqueue(
            current_organization(),
            b"",
            params.get("filename") or "import",
            params.get("choice") or "all",
            dry_run=False,
            layout=params.get("layout") or None,
            note=params.get("note"),
            user=current_user,
            origin=admin_origin(),
            file_id=preview.file_id,
        )
        db.session.commit()
        return redirect(url_for(".job", job_id=job.id))

    @expose("/batch/<int:batch_id>")
    def batch(self, batch_id: int):
        """The report of one import: imported, already opted out, rejected with reasons."""
        org = current_organization()
        batch = db.session.scalars(
            sa.select(ImportBatch).where(
                ImportBatch.id == batch_id, ImportBatch.organization_id == org.id
            )
        ).first()
        if batch is None:
            abort(404)
        return self.render(
            "admin/imports/report.html",
            batch=batch,
            report=batch.report or {},
            words=imports.WORDS,
        )


def _too_large(error):
    """An upload over the request limit: say so on the import page instead of a bare 413."""
    if request.path.startswith("/admin/optouts/import"):
        limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
        flash(
            _(
                "The file is larger than %(mb)d MB, the most that can be uploaded at once; "
                "split it into smaller files and upload each one.",
                mb=limit // (1024 * 1024),
            ),
            "error",
        )
        return redirect(url_for("optout_import.index"))
    from consent.errors import error_response

    return error_response(413)  # elsewhere: the site's own 413 page (JSON for the API)


def register(admin) -> None:
    admin.add_view(
        ImportView(name="Import Opt-Outs", endpoint="optout_import", url="/admin/optouts/import")
    )
    if admin.app is not None:
        admin.app.register_error_handler(RequestEntityTooLarge, _too_large)
