"""Exports as CSV and XLSX, safe to open in a spreadsheet.

A cell that starts with `=`, `+`, `-`, `@` (or a tab or carriage return) would be read as a
formula (OWASP "CSV injection"): in CSV it gets a leading single quote, so the spreadsheet shows
it as text; in XLSX every cell is a text cell (never a formula) with Excel's quote-prefix style.
Both stream: CSV by chunks of lines, XLSX through openpyxl's write-only workbook.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime

from flask import Response, send_file, stream_with_context

FORMATS = ("csv", "xlsx")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
XLSX_MAX_ROWS = 1_048_575  # a worksheet's rows, less the header
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def neutralize(value: object) -> str:
    """A cell's text, with a leading quote when a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def dated(name: str) -> str:
    """A download's name with today's date: "opt-outs-2026-12-01"."""
    return f"{name}-{date.today().isoformat()}"


def when(value: datetime | None) -> str:
    """A UTC time as exports show it."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def csv_chunks(rows: Iterable[Iterable[object]], lines_per_chunk: int = 500) -> Iterator[str]:
    """CSV text in chunks, every cell neutralized, with a BOM so Excel reads it as UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    count = 0
    for row in rows:
        writer.writerow([neutralize(cell) for cell in row])
        count += 1
        if count >= lines_per_chunk:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            count = 0
    if buffer.tell():
        yield buffer.getvalue()


def write_xlsx(rows: Iterable[Iterable[object]], target, title: str = "Export") -> None:
    """An XLSX workbook of the rows, text cells only (no formula can run), memory kept flat."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:31])
    for index, row in enumerate(rows):
        if index > XLSX_MAX_ROWS:
            break
        cells = []
        for value in row:
            text = "" if value is None else str(value)
            cell = WriteOnlyCell(sheet, value=text)
            cell.data_type = "s"
            if text.startswith(FORMULA_STARTS):
                cell.quotePrefix = True
            cells.append(cell)
        sheet.append(cells)
    workbook.save(target)


def response(rows: Iterable[Iterable[object]], fmt: str, filename: str, title: str = "Export"):
    """A download of the rows (header first) as `fmt` ("csv" or "xlsx")."""
    if fmt == "xlsx":
        target = tempfile.SpooledTemporaryFile(max_size=20 * 1024 * 1024)
        write_xlsx(rows, target, title)
        target.seek(0)
        return send_file(
            target, mimetype=XLSX_TYPE, as_attachment=True, download_name=f"{filename}.xlsx"
        )
    return Response(
        stream_with_context(csv_chunks(rows)),
        mimetype="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )
