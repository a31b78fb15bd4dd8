"""Exports of an admin page: written at once (streamed) when small, by a background job
(consent/export_jobs.py) when over EXPORT_JOB_ROWS rows, with the job's page and its download.

A view mixes in ExportJobs and calls `self.export(...)`; the job's page and download are the
view's own routes (`.export_job`, `.export_job_download`), each for the user who asked for the
export only (another user, even of the same team, gets 404)."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from flask import Response, abort, current_app, redirect, stream_with_context, url_for
from flask_admin import expose
from flask_login import current_user

from consent import export, export_jobs, jobs
from consent.extensions import db
from consent.models import JobFile
from consent.tenant import current_organization


def job_rows_limit() -> int:
    return current_app.config.get("EXPORT_JOB_ROWS", export_jobs.EXPORT_JOB_ROWS)


class ExportJobs:
    """A view's exports, and the pages of its export jobs."""

    export_back_endpoint = ".index_view"  # the "Back to the list" link of a job's page

    def export(self, name: str, fmt: str, filename: str, params: dict, *, big: bool):
        """The export `name` (consent.export_jobs) with `params`: a job when `big`, else the
        file at once."""
        org = current_organization()
        if big:
            job = export_jobs.enqueue(org, name, fmt, filename, params=params, user=current_user)
            db.session.commit()
            return redirect(url_for(".export_job", job_id=job.id))
        rows_of, title = export_jobs.EXPORTS[name]
        return export.response(rows_of(org, params), fmt, filename, title)

    @expose("/export-jobs/<int:job_id>")
    def export_job(self, job_id: int):
        """A big export's progress (a background job), then its download."""
        job = export_jobs.job_of(current_organization().id, job_id, current_user.id)
        if job is None:
            abort(404)
        return self.render(
            "admin/exports/job.html",
            job=job,
            progress=jobs.progress_of(job),
            result=job.result or {},
            running=job.status in (jobs.QUEUED, jobs.RUNNING),
            back_url=url_for(self.export_back_endpoint),
        )

    @expose("/export-jobs/<int:job_id>/download")
    def export_job_download(self, job_id: int):
        """The file a finished export job wrote."""
        job = export_jobs.job_of(current_organization().id, job_id, current_user.id)
        result = (job.result or {}) if job else {}
        stored = db.session.get(JobFile, result.get("file_id") or 0)
        if job is None or job.status != jobs.DONE or stored is None:
            abort(404)
        if stored.organization_id != job.organization_id:
            abort(404)
        # Streamed part by part (consent.jobs.file_parts): the file is never whole in memory.
        response = Response(
            stream_with_context(jobs.file_parts(stored.id)),
            mimetype=export_jobs.mimetype(result.get("format", "csv")),
        )
        response.headers["Content-Length"] = str(jobs.file_size(stored.id))
        response.headers.set("Content-Disposition", "attachment", **_attachment(stored.filename))
        response.headers["Cache-Control"] = "no-store"
        return response


def _attachment(filename: str) -> dict:
    """The Content-Disposition options send_file gives a download of this name (werkzeug's:
    an ASCII fallback, and the UTF-8 name when it is not ASCII)."""
    try:
        filename.encode("ascii")
    except UnicodeEncodeError:
        simple = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
        return {"filename": simple, "filename*": f"UTF-8''{quote(filename, safe='!#$&+^`|~')}"}
    return {"filename": filename}
