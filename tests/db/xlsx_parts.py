"""Hand-made Excel workbooks for import tests: a real openpyxl workbook whose first sheet's XML is
replaced (a stale ``<dimension>``, a truncated sheet, a zip bomb streamed through zlib)."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable

import openpyxl

SHEET = "xl/worksheets/sheet1.xml"
HEADER = ["patient_id", "therapist_id", "week", "instrument", "score"]
_NS = b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'


def workbook(rows: list[list[object]]) -> bytes:
    """An ordinary .xlsx of ``rows`` (the first one the header), written by openpyxl."""
    book = openpyxl.Workbook()
    for r in rows:
        book.active.append(r)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def with_sheet(data: bytes, chunks: Iterable[bytes]) -> bytes:
    """``data`` with its first sheet's XML replaced by the concatenation of ``chunks`` (streamed,
    so a sheet of gigabytes never sits in memory)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for info in source.infolist():
            if info.filename == SHEET:
                part = zipfile.ZipInfo(SHEET, date_time=info.date_time)
                part.compress_type = zipfile.ZIP_DEFLATED
                with target.open(part, "w", force_zip64=True) as sheet:
                    for chunk in chunks:
                        sheet.write(chunk)
            else:
                target.writestr(info, source.read(info.filename))
    return out.getvalue()


def sheet_xml(data: bytes) -> bytes:
    return zipfile.ZipFile(io.BytesIO(data)).read(SHEET)


def stale_dimension(data: bytes, ref: str = "A1:E4") -> bytes:
    """``data`` whose sheet declares the range ``ref`` whatever it holds (as some writers leave it)."""
    xml = re.sub(rb'<dimension ref="[^"]*"', f'<dimension ref="{ref}"'.encode(), sheet_xml(data))
    return with_sheet(data, [xml])


def bomb_chunks(inflated: int, *, row: bytes | None = None) -> Iterable[bytes]:
    """A sheet of about ``inflated`` bytes: a header and the same data row over and over (so it
    compresses about a thousand times), in 1 MB chunks."""
    cells = b"".join(b'<c t="inlineStr"><is><t>' + v.encode() + b"</t></is></c>" for v in HEADER)
    yield _NS + b"<sheetData><row>" + cells + b"</row>"
    row = row or (b'<row><c t="inlineStr"><is><t>P1</t></is></c><c t="inlineStr"><is><t>ther.x</t></is></c>'
                  b'<c><v>0</v></c><c t="inlineStr"><is><t>SPIN</t></is></c><c><v>99</v></c></row>')
    chunk = row * max(1, (1 << 20) // len(row))
    for _ in range(max(1, inflated // len(chunk))):
        yield chunk
    yield b"</sheetData></worksheet>"
