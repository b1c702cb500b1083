"""The command line as CONTRACT.md specifies it: exit codes, all-or-nothing import, export escaping."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.engine import make_engine, session_factory
from db.models import Score
from manage import app

runner = CliRunner()
HEADER = "patient_id,therapist_id,week,instrument,score\n"


def _write(tmp_path: Path, body: str, name: str = "scores.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def _count(url: str) -> int:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        n = session.scalar(select(func.count()).select_from(Score)) or 0
    engine.dispose()
    return n


def test_import_is_all_or_nothing_and_idempotent(db_url: str, tmp_path: Path) -> None:
    good = _write(tmp_path, "P1,ther.x,1,WAI-SR,40\nP1,ther.x,2,WAI-SR,44\nP2,ther.y,1,SPIN,30\n")
    assert runner.invoke(app, ["init-db", "--db", db_url]).exit_code == 0
    result = runner.invoke(app, ["import-scores", str(good), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "3 new" in result.output
    assert _count(db_url) == 3
    again = runner.invoke(app, ["import-scores", str(good), "--db", db_url])
    assert again.exit_code == 0 and "0 new, 3 unchanged" in again.output
    assert _count(db_url) == 3
    bad = _write(tmp_path, "P3,ther.x,1,WAI-SR,40\nP3,ther.x,2,WAI-SR,99\n", "bad.csv")
    result = runner.invoke(app, ["import-scores", str(bad), "--db", db_url])
    assert result.exit_code == 2
    assert "row 3, column score" in result.stderr
    assert _count(db_url) == 3


def test_conflicts_need_replace_and_dry_run_writes_nothing(db_url: str, tmp_path: Path) -> None:
    runner.invoke(app, ["import-scores", str(_write(tmp_path, "P1,ther.x,1,WAI-SR,40\n")), "--db", db_url])
    changed = _write(tmp_path, "P1,ther.x,1,WAI-SR,41\nP1,ther.x,2,WAI-SR,45\n", "changed.csv")
    refused = runner.invoke(app, ["import-scores", str(changed), "--db", db_url])
    assert refused.exit_code == 2 and "row 2, column score" in refused.stderr
    assert _count(db_url) == 1
    dry = runner.invoke(app, ["import-scores", str(changed), "--replace", "--dry-run", "--db", db_url])
    assert dry.exit_code == 0 and "nothing was written" in dry.output
    assert _count(db_url) == 1
    done = runner.invoke(app, ["import-scores", str(changed), "--replace", "--db", db_url])
    assert done.exit_code == 0, done.output
    exported = runner.invoke(app, ["export", "--patient", "P1", "--db", db_url])
    assert exported.exit_code == 0
    assert [line.split(",")[4] for line in exported.stdout.splitlines()[1:]] == ["41", "45"]
    trail = runner.invoke(app, ["audit", "--db", db_url])
    assert "change_score" in trail.stdout and "import --replace" in trail.stdout


def test_missing_file_and_bad_url_are_input_errors(tmp_path: Path) -> None:
    assert runner.invoke(app, ["import-scores", str(tmp_path / "nope.csv")]).exit_code == 2
    result = runner.invoke(app, ["init-db", "--db", "not a url"])
    assert result.exit_code == 2 and "not a SQLAlchemy URL" in result.stderr


def test_create_user_assign_and_export_escaping(db_url: str, tmp_path: Path) -> None:
    runner.invoke(app, ["import-scores", str(_write(tmp_path, "P1,ther.x,1,WAI-SR,40\n")), "--db", db_url])
    short = runner.invoke(app, ["create-user", "ther.z", "--role", "therapist", "--password-stdin", "--db", db_url],
                          input="short\n")
    assert short.exit_code == 2 and "at least 12" in short.stderr
    ok = runner.invoke(app, ["create-user", "ther.z", "--role", "therapist", "--team", "North",
                             "--password-stdin", "--db", db_url], input="a long enough passphrase\n")
    assert ok.exit_code == 0, ok.output
    assert runner.invoke(app, ["assign", "P1", "--therapist", "ther.z", "--db", db_url]).exit_code == 0
    assert runner.invoke(app, ["assign", "P9", "--therapist", "ther.z", "--db", db_url]).exit_code == 2
    exported = runner.invoke(app, ["export", "--db", db_url])
    frame = pd.read_csv(io.StringIO(exported.stdout))
    assert frame.loc[0, "therapist_id"] == "ther.z"


def test_seed_demo_refuses_a_non_empty_database(db_url: str) -> None:
    first = runner.invoke(app, ["seed-demo", "--db", db_url])
    assert first.exit_code == 0, first.output
    assert runner.invoke(app, ["seed-demo", "--db", db_url]).exit_code == 2
    assert runner.invoke(app, ["seed-demo", "--if-empty", "--db", db_url]).exit_code == 0
    verify = runner.invoke(app, ["audit", "--verify", "--db", db_url])
    assert verify.exit_code == 0 and "intact" in verify.stdout


def test_flags_on_a_clinic_without_any_flag_prints_the_header_only(db_url: str, tmp_path: Path) -> None:
    quiet = _write(tmp_path, "P1,ther.x,1,WAI-SR,40\nP1,ther.x,2,WAI-SR,41\n")
    assert runner.invoke(app, ["import-scores", str(quiet), "--db", db_url]).exit_code == 0
    result = runner.invoke(app, ["flags", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "patient_id,therapist_id,week,instrument,kind,rule,severity,score,baseline,drop,status,drop_sd,subscale,"
        "subscale_drop,symptom_instrument,symptom_change_next_week,confirmed,repaired_week,explanation,note,"
        "note_by,note_at,administered_on,rules_version,raised_at"]


def test_seed_demo_loaded_later_is_current_with_the_same_flags(db_url: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # two weeks and two days after the demo's day: every date moves on two weeks, to Monday
    # 2026-12-07, and the clinic reads as it did on 2026-11-23: no patient newly overdue
    monkeypatch.setenv("ALLIANCE_TODAY", "2026-12-09")
    first = runner.invoke(app, ["seed-demo", "--db", db_url])
    assert first.exit_code == 0, first.output
    assert "dated Monday 2026-12-07" in first.output and "moved 2 weeks on" in first.output
    later = runner.invoke(app, ["flags", "--db", db_url])
    assert later.exit_code == 0, later.output
    exported = runner.invoke(app, ["export", "--db", db_url])
    scores = pd.read_csv(io.StringIO(exported.stdout))
    assert scores["administered_on"].max() == "2026-12-07"
    moved = pd.read_csv(io.StringIO(later.stdout))
    demo = pd.read_csv(Path(__file__).resolve().parents[2] / "sample_data" / "demo_scores.csv")
    assert scores["administered_on"].min() == (pd.Timestamp(demo["administered_on"].min())
                                               + pd.Timedelta(weeks=2)).strftime("%Y-%m-%d")
    other = tmp_path / "pinned.db"
    monkeypatch.setenv("ALLIANCE_TODAY", "2026-11-23")
    assert runner.invoke(app, ["seed-demo", "--db", f"sqlite:///{other}"]).exit_code == 0
    pinned = pd.read_csv(io.StringIO(runner.invoke(app, ["flags", "--db", f"sqlite:///{other}"]).stdout))
    key = ["patient_id", "week", "instrument", "kind", "status", "explanation"]
    assert len(moved) > 100
    pd.testing.assert_frame_equal(moved[key].sort_values(key).reset_index(drop=True),
                                  pinned[key].sort_values(key).reset_index(drop=True))
