"""Zip bombs and oversized workbooks through ``manage.py import-scores``: time, peak memory, stderr lines.

    python bench/xlsx_bomb.py [--inflate-gb 5.5] [--db URL]

Cases (each in a fresh process, so its peak memory is its own):

* ``bomb``: a ~5.4 MB .xlsx whose sheet unpacks to ~5.5 GB (the same data row over and over, as
  in issue 18). Refused from the archive's directory before anything is unpacked.
* ``dense``: a 60 MB sheet compressed ~250 times (under the 200 MB total): refused by the ratio.
* ``worst-bad``: the largest sheet the limits let through (just under 200 MB unpacked: about
  860,000 rows of five inline-string and number cells, compressed ~11 times), every row wrong
  twice: read, validated, the first 100 problems printed.
* ``worst-good``: the same size with valid rows, ``--dry-run`` (read, validate, plan; no write).

Prints one line per case: file size, unpacked size (MB = 1,048,576 bytes, as the app's messages
count), seconds, peak RSS of the command, stderr lines, exit code; first the same for a 2-row
workbook, which is what the command costs before it reads anything. Writes its files to a
temporary folder and removes them.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

import openpyxl

ROOT = Path(__file__).resolve().parent.parent
SHEET = "xl/worksheets/sheet1.xml"
MB = 1024 * 1024
HEADER = ["patient_id", "therapist_id", "week", "instrument", "score"]
NS = b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
END = b"</sheetData></worksheet>"


def _cell(ref: str, value: str | int) -> bytes:
    if isinstance(value, int):
        return f'<c r="{ref}"><v>{value}</v></c>'.encode()
    return f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>'.encode()


def _row(n: int, values: list[str | int]) -> bytes:
    return f'<row r="{n}">'.encode() + b"".join(_cell(f"{c}{n}", v) for c, v in zip("ABCDE", values, strict=True)) \
        + b"</row>"


def workbook(chunks: Iterable[bytes]) -> tuple[bytes, int]:
    """An openpyxl workbook whose first sheet is ``chunks`` (streamed through zlib); its bytes and
    the sheet's unpacked size."""
    book = openpyxl.Workbook()
    book.active.append(HEADER)
    buf = io.BytesIO()
    book.save(buf)
    source = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    size = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != SHEET:
                target.writestr(info, source.read(info.filename))
                continue
            part = zipfile.ZipInfo(SHEET, date_time=info.date_time)
            part.compress_type = zipfile.ZIP_DEFLATED
            with target.open(part, "w", force_zip64=True) as sheet:
                for chunk in chunks:
                    sheet.write(chunk)
                    size += len(chunk)
    return out.getvalue(), size


def bomb(inflated: int) -> Iterable[bytes]:
    yield NS + _row(1, list(HEADER))
    row = (b'<row><c t="inlineStr"><is><t>P1</t></is></c><c t="inlineStr"><is><t>ther.x</t></is></c>'
           b'<c><v>0</v></c><c t="inlineStr"><is><t>SPIN</t></is></c><c><v>99</v></c></row>')
    chunk = row * ((1 << 20) // len(row))
    for _ in range(inflated // len(chunk)):
        yield chunk
    yield END


def largest(*, valid: bool, limit: int) -> Iterable[bytes]:
    """Rows of distinct patients until just under ``limit`` bytes (and the row limit)."""
    yield NS + _row(1, list(HEADER))
    size, n, rows = 0, 2, []
    while n <= 1_048_576:
        values: list[str | int] = [f"P{n:07d}", f"ther.{n % 200:03d}", 1 + n % 52 if valid else 0,
                                   "SPIN", n % 60 if valid else 99]
        row = _row(n, values)
        if size + len(row) + 2048 > limit:
            break
        rows.append(row)
        size += len(row)
        n += 1
        if len(rows) == 5000:
            yield b"".join(rows)
            rows = []
    yield b"".join(rows) + END


def measure(path: Path, db: str, *extra: str) -> tuple[float, float, int, int]:
    """Seconds, peak RSS (MB) of the command, stderr lines and exit code of one import."""
    probe = ("import resource, subprocess, sys, time\n"
             "t = time.perf_counter()\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True)\n"
             "s = time.perf_counter() - t\n"
             "print(s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
             "len(r.stderr.splitlines()), r.returncode)\n"
             "sys.stderr.write(r.stderr.decode(errors='replace')[-600:])\n")
    cmd = [sys.executable, "-c", probe, sys.executable, str(ROOT / "manage.py"), "import-scores", str(path),
           "--db", db, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    seconds, peak, lines, code = done.stdout.split()
    tail = done.stderr.strip().splitlines()
    print(f"    stderr ends: {tail[-1][:160] if tail else '(nothing)'}")
    return float(seconds), float(peak), int(lines), int(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inflate-gb", type=float, default=5.5)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: a throw-away SQLite file)")
    parser.add_argument("--cases", default="bomb,dense,worst-bad,worst-good")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        db = args.db or f"sqlite:///{tmp / 'bench.db'}"
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "init-db", "--db", db], check=True,
                       capture_output=True, cwd=ROOT)
        limit = 200 * MB - 64 * 1024
        cases = {"bomb": (lambda: bomb(int(args.inflate_gb * 1e9)), ()),
                 "dense": (lambda: bomb(60 * MB), ()),
                 "worst-bad": (lambda: largest(valid=False, limit=limit), ()),
                 "worst-good": (lambda: largest(valid=True, limit=limit), ("--dry-run",))}
        baseline = measure(_write(tmp, "tiny.xlsx", workbook([NS + _row(1, list(HEADER)), _row(
            2, ["P1", "ther.x", 1, "SPIN", 20]), END])[0]), db, "--dry-run")
        print(f"baseline (2-row workbook, dry run): {baseline[0]:.1f} s, peak {baseline[1]:.0f} MB")
        for name in args.cases.split(","):
            make, extra = cases[name]
            started = time.perf_counter()
            data, inflated = workbook(make())
            built = time.perf_counter() - started
            path = _write(tmp, f"{name}.xlsx", data)
            seconds, peak, lines, code = measure(path, db, *extra)
            print(f"{name}: {len(data) / 1e6:.1f} million bytes, {inflated / MB:,.0f} MB unpacked (built in "
                  f"{built:.0f} s): {seconds:.1f} s, peak {peak:.0f} MB, {lines} stderr lines, exit {code}")
            path.unlink()


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


if __name__ == "__main__":
    main()
