"""Read an uploaded opt-out list (CSV or XLSX) row by row, without a database.

Staff upload a spreadsheet of phone numbers and/or email addresses. This module finds the
address column(s), normalizes every cell and reports each row's problem in words staff
understand. Files are streamed: a 100,000-row file is never held in memory whole; only the
set of addresses already seen (for duplicate detection) grows with the file.

Problems with the whole file raise ImportFileError, whose message can be shown to staff as is.
read_rows() raises it straight away for what can be checked up front (size, format, no address
column) and may also raise it part-way through iteration (a seriously broken file, or an
unseekable stream that turns out to be too large), so callers should treat the import as
all-or-nothing.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import tempfile
import unicodedata
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from itertools import chain
from typing import BinaryIO

from consent import e164
from consent.addresses import AddressError, normalize_email, normalize_phone

__all__ = ["ImportFileError", "ImportRow", "Layout", "inspect", "read_rows", "sniff_format"]

MAX_BYTES = 20 * 1024 * 1024
HEAD_BYTES = 64 * 1024  # the encoding and format are decided from this much of the file
SAMPLE_ROWS = 50  # non-empty rows looked at to find the address column
_SAMPLE_COLUMNS = 100  # columns looked at to find the address column
_DELIMITERS = ("\t", ";", "|", ",")  # order breaks ties: tab and ; files often contain commas
_MAX_LINE = 1_000_000  # characters in one CSV line; longer means the file is not a list
_SHARED_STRINGS_EXPANSION = 5  # xlsx shared strings are loaded whole: cap them at 5 x max_bytes

_XLSX_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # old binary Office files: .xls, .doc
_BINARY_MAGIC = (
    b"%PDF",
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",
    b"\x1f\x8b",
    b"Rar!",
    b"7z\xbc\xaf",
    b"PK\x05\x06",  # empty zip
)
_CONTROL_BYTES = frozenset(range(32)) - {9, 10, 12, 13, 26}
_SAVE_AS = "open it in Excel, save it as CSV or XLSX (Excel Workbook), and upload it again"

_PHONE_HEADERS = frozenset(
    {
        "phone",
        "phones",
        "phonenumber",
        "phonenumbers",
        "phoneno",
        "cell",
        "cellphone",
        "cellnumber",
        "cellphonenumber",
        "mobile",
        "mobilephone",
        "mobilenumber",
        "telephone",
        "telephonenumber",
        "tel",
    }
)
_EMAIL_HEADERS = frozenset({"email", "emails", "emailaddress", "emailaddresses"})
_GENERIC_HEADERS = frozenset({"number", "address", "addresses", "contact"})
_NOTE_HEADERS = frozenset({"note", "notes", "comment", "comments"})

_STRIP = " \t\r\n\v\f\xa0\u200b\u200c\u200d\u2060\ufeff"
_EXCEL_TEXT = re.compile(r'=\s*"(.*)"', re.S)  # ="2025550123", Excel's way to keep digits as text
_QUOTES = "\"'\u2018\u2019\u201c\u201d"
_SCHEME = re.compile(r"(?:mailto|tel|sms):", re.I)
_SCIENTIFIC = re.compile(r"[0-9](?:[.,][0-9]+)?[eE]\+?[0-9]+")
_FLOAT_DIGITS = re.compile(r"(\+?[0-9]{7,15})\.0+")
_SCIENTIFIC_WHY = (
    "Excel shortened it to scientific notation and the digits are lost; "
    "format the column as Text in Excel and save the file again"
)


class ImportFileError(ValueError):
    """The uploaded file as a whole cannot be imported; the message is written for staff."""


@dataclass(frozen=True)
class ImportRow:
    """One address cell of the file: its row, what it held, and what is wrong with it if anything.

    Rows with a problem other than "Duplicate of row N" have kind and address None; duplicates keep
    their normalized address so the row can be shown, but should not be imported again.
    """

    row_number: int  # 1-based, as Excel numbers rows (a header row counts)
    raw: str  # the cell text as given
    kind: str | None  # "phone" | "email" | None when invalid
    address: str | None  # normalized address or None
    problem: str | None  # None if fine, else e.g. "Duplicate of row 4"
    note: str | None  # the "note"/"comment" column of that row when there is one
    channel: str | None = None  # the row's own channel ("voice", "text", "both", "email", "all")
    date: str | None = None  # the row's date column, as written
    ignored: str | None = None  # why the row is not a data row (blank, header, title)


def sniff_format(filename: str, head: bytes) -> str:
    """Return "xlsx" or "csv" from the file's first bytes, or raise ImportFileError for other files."""
    name = filename or "The file"
    if head.startswith(_XLSX_MAGIC):
        return "xlsx"
    if head.startswith(_OLE_MAGIC):
        raise ImportFileError(
            f"{name} is an old-style Excel 97-2003 (.xls) workbook, which cannot be read; {_SAVE_AS}."
        )
    if head.startswith(_BINARY_MAGIC):
        raise ImportFileError(f"{name} is not a spreadsheet; {_SAVE_AS}.")
    if _bom_encoding(head) or _utf16_without_bom(head):
        return "csv"
    start = head.lstrip(b" \t\r\n").lower()
    if start.startswith((b"<!doctype html", b"<html", b"<table", b"<?xml")):
        raise ImportFileError(
            f"{name} is a web page or XML file rather than a real spreadsheet; {_SAVE_AS}."
        )
    sample = head[:4096]
    if b"\x00" in sample or sum(b in _CONTROL_BYTES for b in sample) > len(sample) // 20:
        raise ImportFileError(f"{name} is not a CSV or Excel file; {_SAVE_AS}.")
    return "csv"


def read_rows(
    stream: BinaryIO,
    filename: str,
    *,
    region: str = "US",
    max_bytes: int = MAX_BYTES,
    roles: list[str] | None = None,
    header_row: int | None = None,
    with_ignored: bool = False,
) -> Iterator[ImportRow]:
    """Yield one ImportRow per address cell of an uploaded CSV or XLSX file, reading it as a stream.

    The header row is looked for among the first rows (a title row may sit above it); `roles`
    (with `header_row`) is a mapping of the columns chosen by staff instead. With `with_ignored`,
    blank, title and header rows are yielded too (their `ignored` says which), so that every
    row of the file is accounted for; without it they are skipped. A row with something in it
    but no address yields a problem ("Empty").
    Raises ImportFileError at once when the file is too large, not CSV/XLSX, empty or has no
    column of addresses; it can also be raised during iteration for a file broken further down.
    """
    records, close = _records(stream, filename, max_bytes)
    try:
        plan = _plan(records, region, roles, header_row)
    except BaseException:
        close()
        raise
    return _rows(plan, region, close, with_ignored)


def _records(stream: BinaryIO, filename: str, max_bytes: int):
    """The file's records (number, cells) and a function that closes what it opened."""
    seekable = _is_seekable(stream)
    start = stream.tell() if seekable else 0
    if seekable:
        size = stream.seek(0, io.SEEK_END) - start
        stream.seek(start)
        if size > max_bytes:
            raise ImportFileError(_too_large(max_bytes))
    head = _read_head(stream, HEAD_BYTES)
    if len(head) > max_bytes:
        raise ImportFileError(_too_large(max_bytes))
    if not head:
        raise ImportFileError("The file is empty.")
    fmt = sniff_format(filename, head)
    if fmt == "xlsx":
        if seekable:
            stream.seek(start)
            return _xlsx_records(stream, filename, max_bytes)
        spool = _spool(head, stream, max_bytes)
        try:
            records, close_workbook = _xlsx_records(spool, filename, max_bytes)
        except BaseException:
            spool.close()
            raise

        def close() -> None:
            close_workbook()
            spool.close()

        return records, close
    spool = _spool(head, stream, max_bytes)
    text = _open_text(spool)
    return _csv_records(text), text.close


# -- whole-file checks -------------------------------------------------------------------------


def _too_large(max_bytes: int) -> str:
    size = max_bytes / (1024 * 1024)
    shown = f"{size:g} MB" if size >= 1 else f"{max_bytes:,} bytes"
    return (
        f"The file is larger than {shown}, the most that can be uploaded at once; "
        "split it into smaller files and upload each one."
    )


def _is_seekable(stream: BinaryIO) -> bool:
    try:
        if not stream.seekable():
            return False
        stream.tell()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def _read_head(stream: BinaryIO, size: int) -> bytes:
    """Read up to size bytes, however many reads the stream needs."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError("read_rows() needs a binary stream, not a text stream")
        parts.append(bytes(chunk))
        got += len(chunk)
    return b"".join(parts)


class _Replay(io.RawIOBase):
    """The already-read head of a stream followed by the rest, raising when over the size limit."""

    def __init__(self, head: bytes, stream: BinaryIO, max_bytes: int):
        self._head = memoryview(head)
        self._stream = stream
        self._max_bytes = max_bytes
        self._count = len(head)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        chunk = self._stream.read(len(buffer))
        if not chunk:
            return 0
        self._count += len(chunk)
        if self._count > self._max_bytes:
            raise ImportFileError(_too_large(self._max_bytes))
        n = len(chunk)
        buffer[:n] = chunk
        return n


def _spool(head: bytes, stream: BinaryIO, max_bytes: int) -> BinaryIO:
    """Copy an unseekable upload to a temporary file (zip files need seeking), within the limit."""
    spool = tempfile.SpooledTemporaryFile(max_size=HEAD_BYTES * 16)
    source = _Replay(head, stream, max_bytes)
    buffer = bytearray(HEAD_BYTES)
    while n := source.readinto(buffer):
        spool.write(buffer[:n])
    spool.seek(0)
    return spool  # type: ignore[return-value]


# -- CSV ---------------------------------------------------------------------------------------


def _bom_encoding(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text without a BOM shows as ASCII with every other byte zero."""
    sample = head[:1024]
    if len(sample) < 4:
        return None
    half = len(sample) // 2
    even_zero = sample[0::2].count(0)
    odd_zero = sample[1::2].count(0)
    if odd_zero > 0.9 * half and even_zero < 0.1 * half:
        return "utf-16-le"
    if even_zero > 0.9 * half and odd_zero < 0.1 * half:
        return "utf-16-be"
    return None


def _detect_encoding(head: bytes) -> str:
    """UTF-8/16/32 by BOM, UTF-8 when the head decodes as such, else Excel's Windows cp1252."""
    found = _bom_encoding(head) or _utf16_without_bom(head)
    if found:
        return found
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < HEAD_BYTES)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def _whole_file_encoding(spool: BinaryIO) -> tuple[str, int]:
    """The encoding of the whole file and the bytes to skip (a BOM): by BOM first; a UTF-8 BOM
    or no BOM is then checked by decoding the whole text as UTF-8, and cp1252 (Excel's
    Windows encoding) is used when that fails (a cp1252 file saved with a UTF-8 BOM)."""
    head = spool.read(HEAD_BYTES)
    spool.seek(0)
    found = _bom_encoding(head) or _utf16_without_bom(head)
    if found and found != "utf-8-sig":
        return found, 0
    skip = len(codecs.BOM_UTF8) if found == "utf-8-sig" else 0
    decoder = codecs.getincrementaldecoder("utf-8")()
    spool.seek(skip)
    try:
        while block := spool.read(HEAD_BYTES):
            decoder.decode(block)
        decoder.decode(b"", final=True)
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "cp1252"
    spool.seek(0)
    return encoding, skip


def _open_text(spool: BinaryIO) -> io.TextIOWrapper:
    encoding, skip = _whole_file_encoding(spool)
    spool.seek(skip)
    return io.TextIOWrapper(
        spool,  # type: ignore[arg-type]
        encoding=encoding,
        errors="replace",  # cp1252's five undefined bytes: the row is reported, never stored
        newline="",  # csv handles \r\n and newlines inside quotes itself
    )


def _lines(text: io.TextIOWrapper) -> Iterator[str]:
    number = 0
    while line := text.readline(_MAX_LINE):
        number += 1
        if len(line) >= _MAX_LINE and not line.endswith(("\n", "\r")):
            raise ImportFileError(
                f"Line {number} of the file is over {_MAX_LINE:,} characters long, "
                f"so it is not a list of addresses; {_SAVE_AS}."
            )
        yield line


def _sniff_delimiter(lines: list[str]) -> str:
    """The delimiter that splits the most sample lines into the same number (>1) of fields;
    between two that do it as often, the one that splits more lines at all (a comma file whose
    cells hold a tab splits every line by comma, a few by tab); then _DELIMITERS' order."""
    best, best_score = ",", (0, 0)
    for delimiter in _DELIMITERS:
        try:
            widths = [len(r) for r in csv.reader(lines, delimiter=delimiter) if r]
        except csv.Error:
            continue
        split = [w for w in widths if w > 1]
        if not split:
            continue
        common = max(set(split), key=split.count)
        score = (split.count(common), len(split))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _csv_records(text: io.TextIOWrapper) -> Iterator[tuple[int, list[str]]]:
    lines = _lines(text)
    sample: list[str] = []
    size = 0
    for line in lines:
        sample.append(line)
        size += len(line)
        if len(sample) >= SAMPLE_ROWS or size >= HEAD_BYTES:
            break
    reader = csv.reader(chain(sample, lines), delimiter=_sniff_delimiter(sample), strict=False)
    number = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(
                f"Row {number + 1} of the file could not be read as CSV ({exc}); {_SAVE_AS}."
            ) from None
        number += 1
        yield number, cells


# -- XLSX --------------------------------------------------------------------------------------


