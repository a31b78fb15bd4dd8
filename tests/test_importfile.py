"""Tests for reading uploaded opt-out lists (CSV and XLSX), without a database."""

from __future__ import annotations

import codecs
import csv
import io
import tracemalloc

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from consent import import_reader as importfile
from consent.addresses import AddressError
from consent.import_reader import ImportFileError, ImportRow, read_rows, sniff_format


def rows_of(data: bytes, filename: str = "list.csv", **kwargs) -> list[ImportRow]:
    return list(read_rows(io.BytesIO(data), filename, **kwargs))


def addresses(rows: list[ImportRow]) -> list[str | None]:
    return [row.address for row in rows]


def xlsx_bytes(*rows: list[object]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


class OneWayStream(io.RawIOBase):
    """An upload that can only be read forwards, a few bytes at a time."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_headerless_csv_reads_every_row_from_row_one():
    """A CSV without a header yields its first row as row 1."""
    rows = rows_of(b"2025550123\n(202) 555-0124\n+1 202 555 0125\n")
    assert addresses(rows) == ["+12025550123", "+12025550124", "+12025550125"]
    assert [r.row_number for r in rows] == [1, 2, 3]
    assert all(r.kind == "phone" and r.problem is None for r in rows)


def test_phone_header_picks_its_column_and_counts_the_header_row():
    """A "Phone" header chooses that column and data starts at row 2."""
    data = b"Student,Grade,Phone\r\nAna,3,202-555-0123\r\nBo,4,202-555-0124\r\n"
    rows = rows_of(data)
    assert addresses(rows) == ["+12025550123", "+12025550124"]
    assert [r.row_number for r in rows] == [2, 3]
    assert rows[0].raw == "202-555-0123"


def test_header_names_are_matched_ignoring_case_spaces_and_punctuation():
    """Headers like " CELL_PHONE " and "E-mail Address" are recognised."""
    rows = rows_of(b"Name, CELL_PHONE ,E-mail Address\nAna,2025550123,ana@example.org\n")
    assert addresses(rows) == ["+12025550123", "ana@example.org"]


def test_unrecognised_header_above_addresses_is_skipped():
    """A first row that is not an address, above a column of addresses, is a header."""
    rows = rows_of(b"Parent cell\n2025550123\n2025550124\n")
    assert [r.row_number for r in rows] == [2, 3]
    assert all(r.problem is None for r in rows)


def test_invalid_first_row_without_header_is_reported_not_skipped():
    """A first row that looks like a phone number is data even when it is invalid."""
    rows = rows_of(b"555-0100\n2025550123\n")
    assert rows[0].row_number == 1
    assert rows[0].problem == "Invalid phone number: it is not a valid phone number"


def test_utf8_bom_is_ignored():
    """A UTF-8 byte-order mark does not spoil the header."""
    rows = rows_of(codecs.BOM_UTF8 + b"Phone,Notes\n2025550123,called twice\n")
    assert addresses(rows) == ["+12025550123"]
    assert rows[0].note == "called twice"


def test_utf16_tab_separated_excel_unicode_text_is_read():
    """Excel's "Unicode Text" export (UTF-16 with BOM, tabs) is read, commas kept in cells."""
    text = "Name\tPhone\tNotes\r\nSmith, Zoë\t2025550123\tDad, not Mum\r\n"
    for encoding in ("utf-16", "utf-16-be"):
        data = text.encode(encoding)
        if encoding == "utf-16-be":
            data = codecs.BOM_UTF16_BE + data
        rows = rows_of(data, "list.txt")
        assert addresses(rows) == ["+12025550123"]
        assert rows[0].note == "Dad, not Mum"


def test_cp1252_bytes_from_legacy_excel_csv_are_decoded():
    """Bytes that are not UTF-8 are read as Windows-1252, as old Excel writes them."""
    data = "Phone,Note\n2025550123,José’s mother\n".encode("cp1252")
    rows = rows_of(data)
    assert addresses(rows) == ["+12025550123"]
    assert rows[0].note == "José’s mother"


def test_semicolon_delimited_csv_is_read():
    """European Excel's semicolon-separated CSV splits on semicolons."""
    rows = rows_of(b"Name;Phone;Amount\nAna;202 555 0123;3,5\nBo;202 555 0124;1,0\n")
    assert addresses(rows) == ["+12025550123", "+12025550124"]


def test_quoted_fields_with_delimiters_and_newlines_keep_excel_row_numbers():
    """A quoted note with a comma and a line break still counts as one row."""
    data = b'Phone,Note\r\n2025550123,"Line one,\r\nline two"\r\n2025550124,ok\r\n'
    rows = rows_of(data)
    assert [(r.row_number, r.note) for r in rows] == [(2, "Line one,\r\nline two"), (3, "ok")]


def test_xlsx_numeric_phone_cells_and_header_are_read():
    """XLSX phone cells stored as numbers (even floats) become E.164 numbers."""
    data = xlsx_bytes(["Name", "Mobile", "Comment"], ["Ana", 2025550123, "x"], ["Bo", 2025550124.0])
    rows = rows_of(data, "list.xlsx")
    assert addresses(rows) == ["+12025550123", "+12025550124"]
    assert [r.raw for r in rows] == ["2025550123", "2025550124"]
    assert [r.note for r in rows] == ["x", None]
    assert [r.row_number for r in rows] == [2, 3]


def test_xlsx_blank_rows_keep_row_numbers():
    """Blank rows in a worksheet are skipped but later rows keep their Excel numbers."""
    data = xlsx_bytes(["Phone"], [2025550123], [], [None], ["202-555-0124"])
    rows = rows_of(data, "list.xlsx")
    assert [(r.row_number, r.address) for r in rows] == [(2, "+12025550123"), (5, "+12025550124")]


def test_xlsx_from_an_unseekable_stream_is_read():
    """An XLSX upload that cannot seek is copied aside and read."""
    data = xlsx_bytes(["Email"], ["a@example.org"])
    rows = list(read_rows(OneWayStream(data), "list.xlsx"))
    assert addresses(rows) == ["a@example.org"]


def test_mixed_rows_report_problems_and_normalize_good_rows():
    """Good rows are normalized and bad ones explained, each with its own row number."""
    data = (
        b"Phone,Name\n"
        b"2025550123,Ana\n"
        b"not a number,Bo\n"
        b",Cy\n"
        b"\n"
        b'"=""2025550124""",Di\n'
        b'"=HYPERLINK(""http://x.example"")",Ed\n'
        b"2.02555E+09,Fa\n"
        b"bad@,Gu\n"
    )
    rows = rows_of(data)
    got = [(r.row_number, r.address, r.problem) for r in rows]
    assert got[:4] == [
        (2, "+12025550123", None),
        (3, None, "Invalid phone number: it is not a phone number"),
        (4, None, "Empty"),
        (6, "+12025550124", None),
    ]
    assert got[4][:2] == (7, None) and got[4][2].startswith("Invalid phone number: ")
    assert got[5][:2] == (8, None) and "scientific notation" in got[5][2]
    assert got[6][:2] == (9, None) and got[6][2].startswith("Invalid email address: ")
    assert all(r.kind is None for r in rows if r.problem)


def test_duplicates_point_at_the_first_row():
    """A repeated address, in any spelling, is reported as a duplicate of its first row."""
    rows = rows_of(b"Phone\n2025550123\nA@example.org\n(202) 555-0123\na@EXAMPLE.org\n")
    assert [r.problem for r in rows] == [None, None, "Duplicate of row 2", "Duplicate of row 3"]
    assert rows[2].address == "+12025550123"


def test_email_column_is_found_without_header():
    """A header-less column of email addresses is found and lower-cased."""
    rows = rows_of(b"Ana,Ana@Example.org\nBo,bo@example.org\n")
    assert [(r.kind, r.address) for r in rows] == [
        ("email", "ana@example.org"),
        ("email", "bo@example.org"),
    ]


def test_phone_and_email_columns_both_yield_rows():
    """With phone and email headers, each filled cell yields its own row."""
    data = b"Email,Name,Phone\na@example.org,Ana,2025550123\n,Bo,2025550124\n,Cy,\n"
    rows = rows_of(data)
    assert [(r.row_number, r.kind, r.address) for r in rows] == [
        (2, "email", "a@example.org"),
        (2, "phone", "+12025550123"),
        (3, "phone", "+12025550124"),
        (4, None, None),
    ]
    assert rows[-1].problem == "Empty"


def test_old_xls_workbook_is_rejected_with_advice():
    """An Excel 97-2003 .xls file is refused, telling staff to save as CSV or XLSX."""
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)
    with pytest.raises(ImportFileError, match="save it as CSV or XLSX"):
        rows_of(data, "list.xls")
    with pytest.raises(ImportFileError, match=r"\.xls"):
        sniff_format("list.xls", data)


