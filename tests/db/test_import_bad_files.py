"""Bad files, one kind per case: each exits 2 with a row/column message and the store unchanged.

Every case runs ``manage.py import-scores`` on a database that already holds a few scores
(on SQLite and PostgreSQL), and compares a full dump of every table before and after.
Variants that must *pass* (semicolon, BOM, CRLF, blank lines, Excel) are checked too.
"""

from __future__ import annotations

import io
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from db.engine import make_engine, session_factory
from db.models import Base
from manage import app

runner = CliRunner()
H = "patient_id,therapist_id,week,instrument,score"
HI = H + ",administered_on," + ",".join(f"item_{i}" for i in range(1, 10))
BASELINE = f"{H}\nP0,ther.x,1,WAI-SR,40\nP0,ther.x,2,WAI-SR,44\n"


def dump_store(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order: the whole store, for before/after checks."""
    engine = make_engine(url)
    with session_factory(engine)() as session:
        out = {t.name: [tuple(r) for r in session.execute(select(t).order_by(*t.primary_key.columns))]
               for t in Base.metadata.sorted_tables}
    engine.dispose()
    return out


def _xlsx(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for r in rows:
        sheet.append(r)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def _gad(items: list[object], score: str = "", date: str = "") -> str:
    cells = [str(v) for v in items] + [""] * (9 - len(items))
    return f"P5,ther.x,1,GAD-7,{score},{date}," + ",".join(cells)


# (id, file name, content, expected "row R, column C" fragments)
BAD: list[tuple[str, str, bytes, list[str]]] = [
    ("out-of-range", "a.csv", f"{H}\nP1,ther.x,1,WAI-SR,61\n".encode(), ["row 2, column score"]),
    ("non-numeric", "a.csv", f"{H}\nP1,ther.x,1,WAI-SR,forty\n".encode(), ["row 2, column score"]),
    ("missing-column", "a.csv", b"patient_id,therapist_id,week,instrument\nP1,ther.x,1,WAI-SR\n",
     ["row 1, column score"]),
    ("unknown-instrument", "a.csv", f"{H}\nP1,ther.x,1,BDI-II,20\n".encode(), ["row 2, column instrument"]),
    ("week-0", "a.csv", f"{H}\nP1,ther.x,0,WAI-SR,40\n".encode(), ["row 2, column week"]),
    ("week-fractional", "a.csv", f"{H}\nP1,ther.x,1.5,WAI-SR,40\n".encode(), ["row 2, column week"]),
    ("week-too-large", "a.csv", f"{H}\nP1,ther.x,99999,WAI-SR,40\n".encode(), ["row 2, column week"]),
    ("duplicates-in-file", "a.csv", f"{H}\nP1,ther.x,1,WAI-SR,40\nP1,ther.x,1,WAI-SR,42\n".encode(),
     ["row 3, column week"]),
    ("conflict-with-stored", "a.csv", f"{H}\nP0,ther.x,1,WAI-SR,41\n".encode(), ["row 2, column score"]),
    ("empty-file", "a.csv", b"", ["row 1, column -"]),
    ("whitespace-only-file", "a.csv", b"  \n\n \n", ["row 1, column -"]),
    ("nul-bytes", "a.csv", f"{H}\nP1,ther.x,1,WAI-\x00SR,40\n".encode(), ["row 2, column instrument"]),
    ("ragged-extra-cell", "a.csv", f"{H}\nP1,ther.x,1,WAI-SR,40\nP1,ther.x,2,WAI-SR,40,9\n".encode(),
     ["row 3, column #6"]),
    ("ragged-missing-cell", "a.csv", f"{H}\nP1,ther.x,1,WAI-SR\n".encode(), ["row 2, column score"]),
    ("items-disagree-with-total", "a.csv", f"{HI}\n{_gad([1] * 7, '8')}\n".encode(), ["row 2, column score"]),
    ("wrong-encoding-latin1", "a.csv", f"{H}\nP1,thér.x,1,WAI-SR,40\n".encode("latin-1"),
     ["row 2, column therapist_id"]),
    ("header-only", "a.csv", f"{H}\n".encode(), ["row 2, column -"]),
    ("duplicate-header", "a.csv", f"{H},week\nP1,ther.x,1,WAI-SR,40,1\n".encode(), ["row 1, column week"]),
    ("negative-score", "a.csv", f"{H}\nP1,ther.x,1,SPIN,-1\n".encode(), ["row 2, column score"]),
    ("item-beyond-count", "a.csv", f"{HI}\n{_gad([1] * 7 + [2])}\n".encode(), ["row 2, column item_8"]),
    ("partial-items", "a.csv", f"{HI}\n{_gad([1, 2, 3])}\n".encode(), ["row 2, column item_1"]),
    ("item-out-of-range", "a.csv", f"{HI}\n{_gad([1, 1, 4, 1, 1, 1, 1])}\n".encode(), ["row 2, column item_3"]),
    ("item-not-whole", "a.csv", f"{HI}\n{_gad([1, 1.5, 1, 1, 1, 1, 1])}\n".encode(), ["row 2, column item_2"]),
    ("bad-date", "a.csv", f"{HI}\n{_gad([1] * 7, '', '2026-13-01')}\n".encode(), ["row 2, column administered_on"]),
    ("too-long-code", "a.csv", f"{H}\n{'P' * 33},ther.x,1,WAI-SR,40\n".encode(), ["row 2, column patient_id"]),
    ("code-with-space", "a.csv", f"{H}\nP1,ther x,1,WAI-SR,40\n".encode(), ["row 2, column therapist_id"]),
    ("whitespace-only-cells", "a.csv", f"{H}\n  ,ther.x,   ,WAI-SR,40\n".encode(),
     ["row 2, column patient_id", "row 2, column week"]),
    ("no-score-no-items", "a.csv", f"{H}\nP1,ther.x,1,WAI-SR,\n".encode(), ["row 2, column score"]),
    ("infinite-score", "a.csv", f"{H}\nP1,ther.x,1,WAI-SR,inf\n".encode(), ["row 2, column score"]),
    ("unknown-column", "a.csv", f"{H},notes\nP1,ther.x,1,WAI-SR,40,ok\n".encode(), ["row 1, column notes"]),
    ("broken-quotes", "a.csv", f'{H}\nP1,ther.x,1,"WAI-SR,40\n'.encode(), ["row 2, column -"]),
    ("every-error-reported", "a.csv", f"{H}\nP1,ther.x,1,WAI-SR,99\nP1,ther.x,2,WAI-SR,40\nP2,,x,SPIN,70\n".encode(),
     ["row 2, column score", "row 4, column therapist_id", "row 4, column week", "row 4, column score"]),
    ("semicolon-bom-bad-row", "a.csv", ("\ufeff" + H.replace(",", ";") + "\nP1;ther.x;1;WAI-SR;4,5\n").encode(),
     ["row 2, column score"]),
    ("excel-bad-cell", "a.xlsx",
     _xlsx([H.split(","), ["P1", "ther.x", 1, "WAI-SR", 40], ["P1", "ther.x", 2, "SPIN", 69]]),
     ["row 3, column score"]),
    ("excel-not-a-workbook", "a.xlsx", b"PK\x03\x04 this is not really a zip", ["row 1, column -"]),
]

GOOD: list[tuple[str, str, bytes]] = [
    ("semicolon", "g.csv", (H.replace(",", ";") + "\nP1;ther.x;1;WAI-SR;40\n").encode()),
    ("semicolon-bom", "g.csv", ("\ufeff" + H.replace(",", ";") + "\nP1;ther.x;1;WAI-SR;40\n").encode()),
    ("comma-bom-crlf", "g.csv", ("\ufeff" + H + "\r\nP1,ther.x,1,WAI-SR,40\r\n").encode()),
    ("blank-lines", "g.csv", f"{H}\n\nP1,ther.x,1,WAI-SR,40\n,,,,\n".encode()),
    ("quoted-cells", "g.csv", f'{H}\n"P1","ther.x","1","WAI-SR","40"\n'.encode()),
    ("items-without-score", "g.csv", f"{HI}\n{_gad([1] * 7)}\n".encode()),
    ("excel", "g.xlsx", _xlsx([H.split(","), ["P1", "ther.x", 1, "WAI-SR", 40.0]])),
]


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> str:
    base = tmp_path / "baseline.csv"
    base.write_text(BASELINE, encoding="utf-8")
    result = runner.invoke(app, ["import-scores", str(base), "--db", db_url])
    assert result.exit_code == 0, result.output
    return db_url


@pytest.mark.parametrize(("name", "content", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_file_exits_2_names_row_and_column_and_writes_nothing(
        store: str, tmp_path: Path, name: str, content: bytes, expected: list[str]) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    before = dump_store(store)
    result = runner.invoke(app, ["import-scores", str(path), "--db", store])
    assert result.exit_code == 2, result.output
    for fragment in expected:
        assert fragment in result.stderr, result.stderr
    assert all(line.startswith(f"{name}: ") for line in result.stderr.splitlines())
    assert dump_store(store) == before


def test_at_least_25_kinds_of_bad_file() -> None:
    assert len(BAD) >= 25


def test_errors_never_echo_health_values(store: str, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(f"{H}\nP1,ther.x,1,WAI-SR,61.25\n".encode())
    result = runner.invoke(app, ["import-scores", str(path), "--db", store])
    assert result.exit_code == 2 and "61.25" not in result.stderr


@pytest.mark.parametrize(("name", "content"), [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_variants_that_must_pass(store: str, tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = runner.invoke(app, ["import-scores", str(path), "--db", store])
    assert result.exit_code == 0, result.stderr
    assert "1 new" in result.stdout
    again = runner.invoke(app, ["import-scores", str(path), "--db", store])
    assert again.exit_code == 0 and "0 new, 1 unchanged" in again.stdout


def test_size_limit(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.validation

    monkeypatch.setattr(core.validation, "MAX_BYTES", 100)
    monkeypatch.setattr(core.validation.read_scores_csv, "__kwdefaults__", {"max_bytes": 100})
    monkeypatch.setattr(core.validation.read_scores_file, "__kwdefaults__", {"max_bytes": 100})
    path = tmp_path / "big.csv"
    path.write_bytes((H + "\n" + "P1,ther.x,1,WAI-SR,40\n" * 10).encode())
    before = dump_store(store)
    result = runner.invoke(app, ["import-scores", str(path), "--db", store])
    assert result.exit_code == 2 and "the limit is" in result.stderr
    assert dump_store(store) == before