def _xlsx_records(source: BinaryIO, filename: str, max_bytes: int):
    """Rows of the workbook's active sheet as text cells, and a function that closes it."""
    from openpyxl import load_workbook  # imported here: CSV-only callers need not pay for it

    name = filename or "The file"
    unreadable = f"{name} could not be read as an Excel workbook; {_SAVE_AS}."
    start = source.tell()
    try:
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                if info.filename.lower().endswith("sharedstrings.xml") and (
                    info.file_size > _SHARED_STRINGS_EXPANSION * max_bytes
                ):
                    raise ImportFileError(
                        f"{name} holds too much text to read; "
                        "save it as CSV and upload that instead."
                    )
        source.seek(start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            workbook = load_workbook(source, read_only=True, data_only=True)
    except ImportFileError:
        raise
    except Exception:  # openpyxl and zipfile raise many kinds of error for a broken file
        raise ImportFileError(unreadable) from None

    def close() -> None:
        try:
            workbook.close()
        except Exception:  # noqa: S110 - closing a broken workbook is best effort
            pass

    sheet = workbook.active
    if sheet is None or not hasattr(sheet, "reset_dimensions"):
        sheets = [s for s in workbook.worksheets if hasattr(s, "reset_dimensions")]
        if not sheets:
            close()
            raise ImportFileError(f"{name} has no worksheet to read.")
        sheet = sheets[0]
    sheet.reset_dimensions()  # some programs write wrong sizes; read what is really there

    def records() -> Iterator[tuple[int, list[str]]]:
        number = 0
        rows = sheet.iter_rows(values_only=True)
        while True:
            try:
                values = next(rows)
            except StopIteration:
                return
            except ImportFileError:
                raise
            except Exception:
                raise ImportFileError(
                    f"{name} is damaged after row {number} and could not be read; {_SAVE_AS}."
                ) from None
            number += 1
            yield number, [_cell_text(v) for v in values]

    return records(), close


def _cell_text(value: object) -> str:
    """Excel cell value as the text staff see; whole-number floats lose their ".0"."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e17:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


# -- finding the header row and the columns ----------------------------------------------------

PHONE, EMAIL, CHANNEL, NOTE, DATE, IGNORE = "phone", "email", "channel", "note", "date", "ignore"
ROLES = (PHONE, EMAIL, CHANNEL, NOTE, DATE, IGNORE)
HEADER_SCAN = 20  # non-blank rows searched for the header row (title rows may sit above it)

# Header words, compared without case, accents, spaces or punctuation ("Teléfono celular" ->
# "telefonocelular"). English, Spanish, and the exports of Call-Em-All ("Phone Number",
# "Opt Out Type"), SchoolMessenger ("Destination", "Contact Type"), Remind ("Phone", "Email",
# "Name") and Mailchimp ("Email Address", "UNSUB_TIME", "UNSUB_REASON", "LEID", "EUID").
_CHANNEL_KEYS = frozenset(
    {
        "optouttype", "type", "tipo", "channel", "channels", "canal", "canales", "tipodebaja",
        "optoutchannel", "medium", "medio", "contacttype", "method", "metodo", "via",
        "tipodeexclusion", "tipodecontacto", "deliverytype", "messagetype",
    }
)  # fmt: skip
_NOTE_KEYS = frozenset(
    {
        "note", "notes", "comment", "comments", "nota", "notas", "comentario", "comentarios",
        "reason", "unsubreason", "optoutreason", "motivo", "razon", "observaciones",
    }
)  # fmt: skip
_DATE_KEYS = frozenset(
    {
        "date", "fecha", "optouttime", "unsubtime", "optoutdate", "timestamp", "dateoptedout",
        "optedoutdate", "unsubscribedat", "unsubscribedate", "created", "createdat", "time",
        "datetime", "fechadebaja", "fechahora", "hora", "lastchanged", "optoutdatetime",
    }
)  # fmt: skip
_IGNORE_KEYS = frozenset(
    {
        "name", "firstname", "lastname", "fullname", "student", "studentname", "parent",
        "parentname", "nombre", "nombres", "apellido", "apellidos", "estudiante", "alumno",
        "school", "escuela", "grade", "grado", "id", "studentid", "leid", "euid", "memberrating",
        "optintime", "optinip", "confirmtime", "confirmip", "latitude", "longitude", "gmtoff",
        "dstoff", "timezone", "cc", "region", "notes2", "tags", "unsubcampaigntitle",
        "unsubcampaignid", "unsubreasonother", "phonetype", "language", "idioma", "status",
        "estado", "list", "lista", "campaign", "group", "class", "classname", "role",
        "relationship", "relacion", "count", "unsubscribedby", "optoutby", "source",
    }
)  # fmt: skip
_PHONE_PARTS = ("phone", "telefono", "celular", "movil", "cell", "mobile", "destination")
_PHONE_EXACT = _PHONE_HEADERS | {"tel", "cel", "numero", "numerodetelefono", "sms", "wireless"}
_EMAIL_PARTS = ("email", "correo", "mail")

# A per-row channel cell: what it says -> the choice it stands for.
ROW_CHANNELS = {
    "voice": "voice", "voz": "voice", "call": "voice", "calls": "voice", "llamada": "voice",
    "llamadas": "voice", "phone": "voice", "telefono": "voice",
    "text": "text", "texts": "text", "sms": "text", "texto": "text", "textos": "text",
    "mensaje": "text", "mensajes": "text",
    "both": "both", "ambos": "both", "voiceandtext": "both", "textandvoice": "both",
    "vozytexto": "both", "textoyvoz": "both", "voicetext": "both", "textvoice": "both",
    "email": "email", "correo": "email", "correoelectronico": "email", "mail": "email",
    "all": "all", "todos": "all", "todo": "all", "everything": "all",
}  # fmt: skip


def header_key(cell: str) -> str:
    """A header cell compared without case, accents, spaces or punctuation."""
    text = unicodedata.normalize("NFKD", cell or "").casefold()
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[^0-9a-z]", "", text)


_header_key = header_key


def role_of_header(cell: str) -> str | None:
    """The role a header names (phone, email, channel, note, date, ignore), None if unknown."""
    key = header_key(cell)
    if not key:
        return None
    if key in _CHANNEL_KEYS:
        return CHANNEL
    if key in _IGNORE_KEYS:
        return IGNORE
    if key in _NOTE_KEYS:
        return NOTE
    if key in _DATE_KEYS:
        return DATE
    if key in _EMAIL_HEADERS or any(part in key for part in _EMAIL_PARTS):
        return EMAIL
    if key in _PHONE_EXACT or any(part in key for part in _PHONE_PARTS):
        return PHONE
    if key in _GENERIC_HEADERS:
        return None
    return None


def row_channel(cell: str) -> str | None:
    """The choice a per-row channel cell stands for ("voice", "text", "both", "email", "all")."""
    return ROW_CHANNELS.get(header_key(cell))


@dataclass
class Layout:
    """Where the header row is and what each column holds; `unknown` lists the columns whose
    header was not recognised (the preview asks staff to map them)."""

    header_row: int | None  # 1-based record number of the header row, None without one
    headers: list[str]
    roles: list[str]
    unknown: list[int]

    @property
    def key(self) -> str:
        """The normalized header tuple, to remember a mapping for the next file like this."""
        return "|".join(header_key(h) for h in self.headers)[:1000]

    def as_dict(self) -> dict:
        return {"header_row": self.header_row, "headers": self.headers, "roles": self.roles}


@dataclass
class _Plan:
    layout: Layout
    records: Iterator[tuple[int, list[str]]]


def _clean(raw: str) -> str:
    """The cell without spaces, quotes and Excel's ="..." wrapper, ready to normalize."""
    text = raw.strip().strip(_STRIP)
    match = _EXCEL_TEXT.fullmatch(text)
    if match:
        text = match.group(1).strip(_STRIP)
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip(_STRIP)
    if text[:1] in _QUOTES:  # Excel's leading apostrophe for "keep as text"
        text = text[1:].strip(_STRIP)
    scheme = _SCHEME.match(text)
    if scheme:
        text = text[scheme.end() :].strip(_STRIP)
    digits = _FLOAT_DIGITS.fullmatch(text)
    if digits:
        text = digits.group(1)
    return text


# A North American number as most cells hold it once cleaned: "(202) 555-0123",
# "202-555-0123", "202.555.0123", "2025550123", "1-202-555-0123", "+1 202 555 0123". What
# matches is given to consent.e164 at once (one pattern, not the eight of normalize_phone's
# general path); a number it cannot vouch for takes the general path.
# tests/test_import_fixtures.py checks that both ways agree.
_NANP_CELL = re.compile(r"(\+1|1)?[ .-]?\(?([0-9]{3})\)?[ .-]?([0-9]{3})[ .-]?([0-9]{4})")


def _normalize(raw: str, region: str) -> tuple[str | None, str | None, str | None]:
    """Return (kind, address, None), or (None, None, problem) for an invalid cell."""
    text = _clean(raw)
    if not text:
        return None, None, "Empty"
    nanp = _NANP_CELL.fullmatch(text)
    if nanp is not None and (region == "US" or (nanp[1] == "+1" and text[0] == "+")):
        candidate = "+1" + nanp[2] + nanp[3] + nanp[4]
        if e164.verdict(candidate) is True:
            return "phone", candidate, None
    return _normalize_slowly(text, region)


def _normalize_slowly(text: str, region: str) -> tuple[str | None, str | None, str | None]:
    """_normalize of a cleaned, non-empty cell, every kind of address it may hold."""
    if "\ufffd" in text:
        return None, None, _UNREADABLE
    if "@" in text:
        try:
            return "email", normalize_email(text), None
        except AddressError as exc:
            return None, None, f"Invalid email address: {exc.why}"
    if _SCIENTIFIC.fullmatch(text):
        return None, None, f"Invalid phone number: {_SCIENTIFIC_WHY}"
    try:
        return "phone", normalize_phone(text, region), None
    except AddressError as exc:
        return None, None, f"Invalid phone number: {exc.why}"


_UNREADABLE = (
    "Holds a character that could not be read (the file's text encoding is mixed); "
    "fix the row in the file and import it again"
)


def _valid(cell: str, region: str) -> bool:
    return _normalize(cell, region)[2] is None


def _looks_like_address(cell: str) -> bool:
    """An attempt at an address (so a data row, even if invalid) rather than a header."""
    return "@" in cell or sum(c.isdigit() for c in cell) >= 7


def _is_blank(cells: list[str]) -> bool:
    return not any(cell.strip(_STRIP) for cell in cells)


def _cell(cells: list[str], index: int) -> str:
    return cells[index] if index < len(cells) else ""


def _best(columns: Iterable[int], scores: dict[int, int]) -> int | None:
    """The column with the most valid sample cells, leftmost on a tie; None if there are none."""
    ordered = sorted(columns)
    if not ordered:
        return None
    return max(ordered, key=lambda c: (scores.get(c, 0), -c))


def _scores(rows: list[tuple[int, list[str]]], region: str) -> dict[int, int]:
    found: dict[int, int] = {}
    for _, cells in rows:
        for index, cell in enumerate(cells[:_SAMPLE_COLUMNS]):
            if cell and _valid(cell, region):
                found[index] = found.get(index, 0) + 1
    return found


def _header_roles(cells: list[str], region: str) -> list[str | None] | None:
    """The roles of a header row's cells, or None when the row is not a header row (no cell
    names a phone or email column, or the row holds addresses itself)."""
    cells = cells[:_SAMPLE_COLUMNS]
    if any(_looks_like_address(c) and _valid(c, region) for c in cells):
        return None
    roles = [role_of_header(c) for c in cells]
    return roles if any(r in (PHONE, EMAIL) for r in roles) else None


def _layout(cells: list[str], number: int | None, roles: list[str | None]) -> Layout:
    headers = [c.strip(_STRIP) for c in cells[:_SAMPLE_COLUMNS]]
    while headers and not headers[-1] and (len(roles) < len(headers) or not roles[-1]):
        headers.pop()
    roles = list(roles) + [None] * (len(headers) - len(roles))
    unknown = [i for i, (h, r) in enumerate(zip(headers, roles, strict=False)) if h and r is None]
    return Layout(number, headers, [r or IGNORE for r in roles[: len(headers)]], unknown)


def _plan(
    records: Iterator[tuple[int, list[str]]],
    region: str,
    roles: list[str] | None = None,
    header_row: int | None = None,
) -> _Plan:
    """Find the header row (among the first HEADER_SCAN non-blank rows) and each column's role.

    With `roles` (a mapping chosen by staff), the header is the record `header_row` (None: no
    header) and the roles are those given."""
    sample: list[tuple[int, list[str]]] = []
    for record in records:
        sample.append(record)
        if sum(not _is_blank(c) for _, c in sample) > SAMPLE_ROWS:
            break
    filled = [r for r in sample if not _is_blank(r[1])]
    if not filled:
        raise ImportFileError("The file is empty: it has no rows with anything in them.")
    rest = chain(sample, records)

    if roles is not None:
        cells = next((c for n, c in sample if n == header_row), [])
        chosen = [r if r in ROLES else IGNORE for r in roles]
        layout = _layout(cells or [""] * len(chosen), header_row, chosen)
        layout.roles = chosen
        layout.unknown = []
        if not any(r in (PHONE, EMAIL) for r in chosen):
            raise ImportFileError("Choose at least one column of phone numbers or emails.")
        return _Plan(layout, rest)

    for number, cells in filled[:HEADER_SCAN]:
        found = _header_roles(cells, region)
        if found is not None:
            _require_data(filled, number)
            return _Plan(_layout(cells, number, found), rest)

    # No header names an address column: find the column by what its cells hold.
    everything = _scores(filled[:SAMPLE_ROWS], region)
    column = _best(everything, everything)
    if column is None:
        raise ImportFileError(
            "No column of phone numbers or email addresses was found in the first "
            f"{SAMPLE_ROWS} rows. Put the addresses in one column, ideally under a heading "
            'such as "Phone" or "Email", and upload the file again.'
        )
    first_number, first = filled[0]
    kind = PHONE
    for _number, cells in filled:
        if _valid(_cell(cells, column), region):
            kind = _normalize(_cell(cells, column), region)[0] or PHONE
            break
    head_cell = _cell(first, column)
    if not _valid(head_cell, region) and not _looks_like_address(head_cell):
        found = [role_of_header(c) for c in first[:_SAMPLE_COLUMNS]]
        found += [None] * (column + 1 - len(found))
        found[column] = kind
        _require_data(filled, first_number)
        return _Plan(_layout(first, first_number, found), rest)
    width = max(len(c) for _, c in filled[:SAMPLE_ROWS])
    found = [IGNORE] * width
    found[column] = kind
    layout = Layout(None, [""] * width, found, [])
    return _Plan(layout, rest)


def _require_data(filled: list[tuple[int, list[str]]], header: int) -> None:
    """The sample holds every filled row up to SAMPLE_ROWS: none below the header means none."""
    if not any(number > header for number, _ in filled):
        raise ImportFileError("The file has a header row but no rows of addresses below it.")


def inspect(
    stream: BinaryIO, filename: str, *, region: str = "US", max_bytes: int = MAX_BYTES
) -> Layout:
    """The file's header row and columns (reads only its first rows)."""
    records, close = _records(stream, filename, max_bytes)
    try:
        return _plan(records, region).layout
    finally:
        close()


def _rows(plan: _Plan, region: str, close, with_ignored: bool) -> Iterator[ImportRow]:
    seen: dict[str, int] = {}
    layout = plan.layout
    address_columns = [i for i, r in enumerate(layout.roles) if r in (PHONE, EMAIL)]
    note_columns = [i for i, r in enumerate(layout.roles) if r == NOTE]
    date_column = next((i for i, r in enumerate(layout.roles) if r == DATE), None)
    channel_column = next((i for i, r in enumerate(layout.roles) if r == CHANNEL), None)
    header = layout.header_row or 0
    try:
        for number, cells in plan.records:
            if number <= header or _is_blank(cells):
                if with_ignored:
                    why = BLANK if _is_blank(cells) else (HEADER if number == header else TITLE)
                    yield ImportRow(number, "", None, None, None, None, ignored=why)
                continue
            notes = [_cell(cells, i).strip(_STRIP) for i in note_columns]
            note = "; ".join(n for n in notes if n) or None
            when = _cell(cells, date_column).strip(_STRIP) if date_column is not None else ""
            channel = None
            problem_all = None
            if channel_column is not None:
                said = _cell(cells, channel_column).strip(_STRIP)
                if said:
                    channel = row_channel(said)
                    if channel is None:
                        problem_all = f'Unknown opt-out type "{said[:40]}"'
            if note and "\ufffd" in note:
                problem_all = _UNREADABLE
            filled = [c for c in address_columns if _cell(cells, c).strip(_STRIP)]
            if not filled:
                raw = " ".join(c.strip(_STRIP) for c in cells if c.strip(_STRIP))[:200]
                why = "Empty" if not with_ignored else "No phone number or email in this row"
                yield ImportRow(number, raw, None, None, problem_all or why, note, channel, when)
                continue
            for column in filled:
                raw = cells[column]
                kind, address, problem = _normalize(raw, region)
                if problem_all and problem is None:
                    kind, address, problem = None, None, problem_all
                if address is not None:
                    if address in seen:
                        problem = f"Duplicate of row {seen[address]}"
                    else:
                        seen[address] = number
                yield ImportRow(number, raw, kind, address, problem, note, channel, when or None)
    finally:
        close()


BLANK, HEADER, TITLE = "Blank row", "Header row", "Title row above the headers"