def test_other_binary_files_are_rejected_with_advice():
    """A PDF, an image or random binary is refused with the same advice."""
    for data in (b"%PDF-1.7\n...", b"\x89PNG\r\n\x1a\n" + bytes(20), bytes(range(256))):
        with pytest.raises(ImportFileError, match="save it as CSV or XLSX"):
            rows_of(data, "list.csv")


def test_broken_xlsx_is_rejected_with_advice():
    """A zip that is not a workbook is refused, not crashed on."""
    with pytest.raises(ImportFileError, match="save it as CSV or XLSX"):
        rows_of(b"PK\x03\x04" + bytes(100), "list.xlsx")


def test_sniff_format_goes_by_content_not_name():
    """The format comes from the first bytes: zip means XLSX, text means CSV."""
    assert sniff_format("list.csv", xlsx_bytes(["Phone"])[:8]) == "xlsx"
    assert sniff_format("list.xlsx", b"Phone\n2025550123\n") == "csv"
    assert sniff_format("list.txt", "Phone\n".encode("utf-16")) == "csv"


def test_file_over_the_size_limit_is_rejected():
    """A file longer than max_bytes is refused, with the limit in the message."""
    with pytest.raises(ImportFileError, match="larger than 20 MB"):
        rows_of(b"2025550123\n" * (2 * 1024 * 1024))
    with pytest.raises(ImportFileError, match="larger than 1,000 bytes"):
        rows_of(b"2025550123\n" * 100, max_bytes=1000)


def test_csv_from_an_unseekable_stream_is_read():
    """A CSV upload that cannot seek is decoded as it arrives, in small reads."""
    data = "Phone,Note\r\n".encode("utf-16") + "2025550123,Zoë\r\n".encode("utf-16-le") * 3
    rows = list(read_rows(OneWayStream(data), "list.csv"))
    assert [r.problem for r in rows] == [None, "Duplicate of row 2", "Duplicate of row 2"]
    assert rows[0].note == "Zoë"


def test_unseekable_stream_over_the_limit_is_rejected_while_reading():
    """When the size is not known up front, bytes are counted as they are read."""
    stream = OneWayStream(b"Phone\n" + b"2025550123\n" * 20_000)
    with pytest.raises(ImportFileError, match="larger than"):
        list(read_rows(stream, "list.csv", max_bytes=100_000))


def test_empty_and_blank_files_are_rejected():
    """Empty files, blank-only files and header-only files are refused."""
    with pytest.raises(ImportFileError, match="empty"):
        rows_of(b"")
    with pytest.raises(ImportFileError, match="empty"):
        rows_of(b"\r\n , \r\n\r\n")
    with pytest.raises(ImportFileError, match="header row but no rows"):
        rows_of(b"Phone,Notes\n,\n")


def test_file_without_addresses_is_rejected():
    """A file with no column of addresses in its first rows is refused."""
    with pytest.raises(ImportFileError, match="No column of phone numbers or email addresses"):
        rows_of(b"Name,Grade\nAna,3\nBo,4\n")


def fast_phone(value: str, region: str = "US") -> str:
    """A stand-in for normalize_phone: ten digits become +1 and the digits, else an error."""
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) != 10:
        raise AddressError(value, "it is not a valid phone number")
    return "+1" + digits


def test_hundred_thousand_rows_stream_in_bounded_memory(monkeypatch):
    """A 100,000-row CSV is read row by row: peak memory stays far below the file's rows.

    The real phone normalizer takes ~40 us a row and five times that under tracemalloc, so a
    stand-in keeps this test fast; addresses stay unique, so duplicate tracking is measured.
    """
    monkeypatch.setattr(importfile, "normalize_phone", fast_phone)
    lines = ["Name,Phone,Note"]
    lines += [f"Parent {i},(202) {200 + i // 10_000}-{i % 10_000:04d},n{i}" for i in range(100_000)]
    data = ("\r\n".join(lines) + "\r\n").encode()
    del lines
    stream = io.BytesIO(data)
    tracemalloc.start()
    try:
        count = problems = 0
        for row in read_rows(stream, "big.csv"):
            count += 1
            problems += row.problem is not None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (count, problems) == (100_000, 0)
    assert peak < 30 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_yield_rows_or_a_file_error(data):
    """Any bytes either raise ImportFileError or yield ImportRows, never another exception."""
    try:
        rows = rows_of(data)
    except ImportFileError as exc:
        assert str(exc)
        return
    assert all(isinstance(r, ImportRow) and r.row_number >= 1 for r in rows)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(st.text(max_size=30), min_size=1, max_size=4), min_size=1, max_size=20),
    st.sampled_from([",", ";", "\t", "|"]),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
)
def test_arbitrary_text_rows_never_crash(table, delimiter, encoding):
    """Any table of text, written as CSV, reads without crashing and with consistent rows."""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerows(table)
    data = out.getvalue().encode(encoding, errors="replace")
    try:
        rows = rows_of(data)
    except ImportFileError:
        return
    for row in rows:
        assert row.row_number >= 1
        if row.problem is None:
            assert row.kind in ("phone", "email") and row.address
        elif not row.problem.startswith("Duplicate of row "):
            assert row.kind is None and row.address is None


# --- the North American fast path agrees with the general one -------------------------------

_digits = st.text(alphabet="0123456789", min_size=1, max_size=5)
_separator = st.sampled_from(["", "", " ", "-", ".", "(", ")", "  ", "/"])


@settings(max_examples=400, deadline=None)
@given(
    lead=st.sampled_from(["", "", "1", "+1", "+", "+ 1", "01", "11", "+11", "1 "]),
    parts=st.one_of(
        st.tuples(*(st.text(alphabet="0123456789", min_size=n, max_size=n) for n in (3, 3, 4))),
        st.tuples(
            st.from_regex(r"[2-9][0-9]{2}", fullmatch=True),
            st.from_regex(r"[2-9][0-9]{2}", fullmatch=True),
            st.from_regex(r"[0-9]{4}", fullmatch=True),
        ),  # fmt: skip
        st.lists(_digits, min_size=1, max_size=4),
    ),
    seps=st.lists(_separator, min_size=4, max_size=4),
    wrap=st.sampled_from(["{}", " {} ", '"{}"', '="{}"', "'{}", "{}.0", "tel:{}", "\u00a0{}"]),
    region=st.sampled_from(["US", "US", "CA", "GB", "MX"]),
)
@example(lead="", parts=["202", "555", "0123"], seps=["(", ") ", "-", ""], wrap="{}", region="US")
@example(lead="+1", parts=["202555", "0000"], seps=["", "", ".", ""], wrap="{}", region="US")
@example(lead="", parts=["202", "555", "0123"], seps=["", " ", " ", ""], wrap="{}", region="GB")
def test_the_fast_path_for_north_american_numbers_agrees_with_the_general_path(
    lead, parts, seps, wrap, region
):
    """A cell the reader reads through its one-pattern path ("(202) 555-0123", "+1 202 555
    0123" …) comes out as the general path (normalize_phone, through consent.e164 or
    phonenumbers) would have it: the same number, or the same refusal."""
    from consent.import_reader import _clean, _normalize, _normalize_slowly

    body = lead + "".join(s + p for s, p in zip(seps, parts, strict=False))
    raw = wrap.format(body)
    text = _clean(raw)
    expected = _normalize_slowly(text, region) if text else (None, None, "Empty")
    assert _normalize(raw, region) == expected
