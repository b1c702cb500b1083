"""Issue 12's clinic settings through the command line, on both databases.

Every rule parameter is a versioned, audited clinic setting (``set-rule``), the expected alliance
course is frozen from the clinic's own scores (``freeze-parameters --course``), each stored flag
names the rule set that raised it, and stored flags stay equal to a fresh computation.
"""

from __future__ import annotations

import io

import pandas as pd
from typer.testing import CliRunner

from manage import app

runner = CliRunner()


def _run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def _flags(db_url: str) -> pd.DataFrame:
    result = _run("flags", "--db", db_url, "--format", "csv")
    assert result.exit_code == 0, result.output
    return pd.read_csv(io.StringIO(result.stdout), dtype={"patient_id": str})


def test_set_rule_writes_a_version_recomputes_and_is_audited(writable_demo: str) -> None:
    db = writable_demo
    before = _flags(db)
    quieter = _run("set-rule", "below_expected", "subscale_k_sd", "9", "--reason", "test: quieter", "--db", db)
    assert quieter.exit_code == 0, quieter.output
    assert "below_expected.subscale_k_sd = 9" in quieter.stdout and "flags recomputed" in quieter.stdout
    after = _flags(db)
    version = int(after["rules_version"].max())
    assert version > int(before["rules_version"].max())
    assert set(after["rules_version"]) == {version}  # every stored flag names the rule set in force
    assert (after["rule"] == "below_expected_subscale").sum() == 0
    check = _run("refresh-flags", "--check", "--db", db)
    assert check.exit_code == 0, check.output
    listing = _run("parameters", "--db", db)
    assert "* below_expected.subscale_k_sd = 9 (default 2.3)" in listing.stdout
    trail = _run("audit", "--db", db, "--format", "csv")
    assert "test: quieter" in trail.stdout
    # switch an old rule on: it raises flags under its own name
    on = _run("set-rule", "reliable_drop", "on", "--reason", "compare with 0.3", "--db", db)
    assert on.exit_code == 0, on.output
    assert "reliable_drop" in " ".join(_flags(db)["rule"].astype(str))


def test_set_rule_refuses_what_cannot_work_and_changes_nothing(writable_demo: str) -> None:
    db = writable_demo
    before = _run("parameters", "--db", db).stdout
    cases = [
        (("set-rule", "below_expected", "k_sd", "0", "--reason", "x"), "below_expected.k_sd must be a positive"),
        (("set-rule", "below_expected", "kk", "2", "--reason", "x"), "has no parameter kk"),
        (("set-rule", "no_such_rule", "on", "--reason", "x"), "There is no rule"),
        (("set-rule", "below_expected", "k_sd", "3"), "Say why the setting changes"),
        (("set-rule", "repair", "off", "--reason", "x"), "repair rule cannot be off"),
    ]
    for args, message in cases:
        result = _run(*args, "--db", db)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert _run("parameters", "--db", db).stdout == before


def test_freeze_course_stores_the_clinics_own_course(writable_demo: str) -> None:
    db = writable_demo
    result = _run("freeze-parameters", "--course", "--db", db)
    assert result.exit_code == 0, result.output
    assert "WAI-SR: expected course" in result.stdout and "this clinic's course, 60 patients" in result.stdout
    listing = _run("parameters", "--db", db).stdout
    assert "WAI-SR:bond" in listing and "frozen on" in listing
    assert _run("refresh-flags", "--check", "--db", db).exit_code == 0
    wrong = _run("freeze-parameters", "--course", "--instrument", "PHQ-9", "--db", db)
    assert wrong.exit_code == 2 and "is not an alliance instrument" in wrong.output
