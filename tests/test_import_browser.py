"""The opt-out import in Chromium: the mapping step for unknown columns, then the import job's
progress bar and its report."""

from __future__ import annotations

from pathlib import Path

import pytest

from consent import jobs
from tests import factories

pytestmark = pytest.mark.browser

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "imports" / "unknown_column.csv"


def test_map_the_columns_preview_then_watch_the_import(staff, live_server, browser_page):
    page = browser_page
    page.goto(live_server.url("/login"))
    page.fill("#email", "admin@example.org")
    page.fill("#password", factories.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(live_server.url("/admin/optouts/import/"))
    page.set_input_files("#file", str(FIXTURE))
    page.get_by_role("button", name="Preview").click()

    assert "What is in each column" in page.content()
    page.select_option("#column-1", "email")
    page.select_option("#column-2", "note")
    page.get_by_role("button", name="Preview with these columns").click()
    assert "of 4 rows in the file" in page.inner_text("body")
    page.get_by_role("button", name="Import 2 rows").click()

    page.wait_for_url("**/import/jobs/*")
    assert page.locator("progress#job-bar").count() == 1
    assert "Waiting for a worker" in page.inner_text("#job-progress")
    while jobs.run_one():
        pass
    page.wait_for_url("**/import/batch/*", timeout=10_000)  # the page refreshes itself
    body = page.inner_text("body")
    assert "2 imported" in body and "1 rejected" in body and "of 4 rows in the file" in body
