"""Export: formula escaping (CSV), audit, and the FHIR round trip through the database."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from core.exporting import escape_formulas, to_csv_bytes
from db.engine import make_engine, transaction
from db.models import Patient
from manage import app
from tests.conftest import PG_URL

runner = CliRunner()
ITEMS = ",".join(f"item_{i}" for i in range(1, 13))
CSV = (f"patient_id,therapist_id,week,instrument,score,administered_on,{ITEMS}\n"
       "P1,ther.x,1,PHQ-9,,2026-01-05,1,1,1,1,1,1,1,1,2,,,\n"
       "P1,ther.x,1,GAD-7,12,2026-01-05,,,,,,,,,,,,\n"
       "P1,ther.x,2,WAI-SR,,," + ",".join(["4"] * 12) + "\n"
       "P1,ther.x,2,SPIN,33,,,,,,,,,,,,,\n"
       "P2,ther.y,1,SPIN,20,,,,,,,,,,,,,\n")


@pytest.mark.parametrize("cell", ["=1+1", "+41", "-2", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://x\")"])
def test_escape_formulas_quotes_every_dangerous_start(cell: str) -> None:
    frame = pd.DataFrame({"text": [cell, "safe"], "number": [-3.5, 2.0]})
    out = escape_formulas(frame)
    assert out.loc[0, "text"] == "'" + cell and out.loc[1, "text"] == "safe"
    assert out["number"].tolist() == [-3.5, 2.0]  # a negative number is data, not a formula
    assert frame.loc[0, "text"] == cell  # input not mutated
    parsed = pd.read_csv(io.BytesIO(to_csv_bytes(frame)), keep_default_na=False)
    assert parsed.loc[0, "text"].startswith("'")


def test_cli_export_escapes_stored_cells_and_is_audited(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(CSV, encoding="utf-8")
    assert runner.invoke(app, ["import-scores", str(path), "--db", db_url]).exit_code == 0
    engine = make_engine(db_url)
    with transaction(engine) as s:  # a code that slipped in by another route (e.g. a legacy migration)
        s.query(Patient).filter(Patient.code == "P2").update({"code": "=cmd|' /C calc'!A0"})
    engine.dispose()
    result = runner.invoke(app, ["export", "--db", db_url])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout), dtype=str, keep_default_na=False)
    assert "'=cmd|' /C calc'!A0" in frame["patient_id"].tolist()
    assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for col in frame for v in frame[col])
    assert frame.loc[(frame["instrument"] == "SPIN") & (frame["patient_id"] == "P1"), "score"].tolist() == ["33"]
    trail = runner.invoke(app, ["audit", "--db", db_url]).stdout
    assert ",export," in trail


def _fresh_like(db_url: str, tmp_path: Path) -> str:
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other.db'}"
    name = f"am_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def test_fhir_round_trip_through_the_database(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(CSV, encoding="utf-8")
    assert runner.invoke(app, ["import-scores", str(path), "--db", db_url]).exit_code == 0
    exported = runner.invoke(app, ["export-fhir", "--patient", "P1", "--db", db_url])
    assert exported.exit_code == 0, exported.output
    bundle = json.loads(exported.stdout)
    assert len(bundle["entry"]) == 4
    fhir_file = tmp_path / "p1.json"
    fhir_file.write_text(exported.stdout, encoding="utf-8")
    # into the same database: nothing changes
    again = runner.invoke(app, ["import-fhir", str(fhir_file), "--db", db_url])
    assert again.exit_code == 0 and "0 new, 4 unchanged" in again.stdout, again.output
    # into an empty database: the same scores, items and dates come out
    other = _fresh_like(db_url, tmp_path)
    try:
        done = runner.invoke(app, ["import-fhir", str(fhir_file), "--db", other])
        assert done.exit_code == 0 and "4 new" in done.stdout, done.output
        first = runner.invoke(app, ["export", "--patient", "P1", "--db", db_url]).stdout
        second = runner.invoke(app, ["export", "--patient", "P1", "--db", other]).stdout
        assert first == second and first.count("\n") == 5
        assert runner.invoke(app, ["export-fhir", "--patient", "P1", "--db", other]).stdout == exported.stdout
    finally:
        if not other.startswith("sqlite"):
            admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(other).database}" WITH (FORCE)'))
            admin.dispose()


def test_fhir_import_errors_name_the_resource_and_write_nothing(db_url: str, tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "QuestionnaireResponse", "status": "completed",
                      "questionnaire": "http://loinc.org/q/69737-5", "subject": {"identifier": {"value": "P5"}},
                      "author": {"identifier": {"value": "ther.x"}}, "authored": "2026-01-05",
                      "item": [{"linkId": "70274-6", "answer": [{"valueInteger": 30}]}]}}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    result = runner.invoke(app, ["import-fhir", str(path), "--db", db_url])
    assert result.exit_code == 2
    assert "resource 1, column score: is outside GAD-7's range" in result.stderr
    assert "resource 1, column week" in result.stderr  # unknown patient: no start date to count weeks from
    assert runner.invoke(app, ["export", "--db", db_url]).stdout.count("\n") == 1


def test_the_fast_csv_writer_gives_pandas_bytes_or_steps_aside() -> None:
    from core.exporting import _arrow_csv

    frame = pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "week": [1, 2, 3], "score": ["12", "12.5", "=1+1"],
                          "administered_on": ["2026-01-05", None, "2026-01-19"],
                          "item_1": pd.array([1, None, 3], dtype="Int64")})
    expected = escape_formulas(frame).to_csv(index=False, lineterminator="\n").encode("utf-8")
    assert _arrow_csv(escape_formulas(frame)) == expected == to_csv_bytes(frame)
    assert b"'=1+1" in expected
    for awkward in ("a, b", 'say "hi"', "two\nlines"):  # Arrow would have to quote: pandas writes it
        odd = frame.assign(patient_id=["P1", awkward, "P3"])
        assert _arrow_csv(escape_formulas(odd)) is None
        assert pd.read_csv(io.BytesIO(to_csv_bytes(odd)), keep_default_na=False)["patient_id"].tolist()[1] == awkward
    floats = frame.assign(week=[1.5, 2.0, 3.0])  # pandas' float format is not Arrow's
    assert _arrow_csv(escape_formulas(floats)) is None


def _decoded(frame: pd.DataFrame) -> pd.DataFrame:
    from core.item_text import decode_items

    matrix = decode_items(frame["items"])
    items = pd.DataFrame(matrix, columns=[f"item_{k + 1}" for k in range(matrix.shape[1])], index=frame.index)
    return pd.concat([frame.drop(columns="items"), items], axis=1)


def test_the_export_from_stored_item_text_gives_the_bytes_of_the_decoded_frame() -> None:
    from core.exporting import scores_for_export, weekly_scores_csv

    frame = pd.DataFrame({
        "patient_id": ["P2", "=cmd", "P1", "P1", "P2", "P1"],
        "therapist_id": ["ther.x", None, "@ther", "@ther", "ther.x", "@ther"],
        "week": [1, 3, 2, 1, 2, 1],
        "instrument": ["WAI-SR", "SPIN", "WAI-SR", "PHQ-9", "WAI-SR", "WAI-SR"],
        "score": [40.0, -3.0, 12.5, 7.0, 44.0, 41.0],
        "administered_on": [pd.Timestamp("2026-01-05").date(), None, pd.Timestamp("2026-01-12").date(), None,
                            pd.Timestamp("2026-01-12").date(), pd.Timestamp("2026-01-05").date()],
        "items": ["[1, 2, 3]", None, "[10, 0, 7, 12]", "null", "[]", "[4,\t4]"]})
    want = to_csv_bytes(scores_for_export(_decoded(frame)))
    assert weekly_scores_csv(frame) == want
    assert b"item_4" in want and b"'=cmd" in want and b"'@ther" in want and b"'-3" in want
    assert weekly_scores_csv(frame.iloc[0:0]) == to_csv_bytes(scores_for_export(_decoded(frame.iloc[0:0])))
    none = frame.assign(items=None)  # no item answers at all: no item column
    assert weekly_scores_csv(none) == to_csv_bytes(scores_for_export(_decoded(none)))
    assert b"item_1" not in weekly_scores_csv(none)
    # a cell that CSV must quote goes the general way: the same bytes, quoted
    odd = frame.assign(therapist_id=["a, b"] * 6)
    assert weekly_scores_csv(odd) == to_csv_bytes(scores_for_export(_decoded(odd)))
    assert b'"a, b"' in weekly_scores_csv(odd)
    with pytest.raises(ValueError, match="Stored item answers are not lists of whole numbers"):
        weekly_scores_csv(frame.assign(items=["[1, 2.5]"] * 6))


def test_cli_export_of_the_demo_equals_the_decoded_export(writable_demo: str) -> None:
    from core.exporting import scores_for_export
    from db.access import SYSTEM
    from db.queries import read_scores

    engine = make_engine(writable_demo)
    with transaction(engine) as s:
        want = to_csv_bytes(scores_for_export(read_scores(s, actor=SYSTEM, with_items=True)))
    engine.dispose()
    result = runner.invoke(app, ["export", "--db", writable_demo])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == want and want.count(b"\n") == 2751
