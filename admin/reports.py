"""Reports: students with Parent 1-4's primary phone and its text status, by site and
enrollment status; parents opted out of texts, and opted in. Each exports as CSV and XLSX."""

from __future__ import annotations

from flask import abort, request
from flask_admin import expose

from admin.base import ORG, SecureView
from admin.exports import ExportJobs, job_rows_limit
from consent import export_jobs, reports
from consent.addresses import format_phone
from consent.i18n import lazy_gettext as _l
from consent.tenant import current_organization

FORMATS = ("csv", "xlsx")
PARENT_TITLES = {
    "opted_out": _l("Parents opted out of texts"),
    "opted_in": _l("Parents opted in to texts"),
}


class ReportsView(ExportJobs, SecureView):
    """The organization team's reports."""

    roles = ORG
    export_back_endpoint = ".index"

    def _filters(self, org):
        site_id = request.args.get("site", type=int)
        if site_id and not any(site.id == site_id for site in org.sites):
            site_id = None
        enrollment = request.args.get("enrollment", "")[:20] or None
        return site_id, enrollment

    @expose("/")
    def index(self):
        """The student report, with its filters and export links."""
        org = current_organization()
        site_id, enrollment = self._filters(org)
        page = request.args.get("page", 1, type=int) or 1
        results = reports.student_report(org.id, site_id, enrollment, page)
        return self.render(
            "admin/reports.html",
            results=results,
            sites=org.sites,
            site_id=site_id,
            enrollment=enrollment,
            enrollments=reports.enrollment_statuses(org.id),
            filters={"site": site_id or "", "enrollment": enrollment or ""},
        )

    @expose("/students.<fmt>")
    def students_export(self, fmt: str):
        """The student report as a file."""
        if fmt not in FORMATS:
            abort(404)
        org = current_organization()
        site_id, enrollment = self._filters(org)
        stmt = reports.student_statement(org.id, site_id, enrollment)
        big = export_jobs.more_than(stmt, job_rows_limit())
        params = {"site_id": site_id, "enrollment": enrollment}
        return self.export("students-parent-phones", fmt, "students-parent-phones", params, big=big)

    @expose("/parents/<status>/")
    def parents(self, status: str):
        """Parents opted out of (or in to) texts."""
        if status not in reports.PARENT_STATUSES:
            abort(404)
        org = current_organization()
        page = request.args.get("page", 1, type=int) or 1
        results = reports.parents_report(org.id, reports.PARENT_STATUSES[status], page)
        return self.render(
            "admin/reports_parents.html",
            results=results,
            status=status,
            title=PARENT_TITLES[status],
            format_phone=format_phone,
        )

    @expose("/parents/<status>.<fmt>")
    def parents_export(self, status: str, fmt: str):
        """Parents opted out of (or in to) texts, as a file."""
        if status not in reports.PARENT_STATUSES or fmt not in FORMATS:
            abort(404)
        org = current_organization()
        stmt = reports.parents_statement(org.id, reports.PARENT_STATUSES[status])
        big = export_jobs.more_than(stmt, job_rows_limit())
        filename = f"parents-{status.replace('_', '-')}"
        return self.export("parents", fmt, filename, {"status": status}, big=big)


def register(admin) -> None:
    admin.add_view(ReportsView(name=_l("Reports"), endpoint="reports", url="/admin/reports"))
